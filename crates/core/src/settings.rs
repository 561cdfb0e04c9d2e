//! Deployment-wide settings, read from environment variables once at start-up.
//! Every missing or malformed variable is named in one error, so a broken
//! deployment says everything that is wrong at once.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use crate::error::Error;
use crate::model::{ReportFormat, Severity};
use crate::naming::TagPrefix;

/// The environment variable names, shared with `template.yaml`.
pub mod vars {
    pub const SELECTION_TAG_KEY: &str = "SELECTION_TAG_KEY";
    pub const SELECTION_TAG_VALUE: &str = "SELECTION_TAG_VALUE";
    pub const INSTANCE_TYPES: &str = "INSTANCE_TYPES";
    pub const SUBNET_ID: &str = "SUBNET_ID";
    pub const SECURITY_GROUP_ID: &str = "SECURITY_GROUP_ID";
    pub const INSTANCE_PROFILE: &str = "INSTANCE_PROFILE";
    pub const REPORT_BUCKET: &str = "REPORT_BUCKET";
    pub const REPORT_KMS_KEY_ARN: &str = "REPORT_KMS_KEY_ARN";
    pub const REPORT_FORMAT: &str = "REPORT_FORMAT";
    pub const TOPIC_ARN: &str = "TOPIC_ARN";
    pub const LAUNCH_STATE_MACHINE_ARN: &str = "LAUNCH_STATE_MACHINE_ARN";
    pub const REPORT_STATE_MACHINE_ARN: &str = "REPORT_STATE_MACHINE_ARN";
    pub const EVENTS_ROLE_ARN: &str = "EVENTS_ROLE_ARN";
    pub const SCAN_TIMEOUT_MINUTES: &str = "SCAN_TIMEOUT_MINUTES";
    pub const SWEEP_MARGIN_MINUTES: &str = "SWEEP_MARGIN_MINUTES";
    pub const MAX_CONCURRENT_SCANS: &str = "MAX_CONCURRENT_SCANS";
    pub const SEVERITY_THRESHOLD: &str = "SEVERITY_THRESHOLD";
    pub const TAG_PREFIX: &str = "TAG_PREFIX";
    pub const FAIL_ACTION: &str = "FAIL_ACTION";
}

/// Reads variables through a lookup function and collects every problem.
pub struct EnvReader<F> {
    lookup: F,
    problems: Vec<String>,
}

impl EnvReader<fn(&str) -> Option<String>> {
    /// Reads the process environment.
    pub fn process() -> Self {
        EnvReader::new(|name| std::env::var(name).ok())
    }
}

/// A reader over a fixed map.
pub type MapEnv = EnvReader<Box<dyn Fn(&str) -> Option<String>>>;

impl MapEnv {
    /// Reads a fixed map (tests, benchmarks).
    pub fn from_map(map: HashMap<String, String>) -> Self {
        EnvReader::new(Box::new(move |name: &str| map.get(name).cloned()))
    }
}

impl<F: Fn(&str) -> Option<String>> EnvReader<F> {
    pub fn new(lookup: F) -> Self {
        EnvReader {
            lookup,
            problems: Vec::new(),
        }
    }

    fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// A required variable, parsed. Records a problem and returns `None` when
    /// it is missing or malformed.
    pub fn required<T>(&mut self, name: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(name) {
            None => {
                self.problems.push(format!("{name} is not set"));
                None
            }
            Some(value) => self.parse(name, &value),
        }
    }

    /// An optional variable with a default, parsed.
    pub fn optional<T>(&mut self, name: &str, default: T) -> Option<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(name) {
            None => Some(default),
            Some(value) => self.parse(name, &value),
        }
    }

    fn parse<T>(&mut self, name: &str, value: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        match value.parse::<T>() {
            Ok(parsed) => Some(parsed),
            Err(err) => {
                self.problems
                    .push(format!("{name}={value:?} is malformed: {err}"));
                None
            }
        }
    }

    /// Ends reading: every problem found, or the settings.
    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, Error> {
        if !self.problems.is_empty() {
            return Err(Error::Configuration(self.problems.join("; ")));
        }
        build().ok_or_else(|| Error::Internal("settings incomplete without a problem".into()))
    }
}

/// Settings read from the environment at start-up.
pub trait FromEnv: Sized {
    fn from_env<F: Fn(&str) -> Option<String>>(env: EnvReader<F>) -> Result<Self, Error>;
}

macro_rules! from_env {
    ($($name:ident),+) => {
        $(impl FromEnv for $name {
            fn from_env<F: Fn(&str) -> Option<String>>(env: EnvReader<F>) -> Result<Self, Error> {
                $name::from_env(env)
            }
        })+
    };
}

from_env!(
    FindSettings,
    LaunchSettings,
    RuleSettings,
    ExportSettings,
    TagSettings,
    CleanupSettings,
    CheckSettings
);

macro_rules! prefixed_setting {
    ($name:ident, $($prefix:literal)|+, $what:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(pub String);

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                if [$($prefix),+].iter().any(|p| s.starts_with(p) && s.len() > p.len()) {
                    Ok($name(s.to_string()))
                } else {
                    Err(format!("expected {} starting with {}", $what, [$($prefix),+].join(" or ")))
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_setting!(SubnetId, "subnet-", "a subnet id");
prefixed_setting!(SecurityGroupId, "sg-", "a security group id");
prefixed_setting!(TopicArn, "arn:aws:sns:" | "arn:aws-", "an SNS topic ARN");
prefixed_setting!(
    StateMachineArn,
    "arn:aws:states:" | "arn:aws-",
    "a state machine ARN"
);
prefixed_setting!(RoleArn, "arn:aws:iam::" | "arn:aws-", "an IAM role ARN");
prefixed_setting!(KmsKeyArn, "arn:aws:kms:" | "arn:aws-", "a KMS key ARN");

/// An S3 bucket name (3–63 lower-case letters, digits, dots and hyphens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketName(pub String);

impl FromStr for BucketName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = (3..=63).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric());
        if ok {
            Ok(BucketName(s.to_string()))
        } else {
            Err("expected an S3 bucket name".into())
        }
    }
}

/// The instance profile, by name or by ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceProfile {
    Name(String),
    Arn(String),
}

impl FromStr for InstanceProfile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with("arn:") {
            if s.contains(":instance-profile/") {
                Ok(InstanceProfile::Arn(s.to_string()))
            } else {
                Err("expected an instance profile ARN (…:instance-profile/NAME) or a name".into())
            }
        } else if s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c))
        {
            Ok(InstanceProfile::Name(s.to_string()))
        } else {
            Err("expected an instance profile name or ARN".into())
        }
    }
}

/// Instance types in order of preference, from a comma list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceTypes(pub Vec<String>);

impl FromStr for InstanceTypes {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let types: Vec<String> = s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        if types.is_empty() {
            return Err("expected a comma-separated list of instance types".into());
        }
        for t in &types {
            let valid = t.split_once('.').is_some_and(|(family, size)| {
                !family.is_empty()
                    && !size.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            });
            if !valid {
                return Err(format!("{t:?} is not an instance type such as t3.small"));
            }
        }
        Ok(InstanceTypes(types))
    }
}

/// A whole number within a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounded<const MIN: u32, const MAX: u32>(pub u32);

impl<const MIN: u32, const MAX: u32> FromStr for Bounded<MIN, MAX> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.parse::<u32>() {
            Ok(n) if (MIN..=MAX).contains(&n) => Ok(Bounded(n)),
            _ => Err(format!("expected a whole number from {MIN} to {MAX}")),
        }
    }
}

/// The severity threshold: `NONE` never fails a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold(pub Option<Severity>);

impl FromStr for Threshold {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "NONE" => Ok(Threshold(None)),
            "CRITICAL" => Ok(Threshold(Some(Severity::Critical))),
            "HIGH" => Ok(Threshold(Some(Severity::High))),
            "MEDIUM" => Ok(Threshold(Some(Severity::Medium))),
            "LOW" => Ok(Threshold(Some(Severity::Low))),
            _ => Err("expected CRITICAL, HIGH, MEDIUM, LOW or NONE".into()),
        }
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("NONE"),
            Some(s) => f.write_str(s.as_str()),
        }
    }
}

pub type ScanTimeoutMinutes = Bounded<1, 1440>;
pub type MaxConcurrentScans = Bounded<1, 250>;

/// find-amis: which AMIs, how many at once, which machine to start.
#[derive(Debug, Clone)]
pub struct FindSettings {
    pub selection_tag_key: String,
    pub selection_tag_value: String,
    pub tag_prefix: TagPrefix,
    pub max_concurrent_scans: u32,
    pub launch_state_machine_arn: StateMachineArn,
    pub topic_arn: TopicArn,
}

/// launch-instance: where and how the temporary instance runs.
#[derive(Debug, Clone)]
pub struct LaunchSettings {
    pub instance_types: Vec<String>,
    pub subnet_id: SubnetId,
    pub security_group_id: SecurityGroupId,
    pub instance_profile: InstanceProfile,
    pub scan_timeout_minutes: u32,
}

/// create-scan-rule: what the per-instance rule starts.
#[derive(Debug, Clone)]
pub struct RuleSettings {
    pub report_state_machine_arn: StateMachineArn,
    pub events_role_arn: RoleArn,
}

/// export-report: where reports go and what fails a scan.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    pub report_bucket: BucketName,
    pub report_kms_key_arn: KmsKeyArn,
    pub report_format: ReportFormat,
    pub severity_threshold: Threshold,
}

/// What tag-ami does to an AMI whose scan fails the threshold, besides tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAction {
    None,
    /// Deprecate the AMI now (it stays launchable by id).
    Deprecate,
    /// Disable the AMI (nobody can launch it until it is re-enabled).
    Disable,
}

impl FromStr for FailAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(FailAction::None),
            "deprecate" => Ok(FailAction::Deprecate),
            "disable" => Ok(FailAction::Disable),
            _ => Err("expected none, deprecate or disable".into()),
        }
    }
}

/// tag-ami: the prefix of every result tag, and the action on a FAIL verdict.
#[derive(Debug, Clone)]
pub struct TagSettings {
    pub tag_prefix: TagPrefix,
    pub fail_action: FailAction,
}

/// check-scan: whose tags to read, and what to start when the event was lost.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    pub tag_prefix: TagPrefix,
    pub report_state_machine_arn: StateMachineArn,
}

impl CheckSettings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(mut env: EnvReader<F>) -> Result<Self, Error> {
        let prefix: Option<TagPrefix> = env.required(vars::TAG_PREFIX);
        let machine: Option<StateMachineArn> = env.required(vars::REPORT_STATE_MACHINE_ARN);
        env.finish(|| {
            Some(CheckSettings {
                tag_prefix: prefix?,
                report_state_machine_arn: machine?,
            })
        })
    }
}

/// cleanup: what counts as scanner-managed, and when an instance is orphaned.
#[derive(Debug, Clone)]
pub struct CleanupSettings {
    pub scan_timeout_minutes: u32,
    pub sweep_margin_minutes: u32,
}

impl FindSettings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(mut env: EnvReader<F>) -> Result<Self, Error> {
        let key: Option<String> = env.required(vars::SELECTION_TAG_KEY);
        let value: Option<String> = env.required(vars::SELECTION_TAG_VALUE);
        let prefix: Option<TagPrefix> = env.required(vars::TAG_PREFIX);
        let cap: Option<MaxConcurrentScans> = env.required(vars::MAX_CONCURRENT_SCANS);
        let machine: Option<StateMachineArn> = env.required(vars::LAUNCH_STATE_MACHINE_ARN);
        let topic: Option<TopicArn> = env.required(vars::TOPIC_ARN);
        env.finish(|| {
            Some(FindSettings {
                selection_tag_key: key?,
                selection_tag_value: value?,
                tag_prefix: prefix?,
                max_concurrent_scans: cap?.0,
                launch_state_machine_arn: machine?,
                topic_arn: topic?,
            })
        })
    }
}

impl LaunchSettings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(mut env: EnvReader<F>) -> Result<Self, Error> {
        let types: Option<InstanceTypes> = env.required(vars::INSTANCE_TYPES);
        let subnet: Option<SubnetId> = env.required(vars::SUBNET_ID);
        let group: Option<SecurityGroupId> = env.required(vars::SECURITY_GROUP_ID);
        let profile: Option<InstanceProfile> = env.required(vars::INSTANCE_PROFILE);
        let timeout: Option<ScanTimeoutMinutes> = env.required(vars::SCAN_TIMEOUT_MINUTES);
        env.finish(|| {
            Some(LaunchSettings {
                instance_types: types?.0,
                subnet_id: subnet?,
                security_group_id: group?,
                instance_profile: profile?,
                scan_timeout_minutes: timeout?.0,
            })
        })
    }
}

impl RuleSettings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(mut env: EnvReader<F>) -> Result<Self, Error> {
        let machine: Option<StateMachineArn> = env.required(vars::REPORT_STATE_MACHINE_ARN);
        let role: Option<RoleArn> = env.required(vars::EVENTS_ROLE_ARN);
        env.finish(|| {
            Some(RuleSettings {
                report_state_machine_arn: machine?,
                events_role_arn: role?,
            })
        })
    }
}

impl ExportSettings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(mut env: EnvReader<F>) -> Result<Self, Error> {
        let bucket: Option<BucketName> = env.required(vars::REPORT_BUCKET);
        let key: Option<KmsKeyArn> = env.required(vars::REPORT_KMS_KEY_ARN);
        let format: Option<ReportFormat> = env.required(vars::REPORT_FORMAT);
        let threshold: Option<Threshold> = env.required(vars::SEVERITY_THRESHOLD);
        env.finish(|| {
            Some(ExportSettings {
                report_bucket: bucket?,
                report_kms_key_arn: key?,
                report_format: format?,
                severity_threshold: threshold?,
            })
        })
    }
}

impl TagSettings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(mut env: EnvReader<F>) -> Result<Self, Error> {
        let prefix: Option<TagPrefix> = env.required(vars::TAG_PREFIX);
        let action: Option<FailAction> = env.optional(vars::FAIL_ACTION, FailAction::None);
        env.finish(|| {
            Some(TagSettings {
                tag_prefix: prefix?,
                fail_action: action?,
            })
        })
    }
}

impl CleanupSettings {
    pub fn from_env<F: Fn(&str) -> Option<String>>(mut env: EnvReader<F>) -> Result<Self, Error> {
        let timeout: Option<ScanTimeoutMinutes> = env.required(vars::SCAN_TIMEOUT_MINUTES);
        let margin: Option<Bounded<0, 1440>> =
            env.optional(vars::SWEEP_MARGIN_MINUTES, Bounded(30));
        env.finish(|| {
            Some(CleanupSettings {
                scan_timeout_minutes: timeout?.0,
                sweep_margin_minutes: margin?.0,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> MapEnv {
        EnvReader::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn every_missing_and_malformed_variable_is_named_at_once() {
        let err = LaunchSettings::from_env(env(&[
            ("INSTANCE_TYPES", "t3.micro, bogus"),
            ("SUBNET_ID", "vpc-123"),
            ("SCAN_TIMEOUT_MINUTES", "120"),
        ]))
        .unwrap_err();
        let Error::Configuration(text) = err else {
            panic!("expected a configuration error")
        };
        assert!(
            text.contains("INSTANCE_TYPES=\"t3.micro, bogus\" is malformed"),
            "{text}"
        );
        assert!(
            text.contains("SUBNET_ID=\"vpc-123\" is malformed"),
            "{text}"
        );
        assert!(text.contains("SECURITY_GROUP_ID is not set"), "{text}");
        assert!(text.contains("INSTANCE_PROFILE is not set"), "{text}");
        assert!(!text.contains("SCAN_TIMEOUT_MINUTES"), "{text}");
    }

    #[test]
    fn launch_settings_parse_types_in_order_and_profiles_by_name_or_arn() {
        let settings = LaunchSettings::from_env(env(&[
            ("INSTANCE_TYPES", " t3.small,t3a.small , m5.large"),
            ("SUBNET_ID", "subnet-0abc"),
            ("SECURITY_GROUP_ID", "sg-0abc"),
            (
                "INSTANCE_PROFILE",
                "arn:aws:iam::123456789012:instance-profile/amiscan",
            ),
            ("TAG_PREFIX", "amiscan:"),
            ("SCAN_TIMEOUT_MINUTES", "120"),
        ]))
        .unwrap();
        assert_eq!(
            settings.instance_types,
            ["t3.small", "t3a.small", "m5.large"]
        );
        assert_eq!(
            settings.instance_profile,
            InstanceProfile::Arn("arn:aws:iam::123456789012:instance-profile/amiscan".into())
        );
        assert_eq!(
            "scanner-profile".parse(),
            Ok(InstanceProfile::Name("scanner-profile".into()))
        );
        assert!("arn:aws:iam::1:role/x".parse::<InstanceProfile>().is_err());
    }

    #[test]
    fn numbers_are_range_checked_and_defaults_apply() {
        let err = CleanupSettings::from_env(env(&[
            ("TAG_PREFIX", "amiscan:"),
            ("SCAN_TIMEOUT_MINUTES", "0"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains(
            "SCAN_TIMEOUT_MINUTES=\"0\" is malformed: expected a whole number from 1 to 1440"
        ));
        let ok = CleanupSettings::from_env(env(&[
            ("TAG_PREFIX", "amiscan:"),
            ("SCAN_TIMEOUT_MINUTES", "120"),
        ]))
        .unwrap();
        assert_eq!(
            (ok.scan_timeout_minutes, ok.sweep_margin_minutes),
            (120, 30)
        );
    }

    #[test]
    fn threshold_and_format_accept_only_documented_values() {
        assert_eq!("none".parse(), Ok(Threshold(None)));
        assert_eq!("HIGH".parse(), Ok(Threshold(Some(Severity::High))));
        assert!("SEVERE".parse::<Threshold>().is_err());
        let err = ExportSettings::from_env(env(&[
            ("REPORT_BUCKET", "Bad_Bucket"),
            (
                "REPORT_KMS_KEY_ARN",
                "arn:aws:kms:us-east-1:123456789012:key/1",
            ),
            ("REPORT_FORMAT", "XML"),
            ("SEVERITY_THRESHOLD", "CRITICAL"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("REPORT_BUCKET=\"Bad_Bucket\""), "{err}");
        assert!(err.contains("REPORT_FORMAT=\"XML\""), "{err}");
    }
}

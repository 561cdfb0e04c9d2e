//! How settings are read from environment variables, once at start-up, and
//! the value types they share.
//! Every missing or malformed variable is named in one error, so a broken
//! deployment says everything that is wrong at once.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use crate::error::Error;
use crate::model::Severity;

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
    pub const FINDINGS_QUEUE_ARN: &str = "FINDINGS_QUEUE_ARN";
    pub const SCAN_TIMEOUT_MINUTES: &str = "SCAN_TIMEOUT_MINUTES";
    pub const SWEEP_MARGIN_MINUTES: &str = "SWEEP_MARGIN_MINUTES";
    pub const MAX_CONCURRENT_SCANS: &str = "MAX_CONCURRENT_SCANS";
    pub const SEVERITY_THRESHOLD: &str = "SEVERITY_THRESHOLD";
    pub const TAG_PREFIX: &str = "TAG_PREFIX";
    pub const FAIL_ACTION: &str = "FAIL_ACTION";
    pub const SCAN_MODE: &str = "SCAN_MODE";
    pub const FINDINGS_GRACE_SECONDS: &str = "FINDINGS_GRACE_SECONDS";
    pub const SCAN_ON_CREATE: &str = "SCAN_ON_CREATE";
    pub const MAX_SCAN_AGE_DAYS: &str = "MAX_SCAN_AGE_DAYS";
    pub const ALERT_ON: &str = "ALERT_ON";
    pub const ACCOUNT_ID: &str = "ACCOUNT_ID";
    pub const COUNT_SUPPRESSED: &str = "COUNT_SUPPRESSED";
    pub const MEMBER_ROLE_NAME: &str = "MEMBER_ROLE_NAME";
    pub const MEMBER_ACCOUNTS: &str = "MEMBER_ACCOUNTS";
    pub const SCAN_REGIONS: &str = "SCAN_REGIONS";
    pub const MEMBER_OUS: &str = "MEMBER_OUS";
    pub const HUB_EVENT_BUS_NAME: &str = "HUB_EVENT_BUS_NAME";
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

    /// A variable that may be absent (`Some(None)`), parsed when present.
    pub fn maybe<T>(&mut self, name: &str) -> Option<Option<T>>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(name) {
            None => Some(None),
            Some(value) => self.parse(name, &value).map(Some),
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

/// A function's settings, read from the environment at start-up. Each op
/// defines its own, reading only the variables it needs.
pub trait FromEnv: Sized {
    fn from_env<F: Fn(&str) -> Option<String>>(env: EnvReader<F>) -> Result<Self, Error>;
}

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
prefixed_setting!(QueueArn, "arn:aws:sqs:" | "arn:aws-", "an SQS queue ARN");
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

pub use crate::model::ids::{AccountId, RegionName};

/// The role amiscan's hub assumes in a member account (member.yaml's
/// `MemberRoleName`): an IAM role name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleName(pub String);

impl FromStr for RoleName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if (1..=64).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c))
        {
            Ok(RoleName(s.to_string()))
        } else {
            Err("expected an IAM role name (1 to 64 of A-Z a-z 0-9 +=,.@-_)".into())
        }
    }
}

/// The hub's event bus (`HUB_EVENT_BUS_NAME`): a custom bus's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusName(pub String);

impl FromStr for BusName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if (1..=256).contains(&s.len())
            && s != "default"
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            Ok(BusName(s.to_string()))
        } else {
            Err(
                "expected a custom event bus's name (1 to 256 of A-Z a-z 0-9 ._-, not default)"
                    .into(),
            )
        }
    }
}

/// Where the functions run and how they act elsewhere: their own account
/// (`ACCOUNT_ID`) and the member role's name (`MEMBER_ROLE_NAME`, default
/// `amiscan-member`). Their Region is the SDK's (`AWS_REGION`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub account_id: AccountId,
    pub member_role: RoleName,
}

/// member.yaml's default `MemberRoleName`.
pub const DEFAULT_MEMBER_ROLE: &str = "amiscan-member";

impl Home {
    /// The emulator's default account with the default member role (tests).
    pub fn for_tests() -> Home {
        Home {
            account_id: "123456789012".parse().expect("an account id"),
            member_role: RoleName(DEFAULT_MEMBER_ROLE.to_string()),
        }
    }

    /// Reads both variables, recording problems in `env`.
    pub fn read<F: Fn(&str) -> Option<String>>(env: &mut EnvReader<F>) -> Option<Home> {
        let account: Option<AccountId> = env.required(vars::ACCOUNT_ID);
        let role: Option<RoleName> = env.optional(
            vars::MEMBER_ROLE_NAME,
            RoleName(DEFAULT_MEMBER_ROLE.to_string()),
        );
        Some(Home {
            account_id: account?,
            member_role: role?,
        })
    }
}

/// An organizational unit's id (`ou-` and two runs of lower-case letters
/// and digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuId(pub String);

impl FromStr for OuId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('-').collect();
        let run = |p: &str, min, max| {
            (min..=max).contains(&p.len())
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if parts.len() == 3 && parts[0] == "ou" && run(parts[1], 4, 32) && run(parts[2], 8, 32) {
            Ok(OuId(s.to_string()))
        } else {
            Err(format!("{s:?} is not an organizational unit id (ou-…-…)"))
        }
    }
}

/// A comma list, possibly empty: each item parsed, duplicates dropped
/// (the first kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed<T>(pub Vec<T>);

impl<T> Default for Listed<T> {
    fn default() -> Self {
        Listed(Vec::new())
    }
}

impl<T: FromStr<Err = String> + PartialEq> FromStr for Listed<T> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out: Vec<T> = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let parsed = item.parse::<T>()?;
            if !out.contains(&parsed) {
                out.push(parsed);
            }
        }
        Ok(Listed(out))
    }
}

/// The member accounts, the Regions scanned, the member units.
pub type AccountList = Listed<AccountId>;
pub type RegionList = Listed<RegionName>;
pub type OuList = Listed<OuId>;

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

impl InstanceProfile {
    /// member.yaml's scanner instance profile in an account and Region, by
    /// ARN (IAM is global: one profile per Region, named after it).
    pub fn of_member(place: &crate::model::Place) -> InstanceProfile {
        InstanceProfile::Arn(format!(
            "arn:{}:iam::{}:instance-profile/{}",
            place.region.partition(),
            place.account_id,
            crate::naming::member_scanner_profile(place.region.as_str())
        ))
    }

    /// Whether an instance profile ARN is this profile.
    pub fn is(&self, arn: &str) -> bool {
        match self {
            InstanceProfile::Arn(own) => own == arn,
            InstanceProfile::Name(name) => arn
                .split_once(":instance-profile/")
                .is_some_and(|(_, path)| path.rsplit('/').next() == Some(name.as_str())),
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
/// At most 1,000 at once; where instance scans can run, at most 250 (each
/// holds one EventBridge rule, under the default quota of 300 per bus).
pub type MaxConcurrentScans = Bounded<1, 1000>;
pub const MAX_CONCURRENT_INSTANCE_SCANS: u32 = 250;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn env(pairs: &[(&str, &str)]) -> MapEnv {
        EnvReader::from_map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn every_missing_and_malformed_variable_is_named_at_once() {
        let mut reader = env(&[
            ("INSTANCE_TYPES", "t3.micro, bogus"),
            ("SUBNET_ID", "vpc-123"),
        ]);
        let types: Option<InstanceTypes> = reader.required(vars::INSTANCE_TYPES);
        let subnet: Option<SubnetId> = reader.required(vars::SUBNET_ID);
        let group: Option<SecurityGroupId> = reader.required(vars::SECURITY_GROUP_ID);
        let margin: Option<Bounded<0, 1440>> =
            reader.optional(vars::SWEEP_MARGIN_MINUTES, Bounded(30));
        assert_eq!(margin, Some(Bounded(30)));
        let err = reader
            .finish(|| Some((types?, subnet?, group?)))
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
    }

    #[test]
    fn values_parse_only_in_their_documented_forms() {
        assert_eq!(
            " t3.small,t3a.small , m5.large"
                .parse::<InstanceTypes>()
                .map(|t| t.0),
            Ok(vec![
                "t3.small".into(),
                "t3a.small".into(),
                "m5.large".into()
            ])
        );
        assert_eq!(
            "arn:aws:iam::123456789012:instance-profile/amiscan".parse(),
            Ok(InstanceProfile::Arn(
                "arn:aws:iam::123456789012:instance-profile/amiscan".into()
            ))
        );
        assert_eq!(
            "scanner-profile".parse(),
            Ok(InstanceProfile::Name("scanner-profile".into()))
        );
        assert!("arn:aws:iam::1:role/x".parse::<InstanceProfile>().is_err());
        let by_name: InstanceProfile = "scanner".parse().unwrap();
        assert!(by_name.is("arn:aws:iam::1:instance-profile/scanner"));
        assert!(by_name.is("arn:aws:iam::1:instance-profile/path/scanner"));
        assert!(!by_name.is("arn:aws:iam::1:instance-profile/scanner-2"));
        assert!(!by_name.is("arn:aws:iam::1:role/scanner"));
        let by_arn: InstanceProfile = "arn:aws:iam::1:instance-profile/scanner".parse().unwrap();
        assert!(by_arn.is("arn:aws:iam::1:instance-profile/scanner"));
        assert!(!by_arn.is("arn:aws:iam::2:instance-profile/scanner"));
        assert_eq!(
            "0".parse::<ScanTimeoutMinutes>().unwrap_err(),
            "expected a whole number from 1 to 1440"
        );
        assert_eq!("none".parse(), Ok(Threshold(None)));
        assert_eq!("HIGH".parse(), Ok(Threshold(Some(Severity::High))));
        assert!("SEVERE".parse::<Threshold>().is_err());
        assert!("Bad_Bucket".parse::<BucketName>().is_err());
    }
}

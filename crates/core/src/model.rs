//! The facts that flow between states: one scan's context, its status, its
//! counts and verdict. Deployment settings never travel in these.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::naming;

/// Inspector's severities, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    Informational,
    Untriaged,
}

impl Severity {
    pub const ALL: [Severity; 6] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Informational,
        Severity::Untriaged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "CRITICAL",
            Severity::High => "HIGH",
            Severity::Medium => "MEDIUM",
            Severity::Low => "LOW",
            Severity::Informational => "INFORMATIONAL",
            Severity::Untriaged => "UNTRIAGED",
        }
    }

    /// Inspector's string, with anything unknown counted as untriaged.
    pub fn from_inspector(value: &str) -> Severity {
        Severity::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .unwrap_or(Severity::Untriaged)
    }
}

/// Counts of active findings per severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityCounts {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub informational: u64,
    pub untriaged: u64,
}

impl SeverityCounts {
    pub fn add(&mut self, severity: Severity) {
        *self.slot(severity) += 1;
    }

    pub fn get(&self, severity: Severity) -> u64 {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Informational => self.informational,
            Severity::Untriaged => self.untriaged,
        }
    }

    fn slot(&mut self, severity: Severity) -> &mut u64 {
        match severity {
            Severity::Critical => &mut self.critical,
            Severity::High => &mut self.high,
            Severity::Medium => &mut self.medium,
            Severity::Low => &mut self.low,
            Severity::Informational => &mut self.informational,
            Severity::Untriaged => &mut self.untriaged,
        }
    }

    pub fn total(&self) -> u64 {
        Severity::ALL.iter().map(|s| self.get(*s)).sum()
    }

    /// The most severe level with at least one finding.
    pub fn highest(&self) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| self.get(*s) > 0)
    }
}

/// PASS, or FAIL when any active finding is at or above the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Pass,
    Fail,
}

impl Verdict {
    /// `threshold` of `None` never fails. Untriaged and informational
    /// findings never reach a threshold.
    pub fn of(counts: &SeverityCounts, threshold: Option<Severity>) -> Verdict {
        let Some(threshold) = threshold else {
            return Verdict::Pass;
        };
        let failing = [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
        ]
        .into_iter()
        .filter(|s| *s <= threshold)
        .any(|s| counts.get(s) > 0);
        if failing {
            Verdict::Fail
        } else {
            Verdict::Pass
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
        }
    }
}

/// The human-readable report written beside the JSON Lines data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Csv,
    Json,
    /// Only the Athena data and the summary.
    None,
}

impl FromStr for ReportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "CSV" => Ok(ReportFormat::Csv),
            "JSON" => Ok(ReportFormat::Json),
            "NONE" => Ok(ReportFormat::None),
            _ => Err("expected CSV, JSON or NONE".into()),
        }
    }
}

/// A scan's state, as written onto the AMI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScanStatus {
    InProgress,
    Complete,
    Failed,
    TimedOut,
    NotScannable,
}

impl ScanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStatus::InProgress => "IN_PROGRESS",
            ScanStatus::Complete => "COMPLETE",
            ScanStatus::Failed => "FAILED",
            ScanStatus::TimedOut => "TIMED_OUT",
            ScanStatus::NotScannable => "NOT_SCANNABLE",
        }
    }
}

impl fmt::Display for ScanStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One scan's facts, filled in as the scan goes: find-amis sets the first
/// four, launch-instance the instance, create-scan-rule the rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanContext {
    pub scan_id: String,
    pub ami_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ami_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched_at: Option<DateTime<Utc>>,
    /// When launch-scan stops waiting for Inspector (launch time plus the
    /// scan timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<String>,
}

impl ScanContext {
    /// Checks the ids the context carries, naming the field under `at`.
    pub fn validate(&self, at: &str) -> Result<(), Error> {
        naming::require_scan_id(&field(at, "scan_id"), &self.scan_id)?;
        naming::require_ami_id(&field(at, "ami_id"), &self.ami_id)?;
        if !self.scan_id.starts_with(&self.ami_id) {
            return Err(Error::invalid(
                field(at, "scan_id"),
                format!("{:?} does not belong to {}", self.scan_id, self.ami_id),
            ));
        }
        if let Some(id) = &self.instance_id {
            naming::require_instance_id(&field(at, "instance_id"), id)?;
        }
        if let Some(rule) = &self.rule_name {
            if !rule.starts_with(naming::RULE_NAME_PREFIX) {
                return Err(Error::invalid(
                    field(at, "rule_name"),
                    format!(
                        "{rule:?} is not an amiscan rule ({}…)",
                        naming::RULE_NAME_PREFIX
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The instance id, which this step needs.
    pub fn require_instance(&self, at: &str) -> Result<&str, Error> {
        self.instance_id.as_deref().ok_or_else(|| {
            Error::invalid(
                field(at, "instance_id"),
                "missing; launch the instance first",
            )
        })
    }
}

pub fn field(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

/// Deserialises an event, naming the offending field on failure.
pub fn parse_event<T: DeserializeOwned>(payload: serde_json::Value) -> Result<T, Error> {
    if !payload.is_object() {
        return Err(Error::invalid("(event)", "expected a JSON object"));
    }
    serde_path_to_error::deserialize(payload).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        // serde names a missing field in its message, at the parent's path.
        let field = match inner.strip_prefix("missing field `") {
            Some(rest) => {
                let name = rest.split('`').next().unwrap_or_default();
                if path == "." {
                    name.to_string()
                } else {
                    format!("{path}.{name}")
                }
            }
            None if path == "." => "(event)".to_string(),
            None => path,
        };
        Error::invalid(field, inner)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_verdict_fails_at_or_above_the_threshold_only() {
        let mut counts = SeverityCounts::default();
        counts.add(Severity::High);
        counts.add(Severity::Informational);
        assert_eq!(
            Verdict::of(&counts, Some(Severity::Critical)),
            Verdict::Pass
        );
        assert_eq!(Verdict::of(&counts, Some(Severity::High)), Verdict::Fail);
        assert_eq!(Verdict::of(&counts, Some(Severity::Low)), Verdict::Fail);
        assert_eq!(Verdict::of(&counts, None), Verdict::Pass);
        counts.add(Severity::Critical);
        assert_eq!(
            Verdict::of(&counts, Some(Severity::Critical)),
            Verdict::Fail
        );
        assert_eq!(Verdict::of(&counts, None), Verdict::Pass);
    }

    #[test]
    fn informational_and_untriaged_never_fail_a_scan() {
        let mut counts = SeverityCounts::default();
        counts.add(Severity::Informational);
        counts.add(Severity::Untriaged);
        assert_eq!(Verdict::of(&counts, Some(Severity::Low)), Verdict::Pass);
        assert_eq!(counts.total(), 2);
        assert_eq!(counts.highest(), Some(Severity::Informational));
        assert_eq!(
            Severity::from_inspector("SOMETHING_NEW"),
            Severity::Untriaged
        );
    }

    #[test]
    fn a_context_with_a_bad_id_names_the_field() {
        let ctx: ScanContext = parse_event(json!({
            "scan_id": "ami-12345678-20261123",
            "ami_id": "ami-12345678",
            "instance_id": "instance-1"
        }))
        .unwrap();
        assert_eq!(
            ctx.validate("scan").unwrap_err(),
            Error::invalid(
                "scan.instance_id",
                "\"instance-1\" is not an instance id (i- and 8 to 17 hex digits)"
            )
        );
        let foreign = ScanContext {
            scan_id: "ami-87654321-20261123".into(),
            ..ctx
        };
        assert!(
            matches!(foreign.validate(""), Err(Error::InvalidInput { field, .. }) if field == "scan_id")
        );
    }

    #[test]
    fn parse_errors_name_the_missing_or_mistyped_field() {
        let missing = parse_event::<ScanContext>(json!({"scan_id": "x"})).unwrap_err();
        assert!(
            matches!(&missing, Error::InvalidInput { field, .. } if field == "ami_id"),
            "{missing:?}"
        );
        let mistyped =
            parse_event::<ScanContext>(json!({"scan_id": "x", "ami_id": 5})).unwrap_err();
        assert!(
            matches!(&mistyped, Error::InvalidInput { field, .. } if field == "ami_id"),
            "{mistyped:?}"
        );
        let not_object = parse_event::<ScanContext>(json!([1])).unwrap_err();
        assert!(
            matches!(&not_object, Error::InvalidInput { field, .. } if field == "(event)"),
            "{not_object:?}"
        );
    }
}

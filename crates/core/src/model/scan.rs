//! The facts that flow between states: one scan's context, its status, and
//! the report machine's input. Deployment settings never travel in these.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{AmiId, InstanceId, RuleName, ScanId};
use super::{field, Input};
use crate::error::Error;

/// One scan's facts, filled in as the scan goes: find-amis sets the first
/// five, launch-instance the instance, create-scan-rule the rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanContext {
    pub scan_id: ScanId,
    pub ami_id: AmiId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ami_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<InstanceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launched_at: Option<DateTime<Utc>>,
    /// When launch-scan stops waiting for Inspector (launch time plus the
    /// scan timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<RuleName>,
}

impl ScanContext {
    /// A new scan of an AMI, as find-amis starts it.
    pub fn new(scan_id: ScanId, ami_id: AmiId) -> ScanContext {
        ScanContext {
            scan_id,
            ami_id,
            ami_name: None,
            platform: None,
            requested_at: None,
            instance_id: None,
            instance_type: None,
            launched_at: None,
            deadline_at: None,
            rule_name: None,
        }
    }

    /// Each id checked itself when deserialised; this checks that the scan
    /// id belongs to the AMI, naming the field under `at`.
    pub fn check_at(&self, at: &str) -> Result<(), Error> {
        if self.scan_id.ami_id() != self.ami_id.as_str() {
            return Err(Error::invalid(
                field(at, "scan_id"),
                format!(
                    "{:?} does not belong to {}",
                    self.scan_id.as_str(),
                    self.ami_id
                ),
            ));
        }
        Ok(())
    }

    /// The instance id, which this step needs.
    pub fn require_instance(&self, at: &str) -> Result<&InstanceId, Error> {
        self.instance_id.as_ref().ok_or_else(|| {
            Error::invalid(
                field(at, "instance_id"),
                "missing; launch the instance first",
            )
        })
    }
}

impl Input for ScanContext {
    fn check(&self) -> Result<(), Error> {
        self.check_at("")
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

/// report-and-cleanup's input, whoever starts it: the scan rule's target
/// (from Inspector's event), or check-scan when the event was lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportInput {
    pub scan: ScanContext,
    #[serde(default)]
    pub inspector: InspectorFacts,
}

/// What the starter knows of Inspector's scan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectorFacts {
    /// The time of Inspector's "scan complete" event, as EventBridge gives
    /// it (RFC 3339), or the deadline check's time. Kept as text: an
    /// unreadable time falls back to the export's clock instead of failing.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "any_as_text"
    )]
    pub event_time: Option<String>,
    /// Who started the report: `event` or `deadline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A string as it is, anything else as its JSON text (such as an epoch
/// number where a time was expected), for the reader to judge.
fn any_as_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

pub const FROM_EVENT: &str = "event";
pub const FROM_DEADLINE: &str = "deadline";

impl ReportInput {
    pub fn new(scan: ScanContext, event_time: String, source: &str) -> ReportInput {
        ReportInput {
            scan,
            inspector: InspectorFacts {
                event_time: Some(event_time),
                source: Some(source.to_string()),
            },
        }
    }
}

impl Input for ReportInput {
    fn check(&self) -> Result<(), Error> {
        self.scan.check_at("scan")
    }
}

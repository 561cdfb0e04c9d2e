//! The facts that flow between states: one scan's context, its status, and
//! the report machine's input. Deployment settings never travel in these.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{AccountId, AmiId, InstanceId, Place, RegionName, RuleName, ScanId};
use super::{field, Input};
use crate::error::Error;

/// One scan's facts, filled in as the scan goes: find-amis sets the first
/// five, launch-instance the instance, create-scan-rule the rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanContext {
    pub scan_id: ScanId,
    pub ami_id: AmiId,
    /// The account that owns the AMI, where the scan acts (set by
    /// find-amis); absent: the account the functions run in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<AccountId>,
    /// The AMI's Region (set by find-amis); absent: the functions' own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<RegionName>,
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
    /// How find-amis asked for the AMI to be scanned; absent: `instance`
    /// (executions started before snapshot mode existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_mode: Option<ScanMode>,
    /// Inspector's id of the on-demand (snapshot) scan, set by start-scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspector_scan_id: Option<String>,
    /// Which on-demand scan of this scan it is, set by start-scan: 0 for the
    /// first, 1 for the one new start (after Inspector's `INTERNAL_ERROR`, or
    /// for findings that went missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_attempt: Option<u32>,
    /// Why this scan has no instance to fall back to (find-amis: `auto`
    /// outside the hub's own account and Region, where its subnet is), for
    /// the reason of a `NOT_SCANNABLE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_instance_scan: Option<String>,
    /// How long launch-scan waits for the snapshot scan's completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

impl ScanContext {
    /// A new scan of an AMI, as find-amis starts it.
    pub fn new(scan_id: ScanId, ami_id: AmiId) -> ScanContext {
        ScanContext {
            scan_id,
            ami_id,
            account_id: None,
            region: None,
            ami_name: None,
            platform: None,
            requested_at: None,
            instance_id: None,
            instance_type: None,
            launched_at: None,
            deadline_at: None,
            rule_name: None,
            scan_mode: None,
            inspector_scan_id: None,
            snapshot_attempt: None,
            no_instance_scan: None,
            wait_seconds: None,
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

    /// Where the scan acts: its account and Region, each absent one the
    /// functions' own (`home`).
    pub fn place(&self, home: &Place) -> Place {
        Place {
            account_id: self
                .account_id
                .clone()
                .unwrap_or_else(|| home.account_id.clone()),
            region: self.region.clone().unwrap_or_else(|| home.region.clone()),
        }
    }

    /// The context with its account and Region written out (each absent
    /// one `home`'s), as the report records them.
    pub fn placed(mut self, home: &Place) -> ScanContext {
        let place = self.place(home);
        self.account_id = Some(place.account_id);
        self.region = Some(place.region);
        self
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

/// How an AMI is scanned: from its snapshots by Inspector's on-demand scan,
/// on a temporary instance by Inspector's agent, or snapshot first with the
/// instance when Inspector cannot read the image (`auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanMode {
    Snapshot,
    Instance,
    Auto,
}

impl ScanMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanMode::Snapshot => "snapshot",
            ScanMode::Instance => "instance",
            ScanMode::Auto => "auto",
        }
    }

    /// Whether this mode may launch an instance.
    pub fn can_launch(self) -> bool {
        self != ScanMode::Snapshot
    }
}

impl std::str::FromStr for ScanMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "snapshot" => Ok(ScanMode::Snapshot),
            "instance" => Ok(ScanMode::Instance),
            "auto" => Ok(ScanMode::Auto),
            _ => Err("expected snapshot, instance or auto".into()),
        }
    }
}

impl fmt::Display for ScanMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    /// A snapshot scan's outcome: Inspector's completion event detail, or
    /// GetOnDemandScanStatus' answer at the deadline. Absent: instance scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotOutcome>,
}

/// An on-demand scan's end, in Inspector's camelCase names: the detail of
/// its "Inspector2 OnDemand Scan Complete" event, or the same fields from
/// GetOnDemandScanStatus (which has no severity counts). Enum values stay
/// text: the documentation and the SDK disagree on some of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotOutcome {
    pub scan_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    pub scan_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding_severity_counts: Option<OnDemandCounts>,
    /// `event` (the completion event) or `status` (GetOnDemandScanStatus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Set by launch-scan once the grace for late findings is spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_over: Option<bool>,
}

pub const SNAPSHOT_SUCCESSFUL: &str = "SUCCESSFUL";
pub const SNAPSHOT_FAILED: &str = "FAILED";
pub const SNAPSHOT_IN_PROGRESS: &str = "IN_PROGRESS";

/// `findingSeverityCounts` of a completion event; `TOTAL` is what
/// completeness is judged by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub struct OnDemandCounts {
    #[serde(default)]
    pub critical: u64,
    #[serde(default)]
    pub high: u64,
    #[serde(default)]
    pub medium: u64,
    #[serde(default)]
    pub low: u64,
    #[serde(default)]
    pub informational: u64,
    #[serde(default)]
    pub untriaged: u64,
    pub total: u64,
}

impl OnDemandCounts {
    /// Inspector's count of one severity.
    pub fn get(&self, severity: super::Severity) -> u64 {
        use super::Severity::*;
        match severity {
            Critical => self.critical,
            High => self.high,
            Medium => self.medium,
            Low => self.low,
            Informational => self.informational,
            Untriaged => self.untriaged,
        }
    }
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
            snapshot: None,
        }
    }
}

impl Input for ReportInput {
    fn check(&self) -> Result<(), Error> {
        self.scan.check_at("scan")
    }
}

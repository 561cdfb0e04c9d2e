//! check-scan: what launch-scan asks once its wait for Inspector ends
//! without an answer (the task token's timeout, at the scan's deadline).
//! For an instance scan: Inspector's coverage of the instance says whether it
//! was scanned (the event was lost: report it), will never be (not
//! scannable), or is still pending (timed out). For a snapshot scan:
//! Inspector's own status of the on-demand scan. It reads no AMI tags and
//! starts nothing: the execution continues from its answer.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::aws::ec2;
use crate::aws::inspector;
use crate::error::{Error, Result};
use crate::model::scan::{InspectorFacts, FROM_DEADLINE};
use crate::model::{time, ScanContext, ScanStatus, SnapshotOutcome};
use crate::settings::{EnvReader, FromEnv, Home};

/// check-scan: where it runs (what it asks is in its request).
#[derive(Debug, Clone)]
pub struct CheckSettings {
    /// The functions' account, and the role they assume in a member's.
    pub home: Home,
}

impl FromEnv for CheckSettings {
    fn from_env<F: Fn(&str) -> Option<String>>(mut env: EnvReader<F>) -> Result<Self> {
        let home = Home::read(&mut env);
        env.finish(|| Some(CheckSettings { home: home? }))
    }
}

/// ListCoverage reasons after which Inspector will never scan the instance.
pub const NEVER_REASONS: [&str; 6] = [
    "UNSUPPORTED_OS",
    "EXCLUDED_BY_TAG",
    "ACCESS_DENIED",
    "ACCESS_DENIED_TO_ENCRYPTION_KEY",
    "EC2_INSTANCE_STOPPED",
    "RESOURCE_TERMINATED",
];

/// What Inspector's coverage says of the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    pub status_code: String,
    pub reason: String,
    pub scanned: bool,
}

/// check-scan's answer for an instance scan, tagged by `outcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckResult {
    /// Inspector scanned the instance but its event never woke the wait:
    /// launch-scan reports it, with these facts.
    Scanned { inspector: InspectorFacts },
    /// Inspector will never scan it (or the AMI is gone): the status and
    /// reason for the AMI's tags.
    NotScannable { status: ScanStatus, reason: String },
    /// Not scanned by the deadline.
    TimedOut { status: ScanStatus, reason: String },
}

impl CheckResult {
    fn not_scannable(reason: impl Into<String>) -> CheckResult {
        CheckResult::NotScannable {
            status: ScanStatus::NotScannable,
            reason: reason.into(),
        }
    }

    fn timed_out(reason: impl Into<String>) -> CheckResult {
        CheckResult::TimedOut {
            status: ScanStatus::TimedOut,
            reason: reason.into(),
        }
    }
}

/// Decides from whether the AMI still exists and the instance's coverage
/// (`None`: Inspector does not list it). Pure.
pub fn decide(ami_exists: bool, coverage: Option<&Coverage>, now: DateTime<Utc>) -> CheckResult {
    if !ami_exists {
        return CheckResult::not_scannable("the AMI was deregistered during the scan");
    }
    let Some(coverage) = coverage else {
        return CheckResult::timed_out(
            "the instance is not in Inspector's coverage (is EC2 scanning enabled?)",
        );
    };
    if coverage.scanned || coverage.reason == "SUCCESSFUL" {
        return CheckResult::Scanned {
            inspector: InspectorFacts {
                event_time: Some(time::timestamp(now)),
                source: Some(FROM_DEADLINE.into()),
            },
        };
    }
    let reason = format!(
        "Inspector coverage: {} ({})",
        coverage.reason, coverage.status_code
    );
    if NEVER_REASONS.contains(&coverage.reason.as_str()) {
        CheckResult::not_scannable(reason)
    } else {
        CheckResult::timed_out(reason)
    }
}

/// Whether the AMI is still registered in this account.
async fn ami_exists(client: &ec2::Client, scan: &ScanContext) -> Result<bool> {
    Ok(ec2::own_image(client, &scan.ami_id).await?.is_some())
}

/// Checks a scan whose deadline has passed.
/// check-scan's request: an instance scan's context, or (for the deadline of
/// a snapshot scan whose completion never came) `{"snapshot_scan": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SnapshotCheck {
    pub snapshot_scan: ScanContext,
}

impl crate::model::Input for SnapshotCheck {
    fn check(&self) -> Result<()> {
        self.snapshot_scan.check_at("snapshot_scan")?;
        if self.snapshot_scan.inspector_scan_id.is_none() {
            return Err(Error::invalid(
                "snapshot_scan.inspector_scan_id",
                "missing; start the snapshot scan first",
            ));
        }
        Ok(())
    }
}

/// A snapshot scan at its deadline: Inspector's own status of the scan, in
/// the completion event's names, for launch-scan to take the same paths as
/// with the event (`IN_PROGRESS` still, or `UNKNOWN` once Inspector has no
/// record of it: not scanned).
pub async fn snapshot_status(
    inspector_client: &inspector::Client,
    request: &SnapshotCheck,
) -> Result<SnapshotOutcome> {
    let scan = &request.snapshot_scan;
    let id = scan.inspector_scan_id.clone().unwrap_or_default();
    let status = inspector::on_demand_scan_status(inspector_client, &scan.ami_id, &id).await?;
    let outcome = status.unwrap_or(SnapshotOutcome {
        scan_id: id,
        resource_id: Some(scan.ami_id.to_string()),
        scan_status: "UNKNOWN".into(),
        scan_status_reason: Some("Inspector has no record of this scan".into()),
        started_at: None,
        completed_at: None,
        finding_severity_counts: None,
        source: Some("status".into()),
        grace_over: None,
    });
    info!(
        scan_id = %scan.scan_id,
        inspector_scan_id = %outcome.scan_id,
        status = %outcome.scan_status,
        "snapshot scan checked at its deadline"
    );
    Ok(outcome)
}

/// Checks an instance scan whose wait ended without Inspector's event.
pub async fn run(
    ec2_client: &ec2::Client,
    inspector_client: &inspector::Client,
    scan: &ScanContext,
    now: DateTime<Utc>,
) -> Result<CheckResult> {
    let instance_id = scan.require_instance("")?;
    let exists = ami_exists(ec2_client, scan).await?;
    let cover = if exists {
        inspector::coverage_of(inspector_client, instance_id)
            .await?
            .map(|r| Coverage {
                status_code: r
                    .scan_status()
                    .map(|s| s.status_code().as_str().to_string())
                    .unwrap_or_default(),
                reason: r
                    .scan_status()
                    .map(|s| s.reason().as_str().to_string())
                    .unwrap_or_default(),
                scanned: r.last_scanned_at().is_some(),
            })
    } else {
        None
    };
    let result = decide(exists, cover.as_ref(), now);
    info!(scan_id = %scan.scan_id, result = ?result, "deadline check");
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 15, 0, 5).unwrap()
    }

    fn covered(reason: &str, scanned: bool) -> Coverage {
        Coverage {
            status_code: "ACTIVE".into(),
            reason: reason.into(),
            scanned,
        }
    }

    fn outcome(result: &CheckResult) -> String {
        serde_json::to_value(result).unwrap()["outcome"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_scanned_instance_whose_event_was_lost_is_reported_from_the_deadline() {
        for scanned in [true, false] {
            let result = decide(true, Some(&covered("SUCCESSFUL", scanned)), now());
            assert_eq!(
                result,
                CheckResult::Scanned {
                    inspector: InspectorFacts {
                        event_time: Some("2026-11-27T15:00:05.000Z".into()),
                        source: Some("deadline".into()),
                    }
                }
            );
            assert_eq!(outcome(&result), "SCANNED");
        }
    }

    #[test]
    fn never_reasons_are_not_scannable_and_the_rest_time_out() {
        for reason in NEVER_REASONS {
            let result = decide(true, Some(&covered(reason, false)), now());
            assert_eq!(outcome(&result), "NOT_SCANNABLE", "{reason}");
            let value = serde_json::to_value(&result).unwrap();
            assert_eq!(value["status"], "NOT_SCANNABLE");
            assert!(value["reason"].as_str().unwrap().contains(reason));
        }
        for reason in [
            "UNMANAGED_EC2_INSTANCE",
            "NO_INVENTORY",
            "STALE_INVENTORY",
            "PENDING_INITIAL_SCAN",
        ] {
            let result = decide(true, Some(&covered(reason, false)), now());
            assert_eq!(outcome(&result), "TIMED_OUT", "{reason}");
            assert_eq!(
                serde_json::to_value(&result).unwrap()["status"],
                "TIMED_OUT"
            );
        }
        assert_eq!(outcome(&decide(true, None, now())), "TIMED_OUT");
        // A deregistered AMI is not scannable, whatever the coverage says.
        assert_eq!(
            outcome(&decide(false, Some(&covered("SUCCESSFUL", true)), now())),
            "NOT_SCANNABLE"
        );
    }

    #[test]
    fn the_answer_round_trips_through_its_tag() {
        for result in [
            decide(true, Some(&covered("SUCCESSFUL", true)), now()),
            decide(true, None, now()),
            decide(false, None, now()),
        ] {
            let back: CheckResult =
                serde_json::from_value(serde_json::to_value(&result).unwrap()).unwrap();
            assert_eq!(back, result);
        }
    }
}

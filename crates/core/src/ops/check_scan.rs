//! check-scan: what launch-scan does when its deadline passes. The scan may
//! be done (report-and-cleanup already ran), scanned with the event lost
//! (hand over to report-and-cleanup), impossible (Inspector will never scan
//! this instance), or still pending (give up).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::aws::ec2::{self, Images};
use crate::aws::inspector;
use crate::aws::sfn;
use crate::error::{Error, Result};
use crate::model::{scan, time, ReportInput, ScanContext, ScanStatus, SnapshotOutcome};
use crate::naming;
use crate::settings::{vars, EnvReader, FromEnv, StateMachineArn};
use crate::tags::{self, TagPrefix};

/// check-scan: whose tags to read, and what to start when the event was lost.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    pub tag_prefix: TagPrefix,
    pub report_state_machine_arn: StateMachineArn,
}

impl FromEnv for CheckSettings {
    fn from_env<F: Fn(&str) -> Option<String>>(mut env: EnvReader<F>) -> Result<Self> {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// report-and-cleanup already finished this scan.
    Finished,
    /// Inspector scanned it but the event was lost: report-and-cleanup was started.
    HandedOver,
    NotScannable,
    TimedOut,
}

/// check-scan's result: the outcome and, when the scan did not happen, the
/// status and reason for the AMI's tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ScanStatus>,
    pub reason: String,
}

/// Whether the AMI's tags say report-and-cleanup (or the failure path)
/// already finished this very scan.
fn already_finished(scan: &ScanContext, tagged_scan: Option<&str>, status: Option<&str>) -> bool {
    let finished = [ScanStatus::Complete.as_str(), ScanStatus::Failed.as_str()];
    tagged_scan == Some(scan.scan_id.as_str()) && status.is_some_and(|s| finished.contains(&s))
}

/// Decides from the AMI's status tags (`None`: the AMI is gone) and the
/// instance's coverage (`None`: Inspector does not list it).
pub fn decide(
    scan: &ScanContext,
    ami_status: Option<(Option<String>, Option<String>)>,
    coverage: Option<&Coverage>,
) -> (Outcome, String) {
    let Some((scan_id, status)) = ami_status else {
        return (
            Outcome::NotScannable,
            "the AMI was deregistered during the scan".into(),
        );
    };
    if already_finished(scan, scan_id.as_deref(), status.as_deref()) {
        return (Outcome::Finished, "the scan already finished".into());
    }
    let Some(coverage) = coverage else {
        return (
            Outcome::TimedOut,
            "the instance is not in Inspector's coverage (is EC2 scanning enabled?)".into(),
        );
    };
    if coverage.scanned || coverage.reason == "SUCCESSFUL" {
        return (
            Outcome::HandedOver,
            "Inspector scanned the instance but its event was not delivered".into(),
        );
    }
    let reason = format!(
        "Inspector coverage: {} ({})",
        coverage.reason, coverage.status_code
    );
    if NEVER_REASONS.contains(&coverage.reason.as_str()) {
        (Outcome::NotScannable, reason)
    } else {
        (Outcome::TimedOut, reason)
    }
}

/// The AMI's `scan-id` and `status` tags, or `None` when the AMI is gone.
async fn ami_status(
    client: &ec2::Client,
    prefix: &TagPrefix,
    scan: &ScanContext,
) -> Result<Option<(Option<String>, Option<String>)>> {
    let images = ec2::describe_images(
        client,
        Images::Named {
            ids: std::slice::from_ref(&scan.ami_id),
            owned_only: true,
        },
    )
    .await?;
    Ok(images.first().map(|image| {
        let tag = |name: &str| ec2::tag(image.tags(), &prefix.key(name)).map(str::to_string);
        (tag(tags::SCAN_ID), tag(tags::STATUS))
    }))
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

pub async fn run(
    ec2_client: &ec2::Client,
    inspector_client: &inspector::Client,
    sfn_client: &sfn::Client,
    settings: &CheckSettings,
    scan: &ScanContext,
    now: DateTime<Utc>,
) -> Result<CheckResult> {
    let instance_id = scan.require_instance("")?;
    let status = ami_status(ec2_client, &settings.tag_prefix, scan).await?;
    // A finished scan needs no coverage look-up.
    let finished = status
        .as_ref()
        .is_some_and(|(id, st)| already_finished(scan, id.as_deref(), st.as_deref()));
    let cover = if finished {
        None
    } else {
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
    };
    let (outcome, reason) = decide(scan, status, cover.as_ref());
    if outcome == Outcome::HandedOver {
        // Starts report-and-cleanup as the lost event would have.
        let input = ReportInput::new(scan.clone(), time::timestamp(now), scan::FROM_DEADLINE);
        let input = serde_json::to_string(&input)
            .map_err(|e| Error::Internal(format!("encoding the report input: {e}")))?;
        sfn::start_execution(
            sfn_client,
            &settings.report_state_machine_arn.0,
            &naming::deadline_execution_name(&scan.scan_id),
            input,
        )
        .await?;
    }
    info!(scan_id = %scan.scan_id, outcome = ?outcome, reason = %reason, "deadline check");
    Ok(CheckResult {
        outcome,
        status: match outcome {
            Outcome::NotScannable => Some(ScanStatus::NotScannable),
            Outcome::TimedOut => Some(ScanStatus::TimedOut),
            _ => None,
        },
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan() -> ScanContext {
        serde_json::from_str(include_str!(
            "../../../../events/create-scan-rule/output.json"
        ))
        .unwrap()
    }

    fn covered(reason: &str, scanned: bool) -> Coverage {
        Coverage {
            status_code: "ACTIVE".into(),
            reason: reason.into(),
            scanned,
        }
    }

    fn tags(status: &str) -> Option<(Option<String>, Option<String>)> {
        Some((Some(scan().scan_id.to_string()), Some(status.into())))
    }

    #[test]
    fn a_finished_scan_ends_quietly_whatever_the_coverage() {
        assert_eq!(decide(&scan(), tags("COMPLETE"), None).0, Outcome::Finished);
        assert_eq!(
            decide(
                &scan(),
                tags("FAILED"),
                Some(&covered("PENDING_INITIAL_SCAN", false))
            )
            .0,
            Outcome::Finished
        );
        // An older scan's COMPLETE does not count.
        let older = Some((
            Some("ami-0123456789abcdef0-20261120".into()),
            Some("COMPLETE".into()),
        ));
        assert_eq!(
            decide(
                &scan(),
                older,
                Some(&covered("PENDING_INITIAL_SCAN", false))
            )
            .0,
            Outcome::TimedOut
        );
    }

    #[test]
    fn a_scanned_instance_with_a_lost_event_is_handed_over() {
        assert_eq!(
            decide(
                &scan(),
                tags("IN_PROGRESS"),
                Some(&covered("SUCCESSFUL", true))
            )
            .0,
            Outcome::HandedOver
        );
        assert_eq!(
            decide(
                &scan(),
                tags("IN_PROGRESS"),
                Some(&covered("SUCCESSFUL", false))
            )
            .0,
            Outcome::HandedOver
        );
    }

    #[test]
    fn never_reasons_are_not_scannable_and_the_rest_time_out() {
        for reason in NEVER_REASONS {
            let (outcome, text) =
                decide(&scan(), tags("IN_PROGRESS"), Some(&covered(reason, false)));
            assert_eq!(outcome, Outcome::NotScannable, "{reason}");
            assert!(text.contains(reason));
        }
        for reason in [
            "UNMANAGED_EC2_INSTANCE",
            "NO_INVENTORY",
            "STALE_INVENTORY",
            "PENDING_INITIAL_SCAN",
        ] {
            assert_eq!(
                decide(&scan(), tags("IN_PROGRESS"), Some(&covered(reason, false))).0,
                Outcome::TimedOut,
                "{reason}"
            );
        }
        assert_eq!(
            decide(&scan(), tags("IN_PROGRESS"), None).0,
            Outcome::TimedOut
        );
        assert_eq!(decide(&scan(), None, None).0, Outcome::NotScannable);
    }
}

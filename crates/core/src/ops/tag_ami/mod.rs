//! tag-ami: write a scan's status and result onto the AMI, under the
//! configured prefix and within EC2's tag limits, and word the alert that
//! goes with it (`alert`): the state machines publish what it returns.

mod alert;
mod record;

pub use record::{recorded, SUMMARY_PREFIX};

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;

use crate::aws::{ec2, s3};
use crate::error::{Error, Result};
use crate::model::{time, AmiId, Input, Place, ScanContext, ScanStatus, Severity, Verdict};
use crate::notify::Publishable;
use crate::report::ScanSummary;
use crate::settings::{vars, Bounded, BucketName, EnvReader, FromEnv, Home};
use crate::tags::{self, TagPrefix};

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
    /// Where a completed scan's summary is read from.
    pub report_bucket: BucketName,
    /// A `PASS` older than this many days whose rescan ends without a
    /// result becomes `STALE`.
    pub max_scan_age_days: u32,
    /// The functions' account, and the role they assume in a member's.
    pub home: Home,
}

impl FromEnv for TagSettings {
    fn from_env<F: Fn(&str) -> Option<String>>(mut env: EnvReader<F>) -> Result<Self> {
        let prefix: Option<TagPrefix> = env.required(vars::TAG_PREFIX);
        let action: Option<FailAction> = env.optional(vars::FAIL_ACTION, FailAction::None);
        let bucket: Option<BucketName> = env.required(vars::REPORT_BUCKET);
        let max_age: Option<Bounded<1, 365>> = env.optional(vars::MAX_SCAN_AGE_DAYS, Bounded(7));
        let home = Home::read(&mut env);
        env.finish(|| {
            Some(TagSettings {
                tag_prefix: prefix?,
                fail_action: action?,
                report_bucket: bucket?,
                max_scan_age_days: max_age?.0,
                home: home?,
            })
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TagRequest {
    pub scan: ScanContext,
    pub status: ScanStatus,
    /// Why a scan failed or timed out: text, a Step Functions error object
    /// (`{"Error": …, "Cause": …}`), or Inspector's on-demand scan status.
    #[serde(default)]
    pub reason: Option<Value>,
    /// The export's summary; required with `COMPLETE`. A summary whose
    /// verdict is `NOT_SCANNABLE` (Inspector answered that it cannot read
    /// the image) is tagged `NOT_SCANNABLE` with the summary's reason.
    #[serde(default)]
    pub summary: Option<ScanSummary>,
    /// The state a `FAILED` scan failed in, for the alert.
    #[serde(default)]
    pub failed_state: Option<String>,
    /// Inspector's `RESOURCE_TERMINATED`: the AMI (or its snapshots) went
    /// away during the scan. Nothing is tagged; only the alert is worded.
    #[serde(default)]
    pub resource_gone: bool,
}

impl TagRequest {
    /// The status to tag: a completed report whose verdict is
    /// `NOT_SCANNABLE` is tagged so, with the summary's reason.
    fn resolved(mut self) -> TagRequest {
        if let (ScanStatus::Complete, Some(summary)) = (self.status, &self.summary) {
            if summary.verdict == Verdict::NotScannable {
                self.status = ScanStatus::NotScannable;
                self.reason = summary.reason.clone().map(Value::String);
            }
        }
        self
    }
}

impl Input for TagRequest {
    fn check(&self) -> Result<()> {
        self.scan.check_at("scan")?;
        if self.resource_gone && self.status != ScanStatus::Failed {
            return Err(Error::invalid(
                "resource_gone",
                "goes only with status FAILED",
            ));
        }
        match (&self.summary, self.status) {
            (None, ScanStatus::Complete) => Err(Error::invalid(
                "summary",
                "is required when status is COMPLETE",
            )),
            (Some(summary), _)
                if summary.ami_id != self.scan.ami_id.as_str()
                    || summary.scan_id != self.scan.scan_id.as_str() =>
            {
                Err(Error::invalid(
                    "summary",
                    format!(
                        "belongs to {} {}, not to this scan",
                        summary.ami_id, summary.scan_id
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagOutput {
    pub ami_id: AmiId,
    pub tags: BTreeMap<String, String>,
    pub removed: Vec<String>,
    /// The time of the newer completed scan whose result the AMI keeps:
    /// this older result was not written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// `deprecated` or `disabled` when the FAIL action was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The alert to publish now.
    pub alert: Publishable,
    /// A second alert to publish after it (a vulnerable AMI's
    /// `SCAN_COMPLETED`, after its `AMI_VULNERABLE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub and_then: Option<Publishable>,
}

/// A reason as one line of text: text, a Step Functions error
/// (`{"Error", "Cause"}`), or Inspector's view of an on-demand scan (in
/// the completion event's field names, as launch-scan holds it when the
/// scan was still running at the deadline).
pub fn reason_text(reason: &Value) -> String {
    match reason {
        Value::String(s) => s.clone(),
        Value::Object(map) if map.contains_key("scanStatus") => {
            let part = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or_default();
            let mut text = format!(
                "Inspector's snapshot scan {} was {} at the deadline",
                part("scanId"),
                part("scanStatus")
            );
            if !part("scanStatusReason").is_empty() {
                text = format!("{text} ({})", part("scanStatusReason"));
            }
            text
        }
        Value::Object(map) => {
            let part = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or_default();
            match (part("Error"), part("Cause")) {
                ("", "") => reason.to_string(),
                (e, "") => e.to_string(),
                ("", c) => c.to_string(),
                (e, c) => format!("{e}: {c}"),
            }
        }
        other => other.to_string(),
    }
    .split_whitespace()
    .collect::<Vec<_>>()
    .join(" ")
}

/// The tags to set and the tag keys to remove. Count, verdict and report tags
/// always describe the last completed scan; `status` the latest one. The
/// reason is replaced by a scan that ends with one and removed by a scan
/// that completes or ends without one; a scan in progress leaves it, so
/// starting a scan writes with one call (`run` reads the AMI's tags first,
/// and an overdue `PASS` gets `STALE` and its own reason).
pub fn result_tags(
    prefix: &TagPrefix,
    request: &TagRequest,
    now: DateTime<Utc>,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut set = BTreeMap::new();
    let mut remove = Vec::new();
    set.insert(
        prefix.key(tags::STATUS),
        request.status.as_str().to_string(),
    );
    set.insert(prefix.key(tags::STATUS_AT), time::timestamp(now));
    set.insert(prefix.key(tags::SCAN_ID), request.scan.scan_id.to_string());
    match (request.status, &request.summary) {
        (ScanStatus::Complete, Some(summary)) => {
            set.insert(prefix.key(tags::LAST_SCAN), summary.scanned_at.clone());
            set.insert(
                prefix.key(tags::VERDICT),
                summary.verdict.as_str().to_string(),
            );
            for severity in Severity::RATED {
                set.insert(
                    prefix.key(&severity.as_str().to_ascii_lowercase()),
                    summary.counts.get(severity).to_string(),
                );
            }
            set.insert(
                prefix.key(tags::FINDINGS),
                summary.counts.total().to_string(),
            );
            set.insert(prefix.key(tags::EXCEPTED), summary.excepted.to_string());
            set.insert(prefix.key(tags::SUPPRESSED), summary.suppressed.to_string());
            set.insert(prefix.key(tags::REPORT_URI), summary.report_uri.clone());
            set.insert(prefix.key(tags::SCAN_MODE), summary.scan_mode.clone());
            match &summary.reason {
                // INCOMPLETE and NOT_SCANNABLE say why (expected vs received).
                Some(reason) => {
                    set.insert(prefix.key(tags::REASON), reason.clone());
                }
                None => remove.push(prefix.key(tags::REASON)),
            }
        }
        (ScanStatus::InProgress, _) => insert_mode_that_ran(&mut set, prefix, request),
        _ => match request
            .reason
            .as_ref()
            .map(reason_text)
            .filter(|r| !r.is_empty())
        {
            Some(reason) => {
                insert_mode_that_ran(&mut set, prefix, request);
                set.insert(prefix.key(tags::REASON), reason);
            }
            None => {
                insert_mode_that_ran(&mut set, prefix, request);
                remove.push(prefix.key(tags::REASON));
            }
        },
    }
    for value in set.values_mut() {
        *value = tags::tag_value(value);
    }
    (set, remove)
}

/// Before a summary exists, the mode is the one the scan is running in: an
/// instance once one was launched (auto's fallback included), else snapshot
/// once Inspector's scan was started.
fn insert_mode_that_ran(
    set: &mut BTreeMap<String, String>,
    prefix: &TagPrefix,
    request: &TagRequest,
) {
    let mode = if request.scan.instance_id.is_some() {
        "instance"
    } else if request.scan.inspector_scan_id.is_some() {
        "snapshot"
    } else {
        return;
    };
    set.insert(prefix.key(tags::SCAN_MODE), mode.to_string());
}

/// Tags the AMI and words the alert. A `COMPLETE` request is tagged from
/// the summary recorded in S3 ([`recorded`]). An AMI that is gone is
/// `NotFound`, except for a `FAILED` scan (nothing is left to tag; the
/// alert says so) and a request that says it went away during the scan.
pub async fn run(
    client: &ec2::Client,
    s3_client: &s3::Client,
    settings: &TagSettings,
    request: TagRequest,
    home: &Place,
    now: DateTime<Utc>,
) -> Result<TagOutput> {
    let request = recorded(s3_client, &settings.report_bucket.0, request)
        .await?
        .resolved();
    let ami_id = request.scan.ami_id.clone();
    let (mut set, remove) = result_tags(&settings.tag_prefix, &request, now);
    let prefix = &settings.tag_prefix;
    let ended_without_result = matches!(request.status, ScanStatus::Failed | ScanStatus::TimedOut)
        && request.summary.is_none()
        && !request.resource_gone;
    // What the AMI holds matters to a result (is it older?) and to an
    // ending without one (is the old PASS too old?).
    let has_result = request.summary.is_some()
        && matches!(
            request.status,
            ScanStatus::Complete | ScanStatus::NotScannable
        );
    // A rescan starting on an old PASS: the PASS no longer stands while it runs.
    let starting = request.status == ScanStatus::InProgress && !request.resource_gone;
    let held = if has_result || ended_without_result || starting {
        Some(held_tags(client, prefix, &ami_id).await?)
    } else {
        None
    };
    let superseded = match (&request.summary, &held) {
        (Some(summary), Some(held)) => held
            .last_scan
            .clone()
            .filter(|h| time::later(Some(h), Some(&summary.scanned_at))),
        _ => None,
    };
    if ended_without_result || starting {
        if let Some(held) = &held {
            if held.is_stale(now, settings.max_scan_age_days) {
                // No fresh result (yet), and the last one is too old to stand.
                set.insert(prefix.key(tags::VERDICT), tags::STALE.to_string());
                if starting {
                    set.insert(
                        prefix.key(tags::REASON),
                        tags::stale_reason(
                            held.last_scan.as_deref().unwrap_or_default(),
                            settings.max_scan_age_days,
                            "; a rescan is running",
                        ),
                    );
                }
            }
        }
    }
    let tagged = if request.resource_gone {
        info!(ami_id = %ami_id, "AMI gone during its scan: nothing tagged");
        false
    } else if let Some(newer) = &superseded {
        info!(ami_id = %ami_id, newer = %newer, "a newer scan's result is on the AMI: kept");
        false
    } else {
        match write_tags(client, &ami_id, &set, &remove).await {
            Ok(()) => true,
            // A failure that outlived its AMI has nothing left to tag; its
            // alert is what remains, and says so.
            Err(Error::NotFound { .. }) if request.status == ScanStatus::Failed => {
                info!(ami_id = %ami_id, "AMI gone: the failure is alerted, not tagged");
                false
            }
            Err(err) => return Err(err),
        }
    };
    let (first, second) = alert::alerts_for(&request, tagged);
    let place = request.scan.place(home);
    let alert = first.located(&place, home).publishable()?;
    let and_then = second
        .map(|n| n.located(&place, home).publishable())
        .transpose()?;
    let (set, remove) = if tagged {
        (set, remove)
    } else {
        (BTreeMap::new(), Vec::new())
    };
    info!(ami_id = %ami_id, status = %request.status, "AMI tagged");
    let failed = tagged
        && request
            .summary
            .as_ref()
            .is_some_and(|s| request.status == ScanStatus::Complete && s.verdict == Verdict::Fail);
    let action = if failed {
        apply_fail_action(client, &ami_id, settings.fail_action, now).await?
    } else {
        None
    };
    Ok(TagOutput {
        ami_id,
        tags: set,
        removed: remove,
        superseded_by: superseded,
        action,
        alert,
        and_then,
    })
}

/// What the AMI carries of its last completed scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    pub last_scan: Option<String>,
    pub verdict: Option<String>,
}

impl Held {
    /// A `PASS` whose scan is older than `max_age_days`.
    pub fn is_stale(&self, now: DateTime<Utc>, max_age_days: u32) -> bool {
        let old = self
            .last_scan
            .as_deref()
            .and_then(time::parse)
            .is_some_and(|t| now - t > chrono::Duration::days(i64::from(max_age_days)));
        old && self.verdict.as_deref() == Some(Verdict::Pass.as_str())
    }
}

/// The AMI's `last-scan` and `verdict` tags (none for an AMI that is gone:
/// the write that follows says so).
async fn held_tags(client: &ec2::Client, prefix: &TagPrefix, ami_id: &AmiId) -> Result<Held> {
    let image = ec2::own_image(client, ami_id).await?;
    let tag = |name: &str| {
        image
            .as_ref()
            .and_then(|i| ec2::tag(i.tags(), &prefix.key(name)))
            .map(str::to_string)
    };
    Ok(Held {
        last_scan: tag(tags::LAST_SCAN),
        verdict: tag(tags::VERDICT),
    })
}

/// Sets and removes the tags; an AMI that is gone is `NotFound`, by EC2's
/// own answer.
async fn write_tags(
    client: &ec2::Client,
    ami_id: &AmiId,
    set: &BTreeMap<String, String>,
    remove: &[String],
) -> Result<()> {
    ec2::create_tags(client, ami_id.as_str(), set)
        .await
        .map_err(|err| match err.aws_code() {
            Some("InvalidAMIID.NotFound" | "InvalidAMIID.Unavailable") => Error::NotFound {
                kind: "AMI",
                id: ami_id.to_string(),
            },
            _ => err,
        })?;
    ec2::delete_tags(client, ami_id.as_str(), remove).await
}

/// Deprecates or disables an AMI whose scan failed the threshold.
async fn apply_fail_action(
    client: &ec2::Client,
    ami_id: &AmiId,
    action: FailAction,
    now: DateTime<Utc>,
) -> Result<Option<String>> {
    let done = match action {
        FailAction::None => return Ok(None),
        FailAction::Deprecate => {
            // EC2 refuses a time in the past and rounds to the minute.
            ec2::enable_image_deprecation(client, ami_id, now + chrono::Duration::minutes(1))
                .await?;
            "deprecated"
        }
        FailAction::Disable => {
            ec2::disable_image(client, ami_id).await?;
            "disabled"
        }
    };
    info!(ami_id = %ami_id, action = done, "FAIL action applied");
    Ok(Some(done.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::parse_event;
    use serde_json::json;

    /// A sample event of `events/tag-ami`.
    pub(crate) fn sample(name: &str) -> Value {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../events/tag-ami")
                .join(name),
        )
        .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn prefix() -> TagPrefix {
        "amiscan:".parse().unwrap()
    }

    #[test]
    fn a_pass_older_than_the_max_age_is_stale_and_nothing_else_is() {
        let now: DateTime<Utc> = "2026-12-06T00:00:00Z".parse().unwrap();
        let held = |at: &str, verdict: &str| Held {
            last_scan: Some(at.into()),
            verdict: Some(verdict.into()),
        };
        assert!(held("2026-11-20T00:00:00.000Z", "PASS").is_stale(now, 7));
        assert!(!held("2026-12-01T00:00:00.000Z", "PASS").is_stale(now, 7));
        assert!(!held("2026-11-20T00:00:00.000Z", "FAIL").is_stale(now, 7));
        assert!(!held("2026-11-20T00:00:00.000Z", "PASS").is_stale(now, 30));
        assert!(!Held::default().is_stale(now, 7));
    }

    #[test]
    fn a_scan_in_progress_sets_four_tags_and_removes_nothing() {
        let request: TagRequest = parse_event(sample("in-progress.json")).unwrap();
        let (set, remove) = result_tags(&prefix(), &request, Utc::now());
        assert_eq!(
            set.keys().collect::<Vec<_>>(),
            [
                "amiscan:scan-id",
                "amiscan:scan-mode",
                "amiscan:status",
                "amiscan:status-at"
            ]
        );
        assert_eq!(set["amiscan:scan-mode"], "instance");
        assert!(remove.is_empty());
    }

    #[test]
    fn a_scan_that_ends_without_a_summary_is_tagged_with_the_mode_that_ran() {
        let mut request: TagRequest = parse_event(sample("timed-out.json")).unwrap();
        request.scan.instance_id = None;
        request.scan.inspector_scan_id = Some("8b1e4a9c-2f3d-4e5a-9b6c-7d8e9f0a1b2c".into());
        let (set, _) = result_tags(&prefix(), &request, Utc::now());
        assert_eq!(set["amiscan:scan-mode"], "snapshot");
        request.scan.inspector_scan_id = None;
        let (set, _) = result_tags(&prefix(), &request, Utc::now());
        assert!(!set.contains_key("amiscan:scan-mode"), "nothing ran");
    }

    #[test]
    fn a_completed_scan_sets_its_result_and_clears_the_reason() {
        let request: TagRequest = parse_event(sample("complete.json")).unwrap();
        let (set, remove) = result_tags(&prefix(), &request, Utc::now());
        assert_eq!(set["amiscan:status"], "COMPLETE");
        assert_eq!(
            set["amiscan:verdict"],
            request.summary.as_ref().unwrap().verdict.as_str()
        );
        assert!(set.contains_key("amiscan:critical") && set.contains_key("amiscan:report-uri"));
        assert_eq!(remove, ["amiscan:reason"]);
        let failed: TagRequest = parse_event(sample("timed-out.json")).unwrap();
        let (set, remove) = result_tags(&prefix(), &failed, Utc::now());
        assert!(set.contains_key("amiscan:reason") && remove.is_empty());
    }

    #[test]
    fn a_complete_status_needs_this_scans_summary() {
        let mut complete = sample("complete.json");
        let field = |v: Value| match parse_event::<TagRequest>(v).unwrap_err() {
            Error::InvalidInput { field, .. } => field,
            other => panic!("{other:?}"),
        };
        complete["summary"]["scan_id"] = json!("ami-0123456789abcdef0-20200101");
        assert_eq!(field(complete.clone()), "summary");
        complete.as_object_mut().unwrap().remove("summary");
        assert_eq!(field(complete), "summary");
        let mut gone = sample("in-progress.json");
        gone["resource_gone"] = json!(true);
        assert_eq!(field(gone), "resource_gone");
    }

    #[test]
    fn reasons_become_one_line() {
        assert_eq!(
            reason_text(&json!({"Error": "NoScan", "Cause": "UNMANAGED\n  EC2"})),
            "NoScan: UNMANAGED EC2"
        );
        assert_eq!(reason_text(&json!("plain")), "plain");
        assert_eq!(
            reason_text(
                &json!({"scanId": "8b1e", "scanStatus": "IN_PROGRESS", "source": "status"})
            ),
            "Inspector's snapshot scan 8b1e was IN_PROGRESS at the deadline"
        );
    }
}

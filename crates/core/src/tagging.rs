//! tag-ami: write a scan's status and result onto the AMI, under the
//! configured prefix and within EC2's tag limits.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;

use crate::aws::ec2;
use crate::aws::ec2::types::{Filter, Tag};
use crate::error::{Error, Result};
use crate::model::{ScanContext, ScanStatus, Severity, Verdict};
use crate::naming::{self, TagPrefix};
use crate::report::{self, ScanSummary};
use crate::settings::{FailAction, TagSettings};

pub const STATUS: &str = "status";
pub const STATUS_AT: &str = "status-at";
pub const SCAN_ID: &str = "scan-id";
pub const REASON: &str = "reason";
pub const LAST_SCAN: &str = "last-scan";
pub const VERDICT: &str = "verdict";
pub const REPORT_URI: &str = "report-uri";
pub const FINDINGS: &str = "findings";

/// The count tags, one per severity that can fail a scan.
pub const COUNT_SEVERITIES: [Severity; 4] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TagRequest {
    pub scan: ScanContext,
    pub status: ScanStatus,
    /// Why a scan failed or timed out: text, or a Step Functions error
    /// object (`{"Error": …, "Cause": …}`).
    #[serde(default)]
    pub reason: Option<Value>,
    /// The export's summary; required with `COMPLETE`.
    #[serde(default)]
    pub summary: Option<ScanSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagOutput {
    pub ami_id: String,
    pub tags: BTreeMap<String, String>,
    pub removed: Vec<String>,
    /// `deprecated` or `disabled` when the FAIL action was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// A reason as one line of text.
pub fn reason_text(reason: &Value) -> String {
    match reason {
        Value::String(s) => s.clone(),
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
/// always describe the last completed scan; `status` the latest one.
pub fn result_tags(
    prefix: &TagPrefix,
    request: &TagRequest,
    now: DateTime<Utc>,
) -> Result<(BTreeMap<String, String>, Vec<String>)> {
    let mut set = BTreeMap::new();
    let mut remove = Vec::new();
    set.insert(prefix.key(STATUS), request.status.as_str().to_string());
    set.insert(prefix.key(STATUS_AT), report::timestamp(now));
    set.insert(prefix.key(SCAN_ID), request.scan.scan_id.clone());
    if request.status == ScanStatus::Complete {
        let summary = request
            .summary
            .as_ref()
            .ok_or_else(|| Error::invalid("summary", "is required when status is COMPLETE"))?;
        if summary.ami_id != request.scan.ami_id || summary.scan_id != request.scan.scan_id {
            return Err(Error::invalid(
                "summary",
                format!(
                    "belongs to {} {}, not to this scan",
                    summary.ami_id, summary.scan_id
                ),
            ));
        }
        set.insert(prefix.key(LAST_SCAN), summary.scanned_at.clone());
        set.insert(prefix.key(VERDICT), summary.verdict.as_str().to_string());
        for severity in COUNT_SEVERITIES {
            set.insert(
                prefix.key(&severity.as_str().to_ascii_lowercase()),
                summary.counts.get(severity).to_string(),
            );
        }
        set.insert(prefix.key(FINDINGS), summary.counts.total().to_string());
        set.insert(prefix.key(REPORT_URI), summary.report_uri.clone());
        remove.push(prefix.key(REASON));
    } else {
        match request
            .reason
            .as_ref()
            .map(reason_text)
            .filter(|r| !r.is_empty())
        {
            Some(reason) => {
                set.insert(prefix.key(REASON), reason);
            }
            None => remove.push(prefix.key(REASON)),
        }
    }
    for value in set.values_mut() {
        *value = naming::tag_value(value);
    }
    Ok((set, remove))
}

/// Tags the AMI. An AMI that is gone (or not this account's) is `NotFound`.
pub async fn tag_ami(
    client: &ec2::Client,
    settings: &TagSettings,
    request: TagRequest,
    now: DateTime<Utc>,
) -> Result<TagOutput> {
    request.scan.validate("scan")?;
    let ami_id = request.scan.ami_id.clone();
    let (set, remove) = result_tags(&settings.tag_prefix, &request, now)?;

    let owned = client
        .describe_images()
        .owners("self")
        .filters(Filter::builder().name("image-id").values(&ami_id).build())
        .send()
        .await
        .map_err(|e| Error::from_sdk("DescribeImages", e))?;
    let not_found = || Error::NotFound {
        kind: "AMI",
        id: ami_id.clone(),
    };
    if owned.images().is_empty() {
        return Err(not_found());
    }

    let tags = set
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<Vec<_>>();
    client
        .create_tags()
        .resources(&ami_id)
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(|e| match Error::from_sdk("CreateTags", e) {
            err if err.aws_code() == Some("InvalidAMIID.NotFound") => not_found(),
            err => err,
        })?;
    if !remove.is_empty() {
        client
            .delete_tags()
            .resources(&ami_id)
            .set_tags(Some(
                remove
                    .iter()
                    .map(|k| Tag::builder().key(k).build())
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| Error::from_sdk("DeleteTags", e))?;
    }
    info!(ami_id = %ami_id, status = %request.status, "AMI tagged");
    let failed = request
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
        action,
    })
}

/// Deprecates or disables an AMI whose scan failed the threshold.
pub async fn apply_fail_action(
    client: &ec2::Client,
    ami_id: &str,
    action: FailAction,
    now: DateTime<Utc>,
) -> Result<Option<String>> {
    let done = match action {
        FailAction::None => return Ok(None),
        FailAction::Deprecate => {
            // EC2 refuses a time in the past and rounds to the minute.
            let at = now + chrono::Duration::minutes(1);
            client
                .enable_image_deprecation()
                .image_id(ami_id)
                .deprecate_at(aws_smithy_types::DateTime::from_secs(at.timestamp()))
                .send()
                .await
                .map_err(|e| Error::from_sdk("EnableImageDeprecation", e))?;
            "deprecated"
        }
        FailAction::Disable => {
            client
                .disable_image()
                .image_id(ami_id)
                .send()
                .await
                .map_err(|e| Error::from_sdk("DisableImage", e))?;
            "disabled"
        }
    };
    info!(ami_id = %ami_id, action = done, "FAIL action applied");
    Ok(Some(done.to_string()))
}

//! collect-findings: the SQS consumer that wakes launch-scan's waits and
//! catches what a snapshot scan delivers only as EventBridge events. The
//! finding events of a batch are staged as one object per scan amiscan
//! started (JSON Lines, named after the batch's findings, so a batch
//! delivered again overwrites itself); a completion event
//! is stored and wakes the launch-scan execution waiting for it; launch-scan's
//! own waiter message registers that execution. An instance scan's rule
//! delivers Inspector's "scan complete" event with the waiting task's token,
//! which wakes it directly. Events of scans amiscan did not start are counted
//! and dropped. Memory holds one batch, whatever a scan's size.

use std::collections::{HashMap, HashSet};

use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::Value;
use tracing::{error, info, warn};

use crate::aws::{s3, sfn};
use crate::error::{Error, Result};
use crate::model::scan::{InspectorFacts, FROM_EVENT};
pub use crate::model::sqs::{BatchResponse, ItemFailure, SqsBatch, SqsRecord};
use crate::model::{
    parse_event, Finding, InstanceScanMessage, SnapshotMarker, SnapshotOutcome, WaiterMessage,
};
use crate::report::Staging;
use crate::settings::{vars, AccountId, BucketName, EnvReader, FromEnv, KmsKeyArn};

/// The two event types amiscan's static rules route into the queue.
pub const FINDING_DETAIL_TYPE: &str = "OnDemand AMI Scan Findings";
pub const COMPLETION_DETAIL_TYPE: &str = "Inspector2 OnDemand Scan Complete";
/// The only source a completion may have.
pub const INSPECTOR_SOURCE: &str = "aws.inspector2";

/// Records handled at once within a batch.
const CONCURRENCY: usize = 16;

/// collect-findings: where findings are staged.
#[derive(Debug, Clone)]
pub struct CollectSettings {
    pub report_bucket: BucketName,
    pub report_kms_key_arn: KmsKeyArn,
    /// This account: a scan whose marker names no account is of it, and
    /// instance scans run only here. A completion wakes a scan only when it
    /// comes from the scan's own account (a member's, for a member's scan).
    pub account_id: AccountId,
}

impl FromEnv for CollectSettings {
    fn from_env<F: Fn(&str) -> Option<String>>(mut env: EnvReader<F>) -> Result<Self> {
        let bucket: Option<BucketName> = env.required(vars::REPORT_BUCKET);
        let key: Option<KmsKeyArn> = env.required(vars::REPORT_KMS_KEY_ARN);
        let account: Option<AccountId> = env.required(vars::ACCOUNT_ID);
        env.finish(|| {
            Some(CollectSettings {
                report_bucket: bucket?,
                report_kms_key_arn: key?,
                account_id: account?,
            })
        })
    }
}

/// What one record is.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A finding event's detail, read once into the typed finding.
    Finding {
        scan_id: String,
        finding: Box<Finding>,
    },
    Completion {
        scan_id: String,
        outcome: Box<SnapshotOutcome>,
        /// The envelope's `account`: EventBridge sets it to the sender's.
        account: String,
    },
    Waiter(WaiterMessage),
    /// An instance scan's rule delivered Inspector's "scan complete" event.
    InstanceScanned(Box<InstanceScanMessage>),
    /// Not an event amiscan handles (another detail type): dropped.
    Other(String),
    /// Unreadable: dropped with an error log, as redelivery cannot fix it.
    Malformed(String),
    /// Well formed but not Inspector's word (a completion whose `source` is
    /// not `aws.inspector2`, or of another account): dropped with an error.
    Refused(String),
}

fn text<'a>(v: &'a Value, field: &str) -> std::result::Result<&'a str, String> {
    v[field]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("`detail.{field}` is missing or not text"))
}

/// Reads one record's body. Pure.
pub fn classify(body: &str) -> Item {
    let value: Value = match serde_json::from_str(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return Item::Malformed("the body is not a JSON object".into()),
        Err(e) => return Item::Malformed(format!("the body is not JSON: {e}")),
    };
    if value.get("amiscan_waiter").is_some() {
        return match parse_event::<WaiterMessage>(value) {
            Ok(w) => match Staging::of(&w.amiscan_waiter.inspector_scan_id) {
                Ok(_) => Item::Waiter(w),
                Err(e) => Item::Malformed(format!("`amiscan_waiter.inspector_scan_id`: {e}")),
            },
            Err(e) => Item::Malformed(e.to_string()),
        };
    }
    if value.get("amiscan_instance_scan").is_some() {
        return match parse_event::<InstanceScanMessage>(value) {
            Ok(m) => Item::InstanceScanned(Box::new(m)),
            Err(e) => Item::Malformed(e.to_string()),
        };
    }
    let detail_type = value["detail-type"].as_str().unwrap_or_default();
    let detail = &value["detail"];
    let scan_id = |d: &Value| -> std::result::Result<String, String> {
        let id = text(d, "scanId")?;
        Staging::of(id).map_err(|e| format!("`detail.scanId`: {e}"))?;
        Ok(id.to_string())
    };
    match detail_type {
        FINDING_DETAIL_TYPE => {
            let found = scan_id(detail).and_then(|id| {
                text(detail, "findingArn")?;
                let finding: Finding =
                    serde_json::from_value(detail.clone()).map_err(|e| format!("`detail`: {e}"))?;
                Ok((id, finding))
            });
            match found {
                Ok((scan_id, finding)) => Item::Finding {
                    scan_id,
                    finding: Box::new(finding),
                },
                Err(e) => Item::Malformed(e),
            }
        }
        // Only AWS may send an `aws.*` source on EventBridge: a completion
        // from any other source is someone's forgery.
        COMPLETION_DETAIL_TYPE if value["source"].as_str() != Some(INSPECTOR_SOURCE) => {
            Item::Refused(format!(
                "a completion from source {:?}, not {INSPECTOR_SOURCE}",
                value["source"].as_str().unwrap_or_default()
            ))
        }
        COMPLETION_DETAIL_TYPE => match scan_id(detail).and_then(|id| {
            let mut outcome: SnapshotOutcome =
                serde_json::from_value(detail.clone()).map_err(|e| format!("`detail`: {e}"))?;
            outcome.source = Some("event".into());
            outcome.grace_over = None;
            Ok((id, outcome))
        }) {
            Ok((scan_id, outcome)) => Item::Completion {
                scan_id,
                outcome: Box::new(outcome),
                account: value["account"].as_str().unwrap_or_default().to_string(),
            },
            Err(e) => Item::Malformed(e),
        },
        "" => Item::Malformed("no `detail-type`".into()),
        other => Item::Other(other.to_string()),
    }
}

/// What one batch did, for the log and the benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CollectStats {
    pub records: usize,
    pub findings_stored: usize,
    /// Objects written: one per scan with findings in the batch.
    pub staged_objects: usize,
    pub completions: usize,
    pub waiters: usize,
    /// Instance scans' "scan complete" deliveries.
    pub instance_scans: usize,
    pub woken: usize,
    /// Events of on-demand scans amiscan did not start.
    pub foreign: usize,
    pub other: usize,
    pub malformed: usize,
    /// Completions not from Inspector in this account.
    pub refused: usize,
    pub failed: usize,
}

enum Done {
    Completion { woke: bool },
    Waiter { woke: bool },
    InstanceScanned { woke: bool },
    Foreign,
}

struct Ctx<'a> {
    s3: &'a s3::Client,
    sfn: &'a sfn::Client,
    bucket: &'a str,
    kms: &'a str,
    /// amiscan's scans in the batch, each with its account.
    ours: &'a HashMap<String, String>,
}

impl Ctx<'_> {
    /// One object of the batch's findings of one scan, as JSON Lines, sorted
    /// (a batch delivered again in another order names the same object). A
    /// finding delivered twice with the same body is written once; two
    /// different bodies under one `findingArn` are both kept, for the export
    /// to report the conflict.
    async fn stage(&self, scan_id: &str, findings: &[Finding]) -> Result<()> {
        let staging = Staging::of(scan_id).map_err(Error::Internal)?;
        let mut lines = Vec::new();
        for finding in findings {
            let line = serde_json::to_vec(finding)
                .map_err(|e| Error::Internal(format!("encoding a finding: {e}")))?;
            lines.push((finding.finding_arn.as_str(), line));
        }
        lines.sort_unstable();
        lines.dedup();
        let arns: Vec<&str> = lines.iter().map(|(arn, _)| *arn).collect();
        let mut body = Vec::new();
        for (_, line) in &lines {
            body.extend_from_slice(line);
            body.push(b'\n');
        }
        let key = staging.batch(&arns, &body);
        s3::put_small(self.s3, self.bucket, self.kms, &key, body).await
    }

    async fn put(&self, key: &str, value: &impl Serialize) -> Result<()> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Error::Internal(format!("encoding {key}: {e}")))?;
        s3::put_small(self.s3, self.bucket, self.kms, key, body).await
    }

    /// Wakes the waiting execution with the outcome; `false` when it no
    /// longer waits.
    async fn wake(&self, task_token: &str, outcome: &impl Serialize) -> Result<bool> {
        let output = serde_json::to_string(outcome)
            .map_err(|e| Error::Internal(format!("encoding the outcome: {e}")))?;
        sfn::send_task_success(self.sfn, task_token, output).await
    }

    async fn handle(&self, item: Item) -> Result<Done> {
        match item {
            // Staged per scan and batch by `stage`, before any completion.
            Item::Finding { .. } => Ok(Done::Foreign),
            Item::Completion {
                scan_id, outcome, ..
            } => {
                if !self.ours.contains_key(&scan_id) {
                    return Ok(Done::Foreign);
                }
                let staging = Staging::of(&scan_id).map_err(Error::Internal)?;
                // Stored first, then the waiter read: with the waiter doing
                // the same the other way round, one of them wakes the task.
                self.put(&staging.completion(), &outcome).await?;
                let woke = match s3::get_bytes(self.s3, self.bucket, &staging.waiter()).await? {
                    Some(bytes) => {
                        let waiter: WaiterMessage = serde_json::from_slice(&bytes)
                            .map_err(|e| Error::Internal(format!("the stored waiter: {e}")))?;
                        self.wake(&waiter.amiscan_waiter.task_token, &outcome)
                            .await?
                    }
                    None => false,
                };
                Ok(Done::Completion { woke })
            }
            Item::Waiter(message) => {
                let staging = Staging::of(&message.amiscan_waiter.inspector_scan_id)
                    .map_err(Error::Internal)?;
                self.put(&staging.waiter(), &message).await?;
                let woke = match s3::get_bytes(self.s3, self.bucket, &staging.completion()).await? {
                    Some(bytes) => {
                        let outcome: SnapshotOutcome = serde_json::from_slice(&bytes)
                            .map_err(|e| Error::Internal(format!("the stored completion: {e}")))?;
                        self.wake(&message.amiscan_waiter.task_token, &outcome)
                            .await?
                    }
                    None => false,
                };
                Ok(Done::Waiter { woke })
            }
            Item::InstanceScanned(message) => {
                let facts = InspectorFacts {
                    event_time: message.event_time(),
                    source: Some(FROM_EVENT.into()),
                };
                let woke = self
                    .wake(&message.amiscan_instance_scan.task_token, &facts)
                    .await?;
                if !woke {
                    info!(
                        scan_id = %message.amiscan_instance_scan.scan_id,
                        "the instance scan's execution no longer waits"
                    );
                }
                Ok(Done::InstanceScanned { woke })
            }
            Item::Other(_) | Item::Malformed(_) | Item::Refused(_) => Ok(Done::Foreign),
        }
    }
}

/// Why an instance scan's delivery is not Inspector's word for its waiter:
/// its event must be of the account the waiter names (a member's, through
/// the hub's bus), else of `own`.
pub fn foreign_instance_event(m: &InstanceScanMessage, own: &str) -> Option<String> {
    let want = m
        .amiscan_instance_scan
        .account_id
        .as_ref()
        .map_or(own, |a| a.as_str());
    let got = m.event["account"].as_str().unwrap_or_default();
    (got != want).then(|| format!("an instance scan event of account {got:?}, not {want:?}"))
}

/// Handles one batch; a record whose storing failed is reported for
/// redelivery (after the queue's receive count it goes to the DLQ).
pub async fn run(
    s3_client: &s3::Client,
    sfn_client: &sfn::Client,
    settings: &CollectSettings,
    batch: SqsBatch,
) -> Result<(BatchResponse, CollectStats)> {
    let bucket = settings.report_bucket.0.as_str();
    let mut stats = CollectStats {
        records: batch.records.len(),
        ..CollectStats::default()
    };
    let mut items = Vec::new();
    let account = settings.account_id.as_str();
    for record in batch.records {
        // A completion's account is checked against its scan's own below,
        // once the scan's marker is read (member accounts' come through the
        // hub's bus). An instance scan's event must be of the account its
        // rule names (a member's), else of this one.
        let item = match classify(&record.body) {
            Item::InstanceScanned(m) => match foreign_instance_event(&m, account) {
                Some(why) => Item::Refused(why),
                None => Item::InstanceScanned(m),
            },
            item => item,
        };
        match item {
            Item::Refused(why) => {
                error!(message_id = %record.message_id, why = %why, "not Inspector's word: refused");
                stats.refused += 1;
            }
            Item::Malformed(why) => {
                error!(message_id = %record.message_id, why = %why, "malformed record dropped");
                stats.malformed += 1;
            }
            Item::Other(detail_type) => {
                warn!(message_id = %record.message_id, detail_type = %detail_type, "not an on-demand scan event; dropped");
                stats.other += 1;
            }
            item => items.push((record.message_id, item)),
        }
    }
    // Which scans are amiscan's: one marker read per scan in the batch.
    let mut scan_ids: Vec<String> = items
        .iter()
        .filter_map(|(_, item)| match item {
            Item::Finding { scan_id, .. } | Item::Completion { scan_id, .. } => {
                Some(scan_id.clone())
            }
            _ => None,
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    scan_ids.sort();
    // amiscan's scans (those with a marker), each with the account its
    // marker names: only that account's completion wakes it.
    let mut ours: HashMap<String, String> = HashMap::new();
    let mut unknown = HashMap::new();
    let lookups: Vec<(String, Result<Option<Vec<u8>>>)> = stream::iter(scan_ids)
        .map(|id| async move {
            let key = Staging::of(&id).map(|s| s.marker()).unwrap_or_default();
            let found = s3::get_bytes(s3_client, bucket, &key).await;
            (id, found)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for (id, found) in lookups {
        match found {
            Ok(Some(bytes)) => {
                let owner = serde_json::from_slice::<SnapshotMarker>(&bytes)
                    .ok()
                    .and_then(|m| m.scan.account_id)
                    .map_or_else(|| account.to_string(), |a| a.to_string());
                ours.insert(id, owner);
            }
            Ok(None) => {}
            Err(e) => {
                unknown.insert(id, e);
            }
        }
    }
    let ctx = Ctx {
        s3: s3_client,
        sfn: sfn_client,
        bucket,
        kms: settings.report_kms_key_arn.0.as_str(),
        ours: &ours,
    };
    let mut response = BatchResponse::default();
    // Findings first, one object per scan: a completion later in the batch
    // then finds them staged.
    let mut by_scan: HashMap<String, Vec<(String, Finding)>> = HashMap::new();
    let mut rest = Vec::new();
    for (message_id, item) in items {
        match item {
            Item::Finding { scan_id, finding }
                if ours.contains_key(&scan_id) || unknown.contains_key(&scan_id) =>
            {
                by_scan
                    .entry(scan_id)
                    .or_default()
                    .push((message_id, *finding))
            }
            Item::Finding { .. } => stats.foreign += 1,
            Item::Completion {
                ref scan_id,
                account: ref from,
                ..
            } if ours.get(scan_id).is_some_and(|owner| owner != from) => {
                error!(message_id = %message_id, scan_id = %scan_id, from = %from, "a completion of another account than the scan's: refused");
                stats.refused += 1;
            }
            other => rest.push((message_id, other)),
        }
    }
    let staged: Vec<(Vec<String>, Result<usize>)> = stream::iter(by_scan)
        .map(|(scan_id, records)| {
            let ctx = &ctx;
            let unknown = &unknown;
            async move {
                let ids = records.iter().map(|(id, _)| id.clone()).collect();
                if let Some(err) = unknown.get(&scan_id) {
                    return (ids, Err(err.clone()));
                }
                let findings: Vec<Finding> = records.into_iter().map(|(_, f)| f).collect();
                (
                    ids,
                    ctx.stage(&scan_id, &findings).await.map(|_| findings.len()),
                )
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for (message_ids, result) in staged {
        match result {
            Ok(n) => {
                stats.findings_stored += n;
                stats.staged_objects += 1;
            }
            Err(err) => {
                warn!(records = message_ids.len(), error = %err, "findings not staged; SQS delivers them again");
                stats.failed += message_ids.len();
                response
                    .batch_item_failures
                    .extend(message_ids.into_iter().map(|id| ItemFailure {
                        item_identifier: id,
                    }));
            }
        }
    }
    let results: Vec<(String, Result<Done>)> = stream::iter(rest)
        .map(|(message_id, item)| {
            let ctx = &ctx;
            let unknown = &unknown;
            async move {
                let blocked = match &item {
                    Item::Finding { scan_id, .. } | Item::Completion { scan_id, .. } => {
                        unknown.get(scan_id).cloned()
                    }
                    _ => None,
                };
                match blocked {
                    Some(err) => (message_id, Err(err)),
                    None => (message_id, ctx.handle(item).await),
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for (message_id, result) in results {
        match result {
            Ok(Done::Completion { woke }) => {
                stats.completions += 1;
                stats.woken += usize::from(woke);
            }
            Ok(Done::Waiter { woke }) => {
                stats.waiters += 1;
                stats.woken += usize::from(woke);
            }
            Ok(Done::InstanceScanned { woke }) => {
                stats.instance_scans += 1;
                stats.woken += usize::from(woke);
            }
            Ok(Done::Foreign) => stats.foreign += 1,
            Err(err) => {
                warn!(message_id = %message_id, error = %err, "record not stored; SQS delivers it again");
                stats.failed += 1;
                response.batch_item_failures.push(ItemFailure {
                    item_identifier: message_id,
                });
            }
        }
    }
    info!(
        records = stats.records,
        stored = stats.findings_stored,
        staged_objects = stats.staged_objects,
        completions = stats.completions,
        waiters = stats.waiters,
        instance_scans = stats.instance_scans,
        woken = stats.woken,
        foreign = stats.foreign,
        other = stats.other,
        malformed = stats.malformed,
        refused = stats.refused,
        failed = stats.failed,
        "batch collected"
    );
    Ok((response, stats))
}

#[cfg(test)]
mod tests;

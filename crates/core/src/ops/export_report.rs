//! export-report: read every Inspector finding of the scan (from ListFindings
//! for the scan instance, before anything is terminated; from the staged
//! finding events for a snapshot scan), stream them to S3 as JSON Lines (and
//! the human report), write the per-scan summary last, and return it with
//! the verdict. A snapshot scan whose findings have not all arrived is
//! `FindingsPending` within the grace and `INCOMPLETE` after it.
//!
//! Each active finding is checked against the accepted risks in
//! `config/exceptions.json` (an invalid file applies none, and says why) and
//! against the AMI's previous completed scan (`state/latest/<ami>.json`
//! points at its summary record): the summary carries what is new, fixed
//! and still open.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use crate::aws::inspector;
use crate::aws::s3::{self, ObjectWriter};
use crate::error::{Error, Result};
use crate::model::exceptions::{self, ForAmi, EXCEPTIONS_KEY};
use crate::model::scan::{SNAPSHOT_FAILED, SNAPSHOT_SUCCESSFUL};
use crate::model::{
    time, InspectorFacts, InstanceId, ReportInput, ScanContext, SnapshotOutcome, Verdict,
};
use crate::report::summary::{delta, keys_of};
use crate::report::{self, HumanReport, ReportFormat, ScanSummary, Source, Staging, Tally};
use crate::settings::{vars, Bounded, BucketName, EnvReader, FromEnv, KmsKeyArn, Threshold};

/// Staged findings read at once.
const STAGED_READS: usize = 16;

/// export-report: where reports go and what fails a scan.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    pub report_bucket: BucketName,
    pub report_kms_key_arn: KmsKeyArn,
    pub report_format: ReportFormat,
    pub severity_threshold: Threshold,
    /// How long after a snapshot scan completes its late findings are
    /// waited for before the scan is reported `INCOMPLETE`.
    pub findings_grace_seconds: u64,
    pub alert_on: AlertOn,
}

/// When a failed scan raises `AMI_VULNERABLE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertOn {
    /// Only when a finding new since the previous scan reaches the threshold.
    New,
    /// On every `FAIL`.
    EveryFail,
}

impl std::str::FromStr for AlertOn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "NEW" => Ok(AlertOn::New),
            "EVERY_FAIL" => Ok(AlertOn::EveryFail),
            _ => Err("expected NEW or EVERY_FAIL".into()),
        }
    }
}

/// The default grace for late finding events.
pub const DEFAULT_GRACE_SECONDS: u32 = 600;

impl FromEnv for ExportSettings {
    fn from_env<F: Fn(&str) -> Option<String>>(mut env: EnvReader<F>) -> Result<Self> {
        let bucket: Option<BucketName> = env.required(vars::REPORT_BUCKET);
        let key: Option<KmsKeyArn> = env.required(vars::REPORT_KMS_KEY_ARN);
        let format: Option<ReportFormat> = env.required(vars::REPORT_FORMAT);
        let threshold: Option<Threshold> = env.required(vars::SEVERITY_THRESHOLD);
        let grace: Option<Bounded<0, 3600>> =
            env.optional(vars::FINDINGS_GRACE_SECONDS, Bounded(DEFAULT_GRACE_SECONDS));
        let alert_on: Option<AlertOn> = env.optional(vars::ALERT_ON, AlertOn::New);
        env.finish(|| {
            Some(ExportSettings {
                report_bucket: bucket?,
                report_kms_key_arn: key?,
                report_format: format?,
                severity_threshold: threshold?,
                findings_grace_seconds: u64::from(grace?.0),
                alert_on: alert_on?,
            })
        })
    }
}

/// When the scan happened: the time of Inspector's "scan complete" event, so
/// a retried export writes to the same partition and a late export still
/// files the scan under the day Inspector made it. Falls back to `now` when
/// there is no event time, when it does not parse, or when it lies in the
/// future (a skewed clock).
pub fn scan_time(inspector: &InspectorFacts, now: DateTime<Utc>) -> DateTime<Utc> {
    let Some(raw) = inspector.event_time.as_deref() else {
        return now;
    };
    match time::parse(raw) {
        Some(t) if t <= now => t,
        Some(_) => now,
        None => {
            warn!(
                event_time = raw,
                "Inspector event time unreadable; using the current time"
            );
            now
        }
    }
}

/// What each active finding is checked against: the exceptions naming the
/// AMI, and the previous completed scan's active vulnerabilities (`None`:
/// this is the AMI's first scan).
pub struct Judge {
    pub exceptions: ForAmi,
    pub previous: Option<HashSet<(String, Option<String>)>>,
    pub at: DateTime<Utc>,
}

impl Judge {
    /// Marks an active finding excepted and new, as it is.
    pub fn annotate(&self, row: &mut report::FindingRow) {
        if !row.is_active() {
            return;
        }
        if let Some(e) = self.exceptions.covering(
            row.vulnerability_id.as_deref(),
            row.package_name.as_deref(),
            self.at,
        ) {
            row.exception_reason = Some(e.reason.clone());
            row.exception_expires = Some(e.expires.to_string());
        }
        row.is_new = self
            .previous
            .as_ref()
            .is_none_or(|keys| !keys.contains(&row.vulnerability().key()));
    }
}

/// The objects one export writes as it streams, and how rows are judged.
struct Writers<'a> {
    findings: ObjectWriter<'a>,
    report: Option<(ObjectWriter<'a>, HumanReport)>,
    judge: Judge,
}

impl Writers<'_> {
    /// Writes one page of rows (with the raw findings the human report
    /// reads) to the data object and the report, tallying them.
    async fn page(
        &mut self,
        tally: &mut Tally,
        scan: &ScanContext,
        mut rows: Vec<(Value, report::FindingRow)>,
    ) -> Result<()> {
        let mut lines = Vec::new();
        let mut human_bytes = Vec::new();
        for (raw, row) in &mut rows {
            self.judge.annotate(row);
            tally.add(row);
            serde_json::to_writer(&mut lines, row)
                .map_err(|e| Error::Internal(format!("encoding a finding row: {e}")))?;
            lines.push(b'\n');
            if let Some((_, human)) = &mut self.report {
                human_bytes.extend(human.row(raw, row, scan)?);
            }
        }
        self.findings.write(&lines).await?;
        if let Some((w, _)) = &mut self.report {
            w.write(&human_bytes).await?;
        }
        Ok(())
    }

    async fn abort(self) {
        self.findings.abort().await;
        if let Some((w, _)) = self.report {
            w.abort().await;
        }
    }
}

async fn stream_findings(
    client: &inspector::Client,
    writers: &mut Writers<'_>,
    scan: &ScanContext,
    instance_id: &InstanceId,
    scanned_at: DateTime<Utc>,
) -> Result<Tally> {
    let mut tally = Tally::default();
    if let Some((w, human)) = &mut writers.report {
        w.write(&human.header()?).await?;
    }
    let mut pages = inspector::findings_of(client, instance_id)?;
    while let Some(page) = pages.next().await {
        let rows = page?
            .iter()
            .map(|finding| report::instance_finding_row(finding, scan, instance_id, scanned_at))
            .collect::<Vec<_>>();
        writers.page(&mut tally, scan, rows).await?;
    }
    if let Some((w, human)) = &mut writers.report {
        w.write(&human.footer()).await?;
    }
    Ok(tally)
}

/// What streaming a snapshot scan's staged batches found besides the rows.
#[derive(Debug, Default)]
struct Staged {
    /// Distinct findings (by `findingArn`) written as rows.
    distinct: u64,
    /// A `findingArn` that arrived with two different bodies, and how many did.
    conflict: Option<(String, u64)>,
}

/// Streams a snapshot scan's staged batches, a page of keys at a time, each
/// object read once. A finding staged twice (a batch delivered again, an
/// event sent twice) is written once; two different bodies under one
/// `findingArn` are a conflict.
async fn stream_staged(
    s3_client: &s3::Client,
    bucket: &str,
    staging: &Staging,
    writers: &mut Writers<'_>,
    scan: &ScanContext,
    inspector_scan_id: &str,
    scanned_at: DateTime<Utc>,
) -> Result<(Tally, Staged)> {
    let mut tally = Tally::default();
    let mut staged = Staged::default();
    // findingArn -> a hash of its body: memory grows by one short entry per
    // finding, not by its body.
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut conflicts = 0;
    if let Some((w, human)) = &mut writers.report {
        w.write(&human.header()?).await?;
    }
    let mut pages = s3::keys_under(s3_client, bucket, &staging.findings());
    while let Some(page) = pages.next().await {
        let bodies: Vec<Option<Vec<u8>>> = stream::iter(page?)
            .map(|key| async move { s3::get_bytes(s3_client, bucket, &key).await })
            .buffered(STAGED_READS)
            .try_collect()
            .await?;
        let mut rows = Vec::new();
        for line in bodies
            .iter()
            .flatten()
            .flat_map(|b| b.split(|c| *c == b'\n'))
        {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let finding: Value = match serde_json::from_slice(line) {
                Ok(v) => v,
                Err(e) => {
                    warn!(error = %e, "a staged finding is not JSON; skipped");
                    continue;
                }
            };
            let arn = finding["findingArn"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let hash = report::fingerprint(line);
            match seen.get(&arn) {
                Some(&h) if h == hash => continue,
                Some(_) => {
                    conflicts += 1;
                    staged.conflict.get_or_insert((arn, 0));
                    continue;
                }
                None => {
                    seen.insert(arn, hash);
                }
            }
            let row = report::finding_row(
                &finding,
                scan,
                Source::Snapshot(inspector_scan_id),
                scanned_at,
            );
            rows.push((finding, row));
        }
        drop(bodies);
        writers.page(&mut tally, scan, rows).await?;
    }
    if let Some((w, human)) = &mut writers.report {
        w.write(&human.footer()).await?;
    }
    staged.distinct = seen.len() as u64;
    if let Some((_, n)) = &mut staged.conflict {
        *n = conflicts;
    }
    Ok((tally, staged))
}

/// How many findings the staged batches hold, from their keys alone (an
/// upper bound of the distinct findings: a batch may repeat a finding of
/// another).
async fn staged_count(s3_client: &s3::Client, bucket: &str, staging: &Staging) -> Result<u64> {
    let mut pages = s3::keys_under(s3_client, bucket, &staging.findings());
    let mut count = 0;
    while let Some(page) = pages.next().await {
        count += page?
            .iter()
            .filter_map(|k| report::batch_count(k))
            .sum::<u64>();
    }
    Ok(count)
}

/// A snapshot scan's verdict and why: drawn from its findings only when
/// every finding Inspector counted has arrived; `INCOMPLETE` otherwise
/// (missing findings never make a `PASS`), `NOT_SCANNABLE` when Inspector
/// could not read the image.
pub fn snapshot_verdict(
    outcome: &SnapshotOutcome,
    received: u64,
    from_findings: Verdict,
) -> (Verdict, Option<String>) {
    if outcome.scan_status == SNAPSHOT_FAILED {
        let reason = outcome
            .scan_status_reason
            .clone()
            .unwrap_or_else(|| "Inspector gave no reason".into());
        return (
            Verdict::NotScannable,
            Some(format!("Inspector could not scan the snapshots: {reason}")),
        );
    }
    match outcome.finding_severity_counts.as_ref().map(|c| c.total) {
        Some(expected) if received >= expected => (from_findings, None),
        Some(expected) => (
            Verdict::Incomplete,
            Some(format!(
                "{received} of {expected} findings arrived; the rest never did"
            )),
        ),
        None => (
            Verdict::Incomplete,
            Some(format!(
                "Inspector's completion event was lost, so the {received} findings that arrived cannot be known to be all"
            )),
        ),
    }
}

/// Whether the report should wait for more findings: some are missing and
/// the grace after completion is not over.
pub fn should_wait(
    outcome: &SnapshotOutcome,
    received: u64,
    grace_seconds: u64,
    now: DateTime<Utc>,
) -> Option<u64> {
    if outcome.scan_status != SNAPSHOT_SUCCESSFUL || outcome.grace_over == Some(true) {
        return None;
    }
    let expected = outcome.finding_severity_counts.as_ref()?.total;
    if received >= expected {
        return None;
    }
    let completed = outcome.completed_at.as_deref().and_then(time::parse)?;
    let waited = (now - completed).num_seconds().max(0) as u64;
    (waited < grace_seconds).then_some(expected)
}

/// Where the AMI's last completed scan's summary is: the previous scan of
/// the next one. `previous` is the one before, for a retried export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latest {
    pub scan_id: String,
    pub summary_key: String,
    #[serde(default)]
    pub previous: Option<Box<Latest>>,
}

/// The accepted risks in force for this scan, and why none applies when
/// the file is invalid (a missing file is no exceptions).
pub async fn load_exceptions(
    s3_client: &s3::Client,
    bucket: &str,
    at: DateTime<Utc>,
) -> Result<(Vec<exceptions::Exception>, Option<String>)> {
    let bytes = s3::get_bytes(s3_client, bucket, EXCEPTIONS_KEY).await?;
    Ok(
        match exceptions::read(bucket, bytes.as_deref(), at.date_naive()) {
            Ok(list) => (list, None),
            Err(invalid) => {
                warn!(error = %invalid, "exceptions file invalid; no exception applies");
                (Vec::new(), Some(invalid.to_string()))
            }
        },
    )
}

/// The AMI's previous completed scan (whatever its mode): its pointer, and
/// its summary record with every open vulnerability. A retried export of
/// the scan the pointer already names compares with the one before.
pub async fn load_previous(
    s3_client: &s3::Client,
    bucket: &str,
    scan: &ScanContext,
) -> Result<(Option<Latest>, Option<ScanSummary>)> {
    let key = report::latest_key(scan.ami_id.as_str());
    let Some(bytes) = s3::get_bytes(s3_client, bucket, &key).await? else {
        return Ok((None, None));
    };
    let latest: Latest = match serde_json::from_slice(&bytes) {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, key, "the previous scan's pointer is unreadable; treated as a first scan");
            return Ok((None, None));
        }
    };
    let previous = if latest.scan_id == scan.scan_id.as_str() {
        latest.previous.map(|b| *b)
    } else {
        Some(latest)
    };
    let Some(previous) = previous else {
        return Ok((None, None));
    };
    let summary = match s3::get_bytes(s3_client, bucket, &previous.summary_key).await? {
        Some(bytes) => serde_json::from_slice::<ScanSummary>(&bytes)
            .map_err(|e| warn!(error = %e, "the previous summary is unreadable"))
            .ok(),
        None => None,
    };
    // An expired or unreadable record: this scan is compared with nothing.
    Ok(match summary {
        Some(summary) => (Some(previous), Some(summary)),
        None => (None, None),
    })
}

/// Exports the scan's findings and returns its summary.
pub async fn run(
    inspector: &inspector::Client,
    s3_client: &s3::Client,
    settings: &ExportSettings,
    input: ReportInput,
    now: DateTime<Utc>,
) -> Result<ScanSummary> {
    let mut facts = input.inspector.clone();
    if facts.event_time.is_none() {
        facts.event_time = input.snapshot.as_ref().and_then(|o| o.completed_at.clone());
    }
    let scanned_at = scan_time(&facts, now);
    let scan = input.scan;
    let bucket = settings.report_bucket.0.as_str();
    let kms = settings.report_kms_key_arn.0.as_str();

    // Snapshot mode: the staged findings must all be there, or the grace over.
    let snapshot = match &input.snapshot {
        Some(outcome) => {
            let staging =
                Staging::of(&outcome.scan_id).map_err(|e| Error::invalid("snapshot.scanId", e))?;
            if scan
                .inspector_scan_id
                .as_deref()
                .is_some_and(|id| id != outcome.scan_id)
            {
                return Err(Error::invalid(
                    "snapshot.scanId",
                    format!(
                        "is not this scan's on-demand scan {:?}",
                        scan.inspector_scan_id
                    ),
                ));
            }
            // Counted from the batch objects' names: no finding is read
            // before every one Inspector counted can be there.
            let received = staged_count(s3_client, bucket, &staging).await?;
            if let Some(expected) =
                should_wait(outcome, received, settings.findings_grace_seconds, now)
            {
                return Err(Error::FindingsPending {
                    scan_id: outcome.scan_id.clone(),
                    expected,
                    received,
                });
            }
            Some((outcome.clone(), staging))
        }
        None => None,
    };
    let instance_id = match snapshot {
        Some(_) => None,
        None => Some(scan.require_instance("scan")?.clone()),
    };

    let (exception_list, exceptions_error) = load_exceptions(s3_client, bucket, scanned_at).await?;
    let (previous_ref, previous) = load_previous(s3_client, bucket, &scan).await?;
    let judge = Judge {
        exceptions: ForAmi::new(
            &exception_list,
            scan.ami_id.as_str(),
            scan.ami_name.as_deref(),
        ),
        previous: previous.as_ref().map(|p| keys_of(p.open())),
        at: scanned_at,
    };
    drop(exception_list);

    let human = settings.report_format.writer();
    let keys = report::report_keys(&scan, scanned_at, human.as_ref().map(|h| h.extension()));
    let object = |key: &str, content_type: &'static str| {
        ObjectWriter::new(s3_client, bucket, kms, key.to_string(), content_type)
    };
    let mut writers = Writers {
        findings: object(&keys.findings, "application/x-ndjson"),
        report: keys
            .report
            .as_deref()
            .zip(human)
            .map(|(key, human)| (object(key, human.content_type()), human)),
        judge,
    };
    let streamed = match (&snapshot, &instance_id) {
        (Some((outcome, staging)), _) => {
            match stream_staged(
                s3_client,
                bucket,
                staging,
                &mut writers,
                &scan,
                &outcome.scan_id,
                scanned_at,
            )
            .await
            {
                // A finding staged twice made the names count more than
                // there are: wait on, as if counted short.
                Ok((_, staged))
                    if should_wait(
                        outcome,
                        staged.distinct,
                        settings.findings_grace_seconds,
                        now,
                    )
                    .is_some() =>
                {
                    Err(Error::FindingsPending {
                        scan_id: outcome.scan_id.clone(),
                        expected: outcome
                            .finding_severity_counts
                            .as_ref()
                            .map_or(0, |c| c.total),
                        received: staged.distinct,
                    })
                }
                Ok((tally, staged)) => Ok((tally, staged.conflict)),
                Err(e) => Err(e),
            }
        }
        (None, Some(instance_id)) => {
            stream_findings(inspector, &mut writers, &scan, instance_id, scanned_at)
                .await
                .map(|tally| (tally, None))
        }
        (None, None) => Err(Error::Internal(
            "neither a snapshot nor an instance scan".into(),
        )),
    };
    let (tally, conflict) = match streamed {
        Ok(streamed) => streamed,
        Err(err) => {
            writers.abort().await;
            return Err(err);
        }
    };
    let Writers {
        findings, report, ..
    } = writers;
    let data_bytes = findings.finish().await?;
    let report_bytes = match report {
        Some((w, _)) => w.finish().await?,
        None => 0,
    };

    let from_findings = Verdict::of(&tally.active, settings.severity_threshold.0);
    let (verdict, reason) = match (&snapshot, conflict) {
        (Some((outcome, _)), None) => snapshot_verdict(outcome, tally.rows, from_findings),
        // Which body is Inspector's cannot be told: never a PASS.
        (Some(_), Some((arn, n))) => (
            Verdict::Incomplete,
            Some(format!(
                "{n} finding event(s) arrived with a different body under a findingArn already staged ({arn})"
            )),
        ),
        (None, _) => (from_findings, None),
    };
    let changes = delta(&tally.open, previous.as_ref().map(|p| p.open()));
    drop(previous);
    let alert = verdict == Verdict::Fail
        && match settings.alert_on {
            AlertOn::EveryFail => true,
            AlertOn::New => {
                Verdict::of(&tally.new_unexcepted, settings.severity_threshold.0) == Verdict::Fail
            }
        };
    let mut summary = ScanSummary {
        scan_id: scan.scan_id.to_string(),
        ami_id: scan.ami_id.to_string(),
        ami_name: scan.ami_name.clone(),
        platform: scan.platform.clone(),
        scan_mode: if snapshot.is_some() {
            "snapshot"
        } else {
            "instance"
        }
        .to_string(),
        instance_id: instance_id.as_ref().map(|i| i.to_string()),
        inspector_scan_id: snapshot.as_ref().map(|(o, _)| o.scan_id.clone()),
        instance_type: scan.instance_type.clone(),
        requested_at: scan.requested_at.map(time::timestamp),
        launched_at: scan.launched_at.map(time::timestamp),
        scanned_at: time::timestamp(scanned_at),
        verdict,
        severity_threshold: settings.severity_threshold.to_string(),
        highest_severity: tally
            .active
            .highest()
            .map_or("NONE", |s| s.as_str())
            .to_string(),
        finding_count: tally.rows,
        findings_expected: snapshot
            .as_ref()
            .and_then(|(o, _)| o.finding_severity_counts.as_ref())
            .map(|c| c.total),
        reason,
        counts: tally.active,
        excepted: tally.excepted,
        exceptions_error,
        previous_scan_id: previous_ref.as_ref().map(|p| p.scan_id.clone()),
        first_scan: changes.first_scan,
        new_count: changes.new.len() as u64,
        fixed_count: changes.fixed.len() as u64,
        still_open_count: changes.still_open.len() as u64,
        delta: changes.line(),
        new: changes.new,
        fixed: changes.fixed,
        still_open: changes.still_open,
        alert,
        digest: String::new(),
        bucket: bucket.to_string(),
        findings_key: keys.findings.clone(),
        summary_key: keys.summary.clone(),
        report_uri: format!(
            "s3://{bucket}/{}",
            keys.report.as_ref().unwrap_or(&keys.findings)
        ),
        report_key: keys.report.clone(),
    };
    summary.digest = summary.digest_text();
    // The summary goes last: its presence means the scan's data is complete.
    let mut line = serde_json::to_vec(&summary)
        .map_err(|e| Error::Internal(format!("encoding the summary: {e}")))?;
    line.push(b'\n');
    let mut writer = object(&keys.summary, "application/x-ndjson");
    writer.write(&line).await?;
    writer.finish().await?;
    drop(line);
    // Only a full scan is what the next one compares with.
    if matches!(summary.verdict, Verdict::Pass | Verdict::Fail) {
        let latest = Latest {
            scan_id: summary.scan_id.clone(),
            summary_key: keys.summary.clone(),
            // One scan back is all a retry needs: the chain stays two long.
            previous: previous_ref.map(|p| {
                Box::new(Latest {
                    previous: None,
                    ..p
                })
            }),
        };
        let body = serde_json::to_vec(&latest)
            .map_err(|e| Error::Internal(format!("encoding the pointer: {e}")))?;
        let mut writer = object(&report::latest_key(&summary.ami_id), "application/json");
        writer.write(&body).await?;
        writer.finish().await?;
    }
    if let Some((_, staging)) = &snapshot {
        // The report holds them now; the lifecycle rule is the backstop.
        match s3::delete_under(s3_client, bucket, staging.prefix()).await {
            Ok(n) => info!(
                deleted = n,
                prefix = staging.prefix(),
                "staged findings deleted"
            ),
            Err(e) => {
                warn!(error = %e, prefix = staging.prefix(), "staged findings left to the lifecycle rule")
            }
        }
    }
    info!(
        scan_id = %summary.scan_id,
        scan_mode = %summary.scan_mode,
        findings = summary.finding_count,
        expected = ?summary.findings_expected,
        critical = summary.counts.critical,
        high = summary.counts.high,
        verdict = summary.verdict.as_str(),
        excepted = summary.excepted,
        delta = %summary.delta,
        data_bytes,
        report_bytes,
        "report exported"
    );
    Ok(summary.listed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::inspector::operation::list_findings::ListFindingsOutput;
    use crate::aws::s3::operation::put_object::PutObjectOutput;
    use crate::aws::s3::types::ServerSideEncryption;
    use crate::model::Severity;
    use crate::settings::Threshold;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn settings() -> ExportSettings {
        ExportSettings {
            report_bucket: "amiscan-reports".parse().unwrap(),
            report_kms_key_arn: "arn:aws:kms:us-east-1:123456789012:key/k".parse().unwrap(),
            report_format: ReportFormat::None,
            severity_threshold: Threshold(Some(Severity::High)),
            findings_grace_seconds: 600,
            alert_on: AlertOn::New,
        }
    }

    fn page(findings: &[(&str, &str)], next: Option<&str>) -> ListFindingsOutput {
        let mut out = ListFindingsOutput::builder().set_next_token(next.map(str::to_string));
        for (arn, severity) in findings {
            out = out.findings(crate::report::rows::tests::sample_finding(
                arn, severity, "ACTIVE",
            ));
        }
        out.build()
    }

    #[test]
    fn the_scan_is_dated_by_inspectors_event_unless_it_is_missing_unreadable_or_ahead() {
        let now: DateTime<Utc> = "2026-11-23T12:00:00Z".parse().unwrap();
        let facts = |t: serde_json::Value| -> InspectorFacts {
            serde_json::from_value(serde_json::json!({"event_time": t})).unwrap()
        };
        assert_eq!(
            scan_time(&facts("2026-11-16T08:30:00Z".into()), now),
            "2026-11-16T08:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(scan_time(&InspectorFacts::default(), now), now);
        assert_eq!(scan_time(&facts(serde_json::Value::Null), now), now);
        assert_eq!(scan_time(&facts("1763280000".into()), now), now);
        assert_eq!(scan_time(&facts(1763280000.into()), now), now);
        assert_eq!(scan_time(&facts("2026-11-27T13:41:10Z".into()), now), now);
    }

    fn outcome(status: &str, total: Option<u64>, completed: &str) -> SnapshotOutcome {
        serde_json::from_value(serde_json::json!({
            "scanId": "s-1", "scanStatus": status, "completedAt": completed,
            "findingSeverityCounts": total.map(|t| serde_json::json!({"TOTAL": t})),
        }))
        .unwrap()
    }

    #[test]
    fn missing_findings_are_waited_for_within_the_grace_then_make_the_scan_incomplete() {
        let now: DateTime<Utc> = "2026-11-23T12:10:00Z".parse().unwrap();
        let done = outcome("SUCCESSFUL", Some(3), "2026-11-23T12:05:00Z");
        assert_eq!(should_wait(&done, 2, 600, now), Some(3));
        assert_eq!(should_wait(&done, 3, 600, now), None);
        assert_eq!(should_wait(&done, 2, 300, now), None, "grace over");
        let mut over = done.clone();
        over.grace_over = Some(true);
        assert_eq!(should_wait(&over, 2, 600, now), None);
        assert_eq!(
            snapshot_verdict(&done, 3, Verdict::Pass),
            (Verdict::Pass, None)
        );
        let (v, why) = snapshot_verdict(&done, 2, Verdict::Pass);
        assert_eq!(v, Verdict::Incomplete);
        assert!(why.unwrap().contains("2 of 3"));
        assert_eq!(
            snapshot_verdict(&done, 2, Verdict::Fail).0,
            Verdict::Incomplete
        );
        let lost = outcome("SUCCESSFUL", None, "2026-11-23T12:05:00Z");
        assert_eq!(should_wait(&lost, 0, 600, now), None);
        assert_eq!(
            snapshot_verdict(&lost, 5, Verdict::Pass).0,
            Verdict::Incomplete
        );
        let mut failed = outcome("FAILED", None, "2026-11-23T12:05:00Z");
        failed.scan_status_reason = Some("UNSUPPORTED_OS".into());
        let (v, why) = snapshot_verdict(&failed, 0, Verdict::Pass);
        assert_eq!(v, Verdict::NotScannable);
        assert!(why.unwrap().contains("UNSUPPORTED_OS"));
    }

    #[tokio::test]
    async fn every_page_of_findings_is_read_and_counted() {
        let first = mock!(inspector::Client::list_findings)
            .match_requests(|r| r.next_token().is_none() && r.max_results() == Some(100))
            .then_output(|| page(&[("arn:1", "HIGH"), ("arn:2", "LOW")], Some("t2")));
        let second = mock!(inspector::Client::list_findings)
            .match_requests(|r| {
                r.next_token() == Some("t2")
                    && r.filter_criteria()
                        .map(|f| f.resource_id()[0].value() == "i-0123456789abcdef0")
                        .unwrap_or(false)
            })
            .then_output(|| page(&[("arn:3", "MEDIUM")], None));
        let inspector = mock_client!(aws_sdk_inspector2, RuleMode::Sequential, [&first, &second]);
        let data = mock!(s3::Client::put_object)
            .match_requests(|r| {
                r.key()
                    .is_some_and(|k| k.starts_with("findings/scan_date="))
                    && r.server_side_encryption() == Some(&ServerSideEncryption::AwsKms)
                    && r.ssekms_key_id() == Some("arn:aws:kms:us-east-1:123456789012:key/k")
            })
            .then_output(|| PutObjectOutput::builder().build());
        let summary = mock!(s3::Client::put_object)
            .match_requests(|r| r.key().is_some_and(|k| k.starts_with("scans/scan_date=")))
            .then_output(|| PutObjectOutput::builder().build());
        let missing = || {
            s3::operation::get_object::GetObjectError::NoSuchKey(
                s3::types::error::NoSuchKey::builder().build(),
            )
        };
        let no_exceptions = mock!(s3::Client::get_object)
            .match_requests(|r| r.key() == Some("config/exceptions.json"))
            .then_error(missing);
        let first_scan = mock!(s3::Client::get_object)
            .match_requests(|r| r.key() == Some("state/latest/ami-0123456789abcdef0.json"))
            .then_error(missing);
        let pointer = mock!(s3::Client::put_object)
            .match_requests(|r| r.key() == Some("state/latest/ami-0123456789abcdef0.json"))
            .then_output(|| PutObjectOutput::builder().build());
        let s3_client = mock_client!(
            aws_sdk_s3,
            RuleMode::Sequential,
            [&no_exceptions, &first_scan, &data, &summary, &pointer]
        );
        let request: ReportInput = serde_json::from_str(include_str!(
            "../../../../events/export-report/scan-complete.json"
        ))
        .unwrap();
        let out = run(&inspector, &s3_client, &settings(), request, Utc::now())
            .await
            .unwrap();
        assert_eq!(out.finding_count, 3);
        assert_eq!(
            (out.counts.high, out.counts.medium, out.counts.low),
            (1, 1, 1)
        );
        assert_eq!(out.verdict, Verdict::Fail);
        assert!(
            out.first_scan && out.alert,
            "a first FAIL is new, so it alerts"
        );
        assert_eq!(
            out.new_count, 1,
            "the three findings are one vulnerability in one package"
        );
        assert_eq!(
            (
                first.num_calls(),
                second.num_calls(),
                data.num_calls(),
                summary.num_calls(),
                pointer.num_calls()
            ),
            (1, 1, 1, 1, 1)
        );
    }
}

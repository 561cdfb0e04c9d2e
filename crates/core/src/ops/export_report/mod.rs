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
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::aws::ec2::{self, Instances};
use crate::aws::inspector;
use crate::aws::s3::{self, ObjectWriter};
use crate::error::{Error, Result};
use crate::model::exceptions::{self, ForAmi, EXCEPTIONS_KEY};
use crate::model::scan::{SNAPSHOT_FAILED, SNAPSHOT_SUCCESSFUL};
use crate::model::{
    time, Finding, InspectorFacts, InstanceId, Place, ReportInput, ScanContext, Severity,
    SeverityCounts, SnapshotOutcome, Verdict,
};
use crate::report::summary::{delta, keys_of};
use crate::report::{self, HumanReport, ReportFormat, ScanSummary, Source, Staging, Tally};
use crate::settings::{
    vars, Bounded, BucketName, EnvReader, FromEnv, Home, InstanceProfile, KmsKeyArn, Threshold,
};

mod history;
mod judge;
mod streaming;
#[cfg(test)]
mod tests;

pub use history::*;
pub use judge::*;
#[allow(unused_imports)]
use streaming::*;

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
    /// The functions' account (a scan without an account is of it), and
    /// the role they assume in a member's: a snapshot scan's findings must
    /// be of the scan's account.
    pub home: Home,
    /// The scanner's instance profile (stacks that launch instances): an
    /// instance scan is reported only from an instance that runs with it.
    pub instance_profile: Option<InstanceProfile>,
    /// Whether findings an Inspector suppression rule hides count toward
    /// the verdict (`CountSuppressed`, default true).
    pub count_suppressed: bool,
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
        let home = Home::read(&mut env);
        let profile: Option<Option<InstanceProfile>> = env.maybe(vars::INSTANCE_PROFILE);
        let count_suppressed: Option<bool> = env.optional(vars::COUNT_SUPPRESSED, true);
        env.finish(|| {
            Some(ExportSettings {
                report_bucket: bucket?,
                report_kms_key_arn: key?,
                report_format: format?,
                severity_threshold: threshold?,
                findings_grace_seconds: u64::from(grace?.0),
                alert_on: alert_on?,
                home: home?,
                instance_profile: profile?,
                count_suppressed: count_suppressed?,
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

/// Exports the scan's findings and returns its summary.
pub async fn run(
    ec2_client: &ec2::Client,
    inspector: &inspector::Client,
    s3_client: &s3::Client,
    settings: &ExportSettings,
    input: ReportInput,
    home: &Place,
    now: DateTime<Utc>,
) -> Result<ScanSummary> {
    let mut facts = input.inspector.clone();
    if facts.event_time.is_none() {
        facts.event_time = input.snapshot.as_ref().and_then(|o| o.completed_at.clone());
    }
    let scanned_at = scan_time(&facts, now);
    let scan = input.scan;
    // The scan's account: its findings must be of it, its exceptions name it.
    let account = scan
        .account_id
        .as_ref()
        .unwrap_or(&settings.home.account_id)
        .as_str();
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
            wait_for_more(outcome, received, settings.findings_grace_seconds, now)?;
            // Inspector's own record of the scan, asked directly: the
            // completion that woke the scan must agree with it.
            let status =
                inspector::on_demand_scan_status(inspector, &scan.ami_id, &outcome.scan_id).await?;
            let disagrees = status_disagreement(outcome, status.as_ref(), scan.ami_id.as_str());
            if let Some(how) = &disagrees {
                warn!(scan_id = %outcome.scan_id, how = %how, "Inspector's scan status contradicts the completion");
            }
            Some((outcome.clone(), staging, disagrees))
        }
        None => None,
    };
    let instance_id = match snapshot {
        Some(_) => None,
        None => {
            let id = scan.require_instance("scan")?.clone();
            // Findings are read by instance id: the instance must be the
            // scanner amiscan launched from this AMI for this scan.
            let found = ec2::describe_instances(ec2_client, Instances::ById(&id)).await?;
            // The hub stack's scanner profile at home; member.yaml's away.
            let place = scan.place(home);
            let profile = if &place == home {
                settings.instance_profile.clone()
            } else {
                Some(InstanceProfile::of_member(&place))
            };
            if let Some(why) = scanner_disagreement(found.first(), &scan, profile.as_ref()) {
                return Err(Error::invalid("scan.instance_id", why));
            }
            Some(id)
        }
    };

    let (exception_list, exceptions_file, exceptions_error) =
        load_exceptions(s3_client, bucket, scanned_at).await?;
    let (previous_ref, previous, pointer_read) = load_previous(s3_client, bucket, &scan).await?;
    // Exceptions name AMIs by a glob over their name: the name EC2 gives,
    // never the one in the execution's input.
    let ami_name = if exception_list.is_empty() {
        None
    } else {
        ec2::own_image(ec2_client, &scan.ami_id)
            .await?
            .and_then(|i| i.name().map(str::to_string))
    };
    let judge = Judge {
        exceptions: ForAmi::new(
            &exception_list,
            scan.ami_id.as_str(),
            ami_name.as_deref(),
            (Some(account), scan.region.as_deref()),
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
        count_suppressed: settings.count_suppressed,
    };
    let streamed = match (&snapshot, &instance_id) {
        (Some((outcome, staging, disagrees)), _) => {
            let own = OwnScan {
                account,
                scan_id: &outcome.scan_id,
                ami_id: scan.ami_id.as_str(),
            };
            match stream_staged(
                s3_client,
                bucket,
                staging,
                &mut writers,
                &scan,
                own,
                settings.severity_threshold.0,
                scanned_at,
            )
            .await
            {
                // A finding staged twice made the names count more than
                // there are: wait on, as if counted short.
                Ok((tally, mut evidence)) => wait_for_more(
                    outcome,
                    evidence.received.total(),
                    settings.findings_grace_seconds,
                    now,
                )
                .map(|()| {
                    evidence.status_disagrees = disagrees.clone();
                    (tally, Some(evidence))
                }),
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
    let (tally, evidence) = match streamed {
        Ok(streamed) => streamed,
        Err(err) => {
            writers.abort().await;
            return Err(err);
        }
    };
    let from_findings = Verdict::of(&tally.active, settings.severity_threshold.0);
    let (verdict, mut reason, gap) = match (&snapshot, &evidence) {
        (Some((outcome, _, _)), Some(evidence)) => {
            snapshot_verdict(outcome, evidence, from_findings)
        }
        _ => (from_findings, None, None),
    };
    // Where `auto` had no instance to fall back to, say so.
    if verdict == Verdict::NotScannable {
        if let (Some(why), Some(no_instance)) = (&mut reason, &scan.no_instance_scan) {
            why.push_str(&format!("; {no_instance}"));
        }
    }
    if let Some((outcome, _, _)) = &snapshot {
        if wants_fresh_scan(verdict, gap, scan.snapshot_attempt) {
            // Nothing of this attempt is recorded: the fresh scan's report is
            // the scan's. Its staged findings go with the new start.
            writers.abort().await;
            return Err(Error::FreshScanWanted {
                scan_id: outcome.scan_id.clone(),
                why: reason.unwrap_or_default(),
            });
        }
        if gap == Some(Gap::Missing) {
            reason = reason
                .map(|r| format!("{r} (on the scan's second on-demand scan; no more are started)"));
        }
    }
    let Writers {
        findings, report, ..
    } = writers;
    let data_bytes = findings.finish().await?;
    let report_bytes = match report {
        Some((w, _)) => w.finish().await?,
        None => 0,
    };
    let changes = delta(&tally.open, previous.as_ref().map(|p| p.open()));
    drop(previous);
    let alert = should_alert(
        verdict,
        settings.alert_on,
        Verdict::of(&tally.new_unexcepted, settings.severity_threshold.0),
        evidence.as_ref().is_some_and(Evidence::contradicts),
    );
    let mut summary = ScanSummary {
        scan_id: scan.scan_id.to_string(),
        ami_id: scan.ami_id.to_string(),
        account_id: scan.account_id.as_ref().map(|a| a.to_string()),
        region: scan.region.as_ref().map(|r| r.to_string()),
        ami_name: scan.ami_name.clone(),
        platform: scan.platform.clone(),
        scan_mode: if snapshot.is_some() {
            "snapshot"
        } else {
            "instance"
        }
        .to_string(),
        instance_id: instance_id.as_ref().map(|i| i.to_string()),
        inspector_scan_id: snapshot.as_ref().map(|(o, _, _)| o.scan_id.clone()),
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
            .and_then(|(o, _, _)| o.finding_severity_counts.as_ref())
            .map(|c| c.total),
        reason,
        gap: gap.map(|g| g.as_str().to_string()),
        counts: tally.active,
        excepted: tally.excepted,
        exceptions_error,
        exceptions_version_id: exceptions_file.version_id,
        exceptions_etag: exceptions_file.etag,
        exception_owners: tally.exception_owners.iter().cloned().collect(),
        suppressed: tally.suppressed,
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
        cleanup_error: None,
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
    // Only a full scan is what the next one compares with, and only if no
    // newer scan already is.
    let pointer = if matches!(summary.verdict, Verdict::Pass | Verdict::Fail) {
        let latest = Latest {
            scan_id: summary.scan_id.clone(),
            summary_key: keys.summary.clone(),
            scanned_at: Some(summary.scanned_at.clone()),
            // One scan back is all a retry needs: the chain stays two long.
            previous: previous_ref.map(|p| {
                Box::new(Latest {
                    previous: None,
                    ..p
                })
            }),
        };
        Some(
            advance_pointer(
                s3_client,
                bucket,
                kms,
                &summary.ami_id,
                &latest,
                Some(pointer_read),
            )
            .await?,
        )
    } else {
        None
    };
    if let Some((_, staging, _)) = &snapshot {
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
        pointer = ?pointer,
        "report exported"
    );
    Ok(summary.listed())
}

//! export-report: read every Inspector finding for the scan instance (before
//! anything is terminated), stream them to S3 as JSON Lines (and the human
//! report), write the per-scan summary last, and return it with the verdict.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::aws::inspector2::types::{FilterCriteria, StringComparison, StringFilter};
use crate::aws::s3::primitives::ByteStream;
use crate::aws::s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use crate::aws::{inspector2, s3};
use crate::error::{Error, Result};
use crate::model::{ReportFormat, ScanContext, Verdict};
use crate::report::{self, ScanSummary, Tally};
use crate::settings::ExportSettings;

/// ListFindings' largest page.
pub const FINDINGS_PAGE_SIZE: i32 = 100;
/// Multipart part size: S3's minimum is 5 MiB; this bounds memory per object.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// The report machine's input: the scan, and what Inspector's event said.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportRequest {
    pub scan: ScanContext,
    #[serde(default)]
    pub inspector: Option<serde_json::Value>,
}

/// One S3 object written as it is produced: a single PutObject when small,
/// a multipart upload once it passes one part.
pub struct ObjectWriter<'a> {
    client: &'a s3::Client,
    bucket: &'a str,
    kms_key: &'a str,
    key: String,
    content_type: &'static str,
    buffer: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    written: u64,
}

impl<'a> ObjectWriter<'a> {
    pub fn new(
        client: &'a s3::Client,
        bucket: &'a str,
        kms_key: &'a str,
        key: String,
        content_type: &'static str,
    ) -> Self {
        ObjectWriter {
            client,
            bucket,
            kms_key,
            key,
            content_type,
            buffer: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
            written: 0,
        }
    }

    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.buffer.extend_from_slice(data);
        self.written += data.len() as u64;
        if self.buffer.len() >= PART_SIZE {
            self.upload_part().await?;
        }
        Ok(())
    }

    async fn upload_part(&mut self) -> Result<()> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let out = self
                    .client
                    .create_multipart_upload()
                    .bucket(self.bucket)
                    .key(&self.key)
                    .content_type(self.content_type)
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .ssekms_key_id(self.kms_key)
                    .send()
                    .await
                    .map_err(|e| Error::from_sdk("CreateMultipartUpload", e))?;
                let id = out.upload_id.ok_or_else(|| {
                    Error::Internal("CreateMultipartUpload returned no id".into())
                })?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        let number = self.parts.len() as i32 + 1;
        let body = std::mem::take(&mut self.buffer);
        let out = self
            .client
            .upload_part()
            .bucket(self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| Error::from_sdk("UploadPart", e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag)
                .build(),
        );
        Ok(())
    }

    /// Completes the object; returns its size in bytes.
    pub async fn finish(mut self) -> Result<u64> {
        if self.upload_id.is_none() {
            self.client
                .put_object()
                .bucket(self.bucket)
                .key(&self.key)
                .content_type(self.content_type)
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(self.kms_key)
                .body(ByteStream::from(std::mem::take(&mut self.buffer)))
                .send()
                .await
                .map_err(|e| Error::from_sdk("PutObject", e))?;
            return Ok(self.written);
        }
        if !self.buffer.is_empty() {
            self.upload_part().await?;
        }
        let upload_id = self.upload_id.clone().unwrap_or_default();
        self.client
            .complete_multipart_upload()
            .bucket(self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut self.parts)))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Error::from_sdk("CompleteMultipartUpload", e))?;
        Ok(self.written)
    }

    /// Drops a started multipart upload so no parts are left billed.
    pub async fn abort(self) {
        if let Some(upload_id) = &self.upload_id {
            if let Err(e) = self
                .client
                .abort_multipart_upload()
                .bucket(self.bucket)
                .key(&self.key)
                .upload_id(upload_id)
                .send()
                .await
            {
                warn!(key = %self.key, error = %Error::from_sdk("AbortMultipartUpload", e), "could not abort the upload");
            }
        }
    }
}

/// The findings filter for one instance.
pub fn instance_filter(instance_id: &str) -> Result<FilterCriteria> {
    let by_instance = StringFilter::builder()
        .comparison(StringComparison::Equals)
        .value(instance_id)
        .build()
        .map_err(|e| Error::Internal(format!("findings filter: {e}")))?;
    Ok(FilterCriteria::builder().resource_id(by_instance).build())
}

struct Writers<'a> {
    findings: ObjectWriter<'a>,
    report: Option<(ObjectWriter<'a>, ReportFormat)>,
}

impl<'a> Writers<'a> {
    async fn abort(self) {
        self.findings.abort().await;
        if let Some((w, _)) = self.report {
            w.abort().await;
        }
    }
}

async fn stream_findings(
    client: &inspector2::Client,
    writers: &mut Writers<'_>,
    scan: &ScanContext,
    instance_id: &str,
    now: DateTime<Utc>,
) -> Result<Tally> {
    let mut tally = Tally::default();
    if let Some((w, format)) = &mut writers.report {
        match format {
            ReportFormat::Csv => w.write(report::csv_header().as_bytes()).await?,
            ReportFormat::Json => w.write(b"[").await?,
            ReportFormat::None => {}
        }
    }
    let filter = instance_filter(instance_id)?;
    let mut next_token: Option<String> = None;
    loop {
        let page = client
            .list_findings()
            .filter_criteria(filter.clone())
            .max_results(FINDINGS_PAGE_SIZE)
            .set_next_token(next_token.take())
            .send()
            .await
            .map_err(|e| Error::from_sdk("ListFindings", e))?;
        let mut lines = Vec::new();
        let mut human = Vec::new();
        for finding in page.findings() {
            let row = report::finding_row(finding, scan, instance_id, now);
            tally.add(&row);
            serde_json::to_writer(&mut lines, &row)
                .map_err(|e| Error::Internal(format!("encoding a finding row: {e}")))?;
            lines.push(b'\n');
            match writers.report.as_ref().map(|(_, f)| *f) {
                Some(ReportFormat::Csv) => {
                    human.extend_from_slice(report::csv_row(finding, &row, scan).as_bytes())
                }
                Some(ReportFormat::Json) => {
                    if tally.rows > 1 {
                        human.push(b',');
                    }
                    human.push(b'\n');
                    human.extend_from_slice(row.finding_json.as_bytes());
                }
                _ => {}
            }
        }
        writers.findings.write(&lines).await?;
        if let Some((w, _)) = &mut writers.report {
            w.write(&human).await?;
        }
        next_token = page.next_token.filter(|t| !t.is_empty());
        if next_token.is_none() {
            break;
        }
    }
    if let Some((w, ReportFormat::Json)) = &mut writers.report {
        w.write(b"\n]\n").await?;
    }
    Ok(tally)
}

/// When the scan happened: the time of Inspector's "scan complete" event, so
/// a retried export writes to the same partition and a late export still
/// files the scan under the day Inspector made it. Falls back to `now` when
/// there is no event time (the deadline path passes its own), when it does
/// not parse, or when it lies in the future (a skewed clock).
pub fn scan_time(inspector: Option<&serde_json::Value>, now: DateTime<Utc>) -> DateTime<Utc> {
    let Some(raw) = inspector
        .and_then(|i| i.get("event_time"))
        .and_then(|t| t.as_str())
    else {
        return now;
    };
    match DateTime::parse_from_rfc3339(raw) {
        Ok(t) if t.with_timezone(&Utc) <= now => t.with_timezone(&Utc),
        Ok(_) => now,
        Err(err) => {
            warn!(event_time = raw, %err, "Inspector event time unreadable; using the current time");
            now
        }
    }
}

/// Exports the scan's findings and returns its summary.
pub async fn export_report(
    inspector: &inspector2::Client,
    s3_client: &s3::Client,
    settings: &ExportSettings,
    request: ExportRequest,
    now: DateTime<Utc>,
) -> Result<ScanSummary> {
    let now = scan_time(request.inspector.as_ref(), now);
    let scan = request.scan;
    scan.validate("scan")?;
    let instance_id = scan.require_instance("scan")?.to_string();
    let bucket = settings.report_bucket.0.as_str();
    let kms = settings.report_kms_key_arn.0.as_str();
    let ext = match settings.report_format {
        ReportFormat::Csv => Some("csv"),
        ReportFormat::Json => Some("json"),
        ReportFormat::None => None,
    };
    let keys = report::report_keys(&scan, now, ext);
    let mut writers = Writers {
        findings: ObjectWriter::new(
            s3_client,
            bucket,
            kms,
            keys.findings.clone(),
            "application/x-ndjson",
        ),
        report: keys.report.clone().map(|key| {
            let content_type = if ext == Some("csv") {
                "text/csv"
            } else {
                "application/json"
            };
            (
                ObjectWriter::new(s3_client, bucket, kms, key, content_type),
                settings.report_format,
            )
        }),
    };
    let tally = match stream_findings(inspector, &mut writers, &scan, &instance_id, now).await {
        Ok(tally) => tally,
        Err(err) => {
            writers.abort().await;
            return Err(err);
        }
    };
    let Writers { findings, report } = writers;
    let data_bytes = findings.finish().await?;
    let report_bytes = match report {
        Some((w, _)) => w.finish().await?,
        None => 0,
    };

    let summary = ScanSummary {
        scan_id: scan.scan_id.clone(),
        ami_id: scan.ami_id.clone(),
        ami_name: scan.ami_name.clone(),
        platform: scan.platform.clone(),
        instance_id: instance_id.clone(),
        instance_type: scan.instance_type.clone(),
        requested_at: scan.requested_at.map(report::timestamp),
        launched_at: scan.launched_at.map(report::timestamp),
        scanned_at: report::timestamp(now),
        verdict: Verdict::of(&tally.active, settings.severity_threshold.0),
        severity_threshold: settings.severity_threshold.to_string(),
        highest_severity: tally
            .active
            .highest()
            .map_or("NONE", |s| s.as_str())
            .to_string(),
        finding_count: tally.rows,
        counts: tally.active,
        bucket: bucket.to_string(),
        findings_key: keys.findings.clone(),
        summary_key: keys.summary.clone(),
        report_uri: format!(
            "s3://{bucket}/{}",
            keys.report.as_ref().unwrap_or(&keys.findings)
        ),
        report_key: keys.report.clone(),
    };
    // The summary goes last: its presence means the scan's data is complete.
    let mut line = serde_json::to_vec(&summary)
        .map_err(|e| Error::Internal(format!("encoding the summary: {e}")))?;
    line.push(b'\n');
    let mut writer = ObjectWriter::new(
        s3_client,
        bucket,
        kms,
        keys.summary.clone(),
        "application/x-ndjson",
    );
    writer.write(&line).await?;
    writer.finish().await?;
    info!(
        scan_id = %summary.scan_id,
        instance_id = %instance_id,
        findings = summary.finding_count,
        critical = summary.counts.critical,
        high = summary.counts.high,
        verdict = summary.verdict.as_str(),
        data_bytes,
        report_bytes,
        "report exported"
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::inspector2::operation::list_findings::ListFindingsOutput;
    use crate::aws::s3::operation::put_object::PutObjectOutput;
    use crate::model::Severity;
    use crate::settings::Threshold;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn settings() -> ExportSettings {
        ExportSettings {
            report_bucket: "amiscan-reports".parse().unwrap(),
            report_kms_key_arn: "arn:aws:kms:us-east-1:123456789012:key/k".parse().unwrap(),
            report_format: ReportFormat::None,
            severity_threshold: Threshold(Some(Severity::High)),
        }
    }

    fn page(findings: &[(&str, &str)], next: Option<&str>) -> ListFindingsOutput {
        let mut out = ListFindingsOutput::builder().set_next_token(next.map(str::to_string));
        for (arn, severity) in findings {
            out = out.findings(crate::report::tests::sample_finding(
                arn, severity, "ACTIVE",
            ));
        }
        out.build()
    }

    #[test]
    fn the_scan_is_dated_by_inspectors_event_unless_it_is_missing_unreadable_or_ahead() {
        let now: DateTime<Utc> = "2026-11-23T12:00:00Z".parse().unwrap();
        let event = |t: serde_json::Value| serde_json::json!({"event_time": t});
        let past = event("2026-11-16T08:30:00Z".into());
        assert_eq!(
            scan_time(Some(&past), now),
            "2026-11-16T08:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(scan_time(None, now), now);
        assert_eq!(scan_time(Some(&serde_json::json!({})), now), now);
        assert_eq!(scan_time(Some(&event("1763280000".into())), now), now);
        assert_eq!(scan_time(Some(&event(1763280000.into())), now), now);
        assert_eq!(
            scan_time(Some(&event("2026-11-27T13:41:10Z".into())), now),
            now
        );
    }

    #[tokio::test]
    async fn every_page_of_findings_is_read_and_counted() {
        let first = mock!(inspector2::Client::list_findings)
            .match_requests(|r| r.next_token().is_none() && r.max_results() == Some(100))
            .then_output(|| page(&[("arn:1", "HIGH"), ("arn:2", "LOW")], Some("t2")));
        let second = mock!(inspector2::Client::list_findings)
            .match_requests(|r| {
                r.next_token() == Some("t2")
                    && r.filter_criteria()
                        .map(|f| f.resource_id()[0].value() == "i-0123456789abcdef0")
                        .unwrap_or(false)
            })
            .then_output(|| page(&[("arn:3", "MEDIUM")], None));
        let inspector = mock_client!(inspector2, RuleMode::Sequential, [&first, &second]);
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
        let s3_client = mock_client!(s3, RuleMode::Sequential, [&data, &summary]);
        let request: ExportRequest = serde_json::from_str(include_str!(
            "../../../events/export-report/scan-complete.json"
        ))
        .unwrap();
        let out = export_report(&inspector, &s3_client, &settings(), request, Utc::now())
            .await
            .unwrap();
        assert_eq!(out.finding_count, 3);
        assert_eq!(
            (out.counts.high, out.counts.medium, out.counts.low),
            (1, 1, 1)
        );
        assert_eq!(out.verdict, Verdict::Fail);
        assert_eq!(
            (
                first.num_calls(),
                second.num_calls(),
                data.num_calls(),
                summary.num_calls()
            ),
            (1, 1, 1, 1)
        );
    }
}

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
        out = out.findings(crate::aws::inspector::tests::sdk_finding(
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
        "../../../../../events/export-report/scan-complete.json"
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

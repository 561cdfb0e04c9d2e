use super::*;
use crate::aws::ec2::operation::describe_instances::DescribeInstancesOutput;
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
        home: crate::settings::Home::for_tests(),
        instance_profile: Some("scanner-profile".parse().unwrap()),
        count_suppressed: true,
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

/// DescribeInstances' answer for one scanner instance.
fn scanner(image: &str, scan_id: &str) -> DescribeInstancesOutput {
    use crate::aws::ec2::types::{IamInstanceProfile, Instance, Reservation, Tag};
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    let instance = Instance::builder()
        .instance_id("i-0123456789abcdef0")
        .image_id(image)
        .tags(tag("amiscan:managed", "true"))
        .tags(tag("amiscan:ami-id", "ami-0123456789abcdef0"))
        .tags(tag("amiscan:scan-id", scan_id))
        .iam_instance_profile(
            IamInstanceProfile::builder()
                .arn("arn:aws:iam::123456789012:instance-profile/scanner-profile")
                .build(),
        )
        .build();
    DescribeInstancesOutput::builder()
        .reservations(Reservation::builder().instances(instance).build())
        .build()
}

#[tokio::test]
async fn an_instance_scan_is_reported_only_from_amiscans_scanner_of_that_ami() {
    let scan: ScanContext = serde_json::from_value(
        serde_json::from_str::<serde_json::Value>(include_str!(
            "../../../../../events/export-report/scan-complete.json"
        ))
        .unwrap()["scan"]
            .clone(),
    )
    .unwrap();
    let profile: InstanceProfile = "scanner-profile".parse().unwrap();
    let of = |image: &str, scan_id: &str| {
        let described = mock!(ec2::Client::describe_instances).then_output({
            let (image, scan_id) = (image.to_string(), scan_id.to_string());
            move || scanner(&image, &scan_id)
        });
        let client = mock_client!(aws_sdk_ec2, [&described]);
        async move {
            ec2::describe_instances(
                &client,
                Instances::ById(&"i-0123456789abcdef0".parse().unwrap()),
            )
            .await
            .unwrap()
        }
    };
    let real = of("ami-0123456789abcdef0", scan.scan_id.as_str()).await;
    assert_eq!(
        scanner_disagreement(real.first(), &scan, Some(&profile)),
        None
    );
    let other_image = of("ami-0fedcba9876543210", scan.scan_id.as_str()).await;
    assert!(
        scanner_disagreement(other_image.first(), &scan, Some(&profile))
            .unwrap()
            .contains("launched from ami-0fedcba9876543210")
    );
    let other_scan = of("ami-0123456789abcdef0", "ami-0123456789abcdef0-20200101").await;
    assert!(
        scanner_disagreement(other_scan.first(), &scan, Some(&profile))
            .unwrap()
            .contains("tags")
    );
    let other_profile: InstanceProfile = "someone-elses".parse().unwrap();
    assert!(
        scanner_disagreement(real.first(), &scan, Some(&other_profile))
            .unwrap()
            .contains("profile")
    );
    assert!(scanner_disagreement(None, &scan, Some(&profile)).is_some());
}

fn outcome(status: &str, total: Option<u64>, completed: &str) -> SnapshotOutcome {
    serde_json::from_value(serde_json::json!({
        "scanId": "s-1", "scanStatus": status, "completedAt": completed,
        "findingSeverityCounts": total.map(|t| serde_json::json!({"HIGH": t, "TOTAL": t})),
    }))
    .unwrap()
}

/// Evidence of `n` HIGH findings received and nothing else.
fn high(n: u64) -> Evidence {
    let mut e = Evidence::default();
    for _ in 0..n {
        e.received.add(Severity::High);
    }
    e
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
        snapshot_verdict(&done, &high(3), Verdict::Pass),
        (Verdict::Pass, None, None)
    );
    let (v, why, gap) = snapshot_verdict(&done, &high(2), Verdict::Pass);
    assert_eq!((v, gap), (Verdict::Incomplete, Some(Gap::Missing)));
    assert!(why.unwrap().contains("2 of 3"));
    let lost = outcome("SUCCESSFUL", None, "2026-11-23T12:05:00Z");
    assert_eq!(should_wait(&lost, 0, 600, now), None);
    let (v, why, gap) = snapshot_verdict(&lost, &high(5), Verdict::Pass);
    assert_eq!((v, gap), (Verdict::Incomplete, Some(Gap::Missing)));
    assert!(why.unwrap().contains("completion event"));
    let mut failed = outcome("FAILED", None, "2026-11-23T12:05:00Z");
    failed.scan_status_reason = Some("UNSUPPORTED_OS".into());
    let (v, why, _) = snapshot_verdict(&failed, &Evidence::default(), Verdict::Pass);
    assert_eq!(v, Verdict::NotScannable);
    assert!(why.unwrap().contains("UNSUPPORTED_OS"));
}

#[test]
fn only_a_first_attempt_missing_findings_that_would_pass_gets_a_fresh_scan() {
    let done = outcome("SUCCESSFUL", Some(3), "2026-11-23T12:05:00Z");
    let lost = outcome("SUCCESSFUL", None, "2026-11-23T12:05:00Z");
    for (outcome, received) in [(&done, high(2)), (&lost, high(5))] {
        let (v, _, gap) = snapshot_verdict(outcome, &received, Verdict::Pass);
        assert!(wants_fresh_scan(v, gap, Some(0)));
        assert!(
            wants_fresh_scan(v, gap, None),
            "executions started before attempts were numbered"
        );
        assert!(
            !wants_fresh_scan(v, gap, Some(1)),
            "one fresh scan, then INCOMPLETE"
        );
    }
    // What arrived already fails: no rescan can pass it.
    let (v, _, gap) = snapshot_verdict(&done, &high(2), Verdict::Fail);
    assert!(!wants_fresh_scan(v, gap, Some(0)));
    // A contradiction is never scanned away.
    let mut padded = high(3);
    padded.foreign = Some(("findingArn of another scan".into(), 1));
    let (v, _, gap) = snapshot_verdict(&done, &padded, Verdict::Pass);
    assert!(!wants_fresh_scan(v, gap, Some(0)));
    // Complete: nothing to rescan.
    let (v, _, gap) = snapshot_verdict(&done, &high(3), Verdict::Pass);
    assert!(!wants_fresh_scan(v, gap, Some(0)));
}

#[test]
fn findings_that_already_breach_fail_the_scan_whatever_is_missing_or_contradicted() {
    let done = outcome("SUCCESSFUL", Some(3), "2026-11-23T12:05:00Z");
    let (v, why, gap) = snapshot_verdict(&done, &high(2), Verdict::Fail);
    assert_eq!((v, gap), (Verdict::Fail, None));
    assert!(why.unwrap().contains("missing"), "the gap is still said");
    assert_eq!(
        snapshot_verdict(&done, &high(3), Verdict::Fail),
        (Verdict::Fail, None, None)
    );
    // A conflicting body whose other version breaches: FAIL, not PASS.
    let mut e = high(3);
    e.conflict = Some(("arn:x".into(), 1));
    e.other_body_breaches = true;
    assert_eq!(snapshot_verdict(&done, &e, Verdict::Pass).0, Verdict::Fail);
}

#[test]
fn counts_are_compared_per_severity_and_anything_contradicting_inspector_is_incomplete() {
    let done: SnapshotOutcome = serde_json::from_value(serde_json::json!({
        "scanId": "s-1", "scanStatus": "SUCCESSFUL", "completedAt": "2026-11-23T12:05:00Z",
        "findingSeverityCounts": {"CRITICAL": 1, "LOW": 1, "TOTAL": 2},
    }))
    .unwrap();
    // The CRITICAL was lost and a forged LOW makes up the TOTAL.
    let mut padded = Evidence::default();
    padded.received.add(Severity::Low);
    padded.received.add(Severity::Low);
    let (v, why, gap) = snapshot_verdict(&done, &padded, Verdict::Pass);
    assert_eq!((v, gap), (Verdict::Incomplete, Some(Gap::Contradicted)));
    let why = why.unwrap();
    assert!(
        why.contains("contradicted") && why.contains("CRITICAL 0 of 1"),
        "{why}"
    );
    // A conflict alone (the rows' body passes): contradicted.
    let mut e = Evidence::default();
    e.received.add(Severity::Critical);
    e.received.add(Severity::Low);
    let mut conflict = e.clone();
    conflict.conflict = Some(("arn:x".into(), 1));
    assert_eq!(
        snapshot_verdict(&done, &conflict, Verdict::Pass).2,
        Some(Gap::Contradicted)
    );
    let mut foreign = e.clone();
    foreign.foreign = Some(("findingArn of another scan".into(), 2));
    let (v, why, _) = snapshot_verdict(&done, &foreign, Verdict::Pass);
    assert_eq!(v, Verdict::Incomplete);
    assert!(why
        .unwrap()
        .contains("2 finding event(s) were not this scan's"));
    let mut disagrees = e.clone();
    disagrees.status_disagrees = Some("status IN_PROGRESS instead of SUCCESSFUL".into());
    assert_eq!(
        snapshot_verdict(&done, &disagrees, Verdict::Pass).2,
        Some(Gap::Contradicted)
    );
    assert_eq!(snapshot_verdict(&done, &e, Verdict::Pass).0, Verdict::Pass);
}

#[test]
fn a_fail_whose_findings_contradicted_inspector_always_alerts() {
    use Verdict::{Fail, Pass};
    assert!(should_alert(Fail, AlertOn::New, Fail, false));
    assert!(
        !should_alert(Fail, AlertOn::New, Pass, false),
        "nothing new fails"
    );
    assert!(should_alert(Fail, AlertOn::EveryFail, Pass, false));
    assert!(
        should_alert(Fail, AlertOn::New, Pass, true),
        "a contradiction always alerts"
    );
    assert!(!should_alert(Pass, AlertOn::EveryFail, Fail, true));
    let mut e = Evidence::default();
    assert!(!e.contradicts());
    e.other_body_breaches = true;
    assert!(e.contradicts());
}

#[test]
fn a_finding_is_this_scans_only_under_its_account_scan_and_image() {
    let own = OwnScan {
        account: "123456789012",
        scan_id: "8b1e4a9c-2f3d-4e5a-9b6c-7d8e9f0a1b2c",
        ami_id: "ami-0123456789abcdef0",
    };
    let event: serde_json::Value = serde_json::from_str(include_str!(
        "../../../../../tests/fixtures/ondemand/finding-event.json"
    ))
    .unwrap();
    let f: Finding = serde_json::from_value(event["detail"].clone()).unwrap();
    assert_eq!(own.foreign(&f), None);
    let with = |edit: &dyn Fn(&mut Finding)| {
        let mut g = f.clone();
        edit(&mut g);
        own.foreign(&g)
    };
    assert!(with(&|g| g.finding_arn = g.finding_arn.replace("8b1e4a9c", "00000000")).is_some());
    assert!(
        with(&|g| g.finding_arn = g.finding_arn.replace("123456789012", "210987654321")).is_some()
    );
    assert!(with(&|g| g.finding_arn = g.finding_arn.replace("inspector2", "inspector")).is_some());
    assert!(with(&|g| g.finding_arn.push_str("/extra")).is_some());
    assert!(with(&|g| g.aws_account_id = "210987654321".into()).is_some());
    assert!(with(&|g| g.resources[0].id = "ami-0fedcba9876543210".into()).is_some());
    assert!(with(&|g| g.resources.clear()).is_some());
}

#[test]
fn inspectors_status_must_agree_with_the_completion() {
    let ami = "ami-0123456789abcdef0";
    let mut done = outcome("SUCCESSFUL", Some(1), "2026-11-23T12:05:00Z");
    done.resource_id = Some(ami.into());
    let status = done.clone();
    assert_eq!(status_disagreement(&done, Some(&status), ami), None);
    assert!(status_disagreement(&done, None, ami).is_some());
    let mut other = status.clone();
    other.scan_status = "IN_PROGRESS".into();
    assert!(status_disagreement(&done, Some(&other), ami)
        .unwrap()
        .contains("IN_PROGRESS"));
    let mut elsewhere = status.clone();
    elsewhere.resource_id = Some("ami-0fedcba9876543210".into());
    assert!(status_disagreement(&done, Some(&elsewhere), ami).is_some());
    let mut id = status;
    id.scan_id = "s-2".into();
    assert!(status_disagreement(&done, Some(&id), ami).is_some());
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
    // The first pointer is written only if there is still none: the one
    // read at the start is what the conditional write relies on.
    let pointer = mock!(s3::Client::put_object)
        .match_requests(|r| {
            r.key() == Some("state/latest/ami-0123456789abcdef0.json")
                && r.if_none_match() == Some("*")
        })
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
    let described = mock!(ec2::Client::describe_instances)
        .then_output(|| scanner("ami-0123456789abcdef0", "ami-0123456789abcdef0-20261127"));
    let ec2_client = mock_client!(aws_sdk_ec2, [&described]);
    let out = run(
        &ec2_client,
        &inspector,
        &s3_client,
        &settings(),
        request,
        &Place {
            account_id: "123456789012".parse().unwrap(),
            region: "us-east-1".parse().unwrap(),
        },
        Utc::now(),
    )
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
            first_scan.num_calls(),
            pointer.num_calls()
        ),
        (1, 1, 1, 1, 1, 1),
        "the pointer is read once"
    );
}

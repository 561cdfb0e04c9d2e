//! export-report against the local cloud.

use amiscan_core::lambda::Handler;
use amiscan_tests::{finding, Stack};
use serde_json::{json, Value};

#[tokio::test]
async fn export_report_writes_jsonl_csv_and_summary_with_the_verdict() {
    let stack = Stack::new("eu-central-1").await;
    let ami = stack.cloud.register_ami("golden-ubuntu", &[]).await;
    let scan = stack.launched_scan(&ami).await;
    let instance_id = scan["instance_id"].as_str().unwrap().to_string();
    stack.cloud.set_findings(
        &instance_id,
        vec![
            finding(
                1,
                &instance_id,
                &ami,
                "CRITICAL",
                "CVE-2026-1000",
                "openssl",
            ),
            finding(2, &instance_id, &ami, "HIGH", "CVE-2026-2000", "curl"),
            finding(3, &instance_id, &ami, "MEDIUM", "CVE-2026-3000", "zlib"),
        ],
    );
    let summary = stack
        .export_report("CSV")
        .handle(json!({"scan": scan, "inspector": {"event_time": "2026-11-23T10:00:00Z", "source": "event"}}))
        .await
        .unwrap();
    assert_eq!(summary.verdict.as_str(), "FAIL");
    assert_eq!(
        (
            summary.counts.critical,
            summary.counts.high,
            summary.counts.medium
        ),
        (1, 1, 1)
    );
    assert_eq!(summary.finding_count, 3);
    // Filed under the day of Inspector's event.
    assert!(summary
        .findings_key
        .starts_with("findings/scan_date=2026-11-23/"));

    let (data, sse) = stack
        .cloud
        .object_text(&stack.bucket, &summary.findings_key)
        .await;
    assert_eq!(sse.as_deref(), Some("aws:kms"));
    let rows: Vec<Value> = data
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["vulnerability_id"], "CVE-2026-1000");
    assert_eq!(rows[0]["ami_id"], ami.as_str());
    assert_eq!(rows[0]["instance_id"], instance_id.as_str());
    assert_eq!(rows[0]["fixed_in_version"], "1.0.1-1");
    assert_eq!(rows[0]["exploit_available"], true);
    let raw: Value = serde_json::from_str(rows[0]["finding_json"].as_str().unwrap()).unwrap();
    assert_eq!(
        raw["packageVulnerabilityDetails"]["vulnerabilityId"],
        "CVE-2026-1000"
    );

    let (csv, _) = stack
        .cloud
        .object_text(&stack.bucket, summary.report_key.as_deref().unwrap())
        .await;
    let mut lines = csv.split("\r\n");
    assert!(lines
        .next()
        .unwrap()
        .starts_with("AWS Account Id,Severity,Fix Available"));
    assert_eq!(csv.matches("\r\n").count(), 4);
    assert!(csv.contains("\"openssl: a flaw, \"\"quoted\"\", with a comma\""));

    let (line, _) = stack
        .cloud
        .object_text(&stack.bucket, &summary.summary_key)
        .await;
    assert_eq!(line.lines().count(), 1);
    let record: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(record["verdict"], "FAIL");
    assert_eq!(record["critical"], 1);
    assert_eq!(record["findings_key"], summary.findings_key.as_str());
    assert_eq!(
        summary.report_uri,
        format!("s3://{}/{}", stack.bucket, summary.report_key.unwrap())
    );
}

#[tokio::test]
async fn export_report_with_no_findings_still_writes_the_summary() {
    let stack = Stack::new("eu-west-3").await;
    let ami = stack.cloud.register_ami("golden-clean", &[]).await;
    let scan = stack.launched_scan(&ami).await;
    let summary = stack
        .export_report("JSON")
        .handle(json!({"scan": scan}))
        .await
        .unwrap();
    assert_eq!(summary.verdict.as_str(), "PASS");
    assert_eq!(summary.finding_count, 0);
    let (data, _) = stack
        .cloud
        .object_text(&stack.bucket, &summary.findings_key)
        .await;
    assert_eq!(data, "");
    let (report, _) = stack
        .cloud
        .object_text(&stack.bucket, summary.report_key.as_deref().unwrap())
        .await;
    assert_eq!(serde_json::from_str::<Value>(&report).unwrap(), json!([]));
    let (line, _) = stack
        .cloud
        .object_text(&stack.bucket, &summary.summary_key)
        .await;
    let record: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(record["finding_count"], 0);
    assert_eq!(record["verdict"], "PASS");
}

#[tokio::test]
async fn export_report_compares_with_the_previous_scan_and_a_retry_does_not_compare_with_itself() {
    let stack = Stack::new("me-south-1").await;
    let ami = stack.cloud.register_ami("golden-delta", &[]).await;
    let first = stack.launched_scan(&ami).await;
    let instance_id = first["instance_id"].as_str().unwrap().to_string();
    let export = |scan: &Value, day: &str| json!({"scan": scan, "inspector": {"event_time": format!("2026-11-{day}T10:00:00Z"), "source": "event"}});
    stack.cloud.set_findings(
        &instance_id,
        vec![
            finding(
                1,
                &instance_id,
                &ami,
                "CRITICAL",
                "CVE-2026-1000",
                "openssl",
            ),
            finding(2, &instance_id, &ami, "HIGH", "CVE-2026-2000", "curl"),
        ],
    );
    let a = stack
        .export_report("NONE")
        .handle(export(&first, "23"))
        .await
        .unwrap();
    assert!(a.first_scan && a.previous_scan_id.is_none());

    let mut second = first.clone();
    second["scan_id"] = json!(format!("{ami}-20261124"));
    // The export reads findings only from the scanner tagged for its scan:
    // relabel the instance as the second scan's (as a new launch would be).
    stack
        .cloud
        .ec2()
        .create_tags()
        .resources(&instance_id)
        .tags(
            amiscan_core::aws::ec2::types::Tag::builder()
                .key(amiscan_core::tags::SCAN_ID_TAG)
                .value(format!("{ami}-20261124"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    stack.cloud.set_findings(
        &instance_id,
        vec![
            finding(
                1,
                &instance_id,
                &ami,
                "CRITICAL",
                "CVE-2026-1000",
                "openssl",
            ),
            finding(3, &instance_id, &ami, "MEDIUM", "CVE-2026-3000", "zlib"),
        ],
    );
    for attempt in 0..2 {
        let b = stack
            .export_report("NONE")
            .handle(export(&second, "24"))
            .await
            .unwrap();
        assert_eq!(
            b.previous_scan_id.as_deref(),
            Some(a.scan_id.as_str()),
            "attempt {attempt}"
        );
        assert_eq!(
            b.delta, "1 new: CVE-2026-3000 (MEDIUM); 1 fixed; 1 still open",
            "attempt {attempt}"
        );
        assert_eq!(b.fixed[0].vulnerability_id, "CVE-2026-2000");
    }
    let (pointer, _) = stack
        .cloud
        .object_text(&stack.bucket, &format!("state/latest/{ami}.json"))
        .await;
    let pointer: Value = serde_json::from_str(&pointer).unwrap();
    assert_eq!(pointer["scan_id"], json!(format!("{ami}-20261124")));
    assert_eq!(pointer["previous"]["scan_id"], json!(a.scan_id));
    assert_eq!(
        pointer["previous"]["previous"],
        Value::Null,
        "the chain stays two long"
    );
}

/// Labels the scanner instance as another scan's (as its launch would).
async fn relabel(stack: &Stack, instance_id: &str, scan_id: &str) {
    stack
        .cloud
        .ec2()
        .create_tags()
        .resources(instance_id)
        .tags(
            amiscan_core::aws::ec2::types::Tag::builder()
                .key(amiscan_core::tags::SCAN_ID_TAG)
                .value(scan_id)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn an_older_scan_finishing_after_a_newer_one_changes_neither_the_pointer_nor_the_tags() {
    let stack = Stack::new("ap-south-2").await;
    let ami = stack.cloud.register_ami("golden-race", &[]).await;
    let launched = stack.launched_scan(&ami).await;
    let instance_id = launched["instance_id"].as_str().unwrap().to_string();
    let export = |scan: &Value, day: &str| json!({"scan": scan, "inspector": {"event_time": format!("2026-11-{day}T10:00:00Z"), "source": "event"}});
    let scan_of = |day: &str| {
        let mut scan = launched.clone();
        scan["scan_id"] = json!(format!("{ami}-202611{day}"));
        scan
    };
    let tag = |scan: &Value, summary: &amiscan_core::report::ScanSummary| json!({"scan": scan, "status": "COMPLETE", "summary": summary});

    // The newer scan (the 24th) finishes first: FAIL.
    let (older, newer) = (scan_of("23"), scan_of("24"));
    relabel(&stack, &instance_id, newer["scan_id"].as_str().unwrap()).await;
    stack.cloud.set_findings(
        &instance_id,
        vec![finding(
            1,
            &instance_id,
            &ami,
            "CRITICAL",
            "CVE-2026-1000",
            "openssl",
        )],
    );
    let b = stack
        .export_report("NONE")
        .handle(export(&newer, "24"))
        .await
        .unwrap();
    assert_eq!(b.verdict.as_str(), "FAIL");
    stack.tag_ami().handle(tag(&newer, &b)).await.unwrap();

    // The older one (the 23rd, clean) finishes after it.
    relabel(&stack, &instance_id, older["scan_id"].as_str().unwrap()).await;
    stack.cloud.set_findings(&instance_id, vec![]);
    let a = stack
        .export_report("NONE")
        .handle(export(&older, "23"))
        .await
        .unwrap();
    assert_eq!(a.verdict.as_str(), "PASS");
    let (pointer, _) = stack
        .cloud
        .object_text(&stack.bucket, &format!("state/latest/{ami}.json"))
        .await;
    let pointer: Value = serde_json::from_str(&pointer).unwrap();
    assert_eq!(
        pointer["scan_id"], newer["scan_id"],
        "the pointer keeps the newer scan"
    );
    let out = stack.tag_ami().handle(tag(&older, &a)).await.unwrap();
    assert_eq!(out.superseded_by.as_deref(), Some(b.scanned_at.as_str()));
    let tags = stack.cloud.image_tags(&ami).await;
    assert_eq!(
        (
            tags["amiscan:verdict"].as_str(),
            tags["amiscan:last-scan"].as_str()
        ),
        ("FAIL", b.scanned_at.as_str()),
        "the tags keep the newer scan's result"
    );
    assert_eq!(tags["amiscan:scan-id"], newer["scan_id"].as_str().unwrap());

    // A newer scan still moves both.
    let latest = scan_of("25");
    relabel(&stack, &instance_id, latest["scan_id"].as_str().unwrap()).await;
    let c = stack
        .export_report("NONE")
        .handle(export(&latest, "25"))
        .await
        .unwrap();
    stack.tag_ami().handle(tag(&latest, &c)).await.unwrap();
    let tags = stack.cloud.image_tags(&ami).await;
    assert_eq!(tags["amiscan:verdict"], "PASS");
    let (pointer, _) = stack
        .cloud
        .object_text(&stack.bucket, &format!("state/latest/{ami}.json"))
        .await;
    assert!(pointer.contains(latest["scan_id"].as_str().unwrap()));
}

#[tokio::test]
async fn suppressed_findings_are_counted_and_fail_the_scan_unless_count_suppressed_is_false() {
    let stack = Stack::new("ca-west-1").await;
    let ami = stack.cloud.register_ami("golden-suppressed", &[]).await;
    let scan = stack.launched_scan(&ami).await;
    let instance_id = scan["instance_id"].as_str().unwrap().to_string();
    let mut hidden = finding(
        1,
        &instance_id,
        &ami,
        "CRITICAL",
        "CVE-2026-1000",
        "openssl",
    );
    hidden["status"] = json!("SUPPRESSED");
    stack.cloud.set_findings(&instance_id, vec![hidden]);
    let input = json!({"scan": scan, "inspector": {"event_time": "2026-11-23T10:00:00Z", "source": "event"}});
    let counted = stack
        .export_report("NONE")
        .handle(input.clone())
        .await
        .unwrap();
    assert_eq!(
        (
            counted.verdict.as_str(),
            counted.suppressed,
            counted.counts.critical
        ),
        ("FAIL", 1, 1)
    );
    let not_counted = stack
        .export_report_with("NONE", &[("COUNT_SUPPRESSED", "false")])
        .handle(input)
        .await
        .unwrap();
    assert_eq!(
        (
            not_counted.verdict.as_str(),
            not_counted.suppressed,
            not_counted.counts.critical
        ),
        ("PASS", 1, 0)
    );
}

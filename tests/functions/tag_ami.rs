//! tag-ami against the local cloud.

use amiscan_core::lambda::Handler;
use amiscan_tests::{error_type, Stack, SELECTION_KEY, SELECTION_VALUE};
use serde_json::{json, Value};

#[tokio::test]
async fn tag_ami_writes_status_then_result_and_reports_a_missing_ami() {
    let stack = Stack::new("ap-northeast-1").await;
    let ami = stack
        .cloud
        .register_ami("golden", &[(SELECTION_KEY, SELECTION_VALUE)])
        .await;
    let scan = Stack::scan_input(&ami);

    stack
        .tag_ami()
        .handle(json!({"scan": scan, "status": "TIMED_OUT", "reason": {"Error": "NoScan", "Cause": "UNMANAGED_EC2_INSTANCE"}}))
        .await
        .unwrap();
    let tags = stack.cloud.image_tags(&ami).await;
    assert_eq!(tags["amiscan:status"], "TIMED_OUT");
    assert_eq!(tags["amiscan:reason"], "NoScan: UNMANAGED_EC2_INSTANCE");

    let summary: Value =
        serde_json::from_str(include_str!("../../events/tag-ami/complete.json")).unwrap();
    let mut request = summary;
    request["scan"] = scan.clone();
    request["summary"]["ami_id"] = json!(ami);
    request["summary"]["scan_id"] = scan["scan_id"].clone();
    // tag-ami reads the summary export-report recorded, not its input's.
    let key = request["summary"]["summary_key"]
        .as_str()
        .unwrap()
        .to_string();
    let mut recorded = serde_json::to_vec(&request["summary"]).unwrap();
    recorded.push(b'\n');
    stack
        .cloud
        .s3()
        .put_object()
        .bucket(&stack.bucket)
        .key(&key)
        .body(recorded.into())
        .send()
        .await
        .unwrap();
    let mut forged = request.clone();
    forged["summary"]["verdict"] = json!("PASS");
    forged["summary"]["critical"] = json!(0);
    forged["summary"]["high"] = json!(0);
    stack.tag_ami().handle(forged).await.unwrap();
    let tags = stack.cloud.image_tags(&ami).await;
    assert_eq!(
        (
            tags["amiscan:verdict"].as_str(),
            tags["amiscan:critical"].as_str()
        ),
        ("FAIL", "1"),
        "the recorded summary, not the input, is what is tagged"
    );
    stack.tag_ami().handle(request).await.unwrap();
    let tags = stack.cloud.image_tags(&ami).await;
    assert_eq!(tags["amiscan:status"], "COMPLETE");
    assert_eq!(tags["amiscan:verdict"], "FAIL");
    assert_eq!(tags["amiscan:critical"], "1");
    assert_eq!(tags["amiscan:high"], "2");
    assert!(tags["amiscan:report-uri"].starts_with("s3://"));
    assert!(
        !tags.contains_key("amiscan:reason"),
        "a completed scan clears the old reason"
    );
    assert_eq!(
        tags[SELECTION_KEY], SELECTION_VALUE,
        "other tags are left alone"
    );

    // Inspector's RESOURCE_TERMINATED: nothing is tagged, the alert says so.
    let before = stack.cloud.image_tags(&ami).await;
    let gone = stack
        .tag_ami()
        .handle(json!({"scan": scan, "status": "FAILED", "resource_gone": true,
                       "reason": {"scanStatus": "FAILED", "scanStatusReason": "RESOURCE_TERMINATED"}}))
        .await
        .unwrap();
    assert_eq!(stack.cloud.image_tags(&ami).await, before);
    assert!(gone.tags.is_empty());
    assert!(gone.alert.subject.contains("deregistered"));

    stack
        .cloud
        .ec2()
        .deregister_image()
        .image_id(&ami)
        .send()
        .await
        .unwrap();
    let err = stack
        .tag_ami()
        .handle(json!({"scan": scan, "status": "IN_PROGRESS"}))
        .await
        .unwrap_err();
    assert_eq!(error_type(err), "NotFound");
    // A failure that outlived its AMI is still alerted, with nothing tagged.
    let failed = stack
        .tag_ami()
        .handle(
            json!({"scan": scan, "status": "FAILED", "failed_state": "Tag AMI With Result",
                       "reason": {"Error": "NotFound", "Cause": "AMI gone"}}),
        )
        .await
        .unwrap();
    assert!(failed.tags.is_empty());
    assert_eq!(
        failed.alert.subject,
        "amiscan: a scan failed in Tag AMI With Result"
    );
    let email = &failed.alert.message.email;
    assert!(email.contains("nothing was tagged"), "{email}");
}

#[tokio::test]
async fn an_old_pass_whose_rescan_ends_without_a_result_becomes_stale() {
    let stack = Stack::new("mx-central-1").await;
    let old = "2026-01-05T10:00:00.000Z";
    let ami = stack
        .cloud
        .register_ami(
            "golden-stale",
            &[
                (SELECTION_KEY, SELECTION_VALUE),
                ("amiscan:verdict", "PASS"),
                ("amiscan:last-scan", old),
            ],
        )
        .await;
    let scan = Stack::scan_input(&ami);
    let timed_out = json!({"scan": scan, "status": "TIMED_OUT", "reason": "no result"});
    stack.tag_ami().handle(timed_out.clone()).await.unwrap();
    let tags = stack.cloud.image_tags(&ami).await;
    assert_eq!(
        (
            tags["amiscan:verdict"].as_str(),
            tags["amiscan:last-scan"].as_str()
        ),
        ("STALE", old),
        "the old PASS no longer stands; the last completed scan is still the old one"
    );

    // A recent PASS stands through a rescan that ends without a result.
    let recent = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let fresh = stack
        .cloud
        .register_ami(
            "golden-fresh",
            &[
                (SELECTION_KEY, SELECTION_VALUE),
                ("amiscan:verdict", "PASS"),
                ("amiscan:last-scan", recent.as_str()),
            ],
        )
        .await;
    let failed = json!({"scan": Stack::scan_input(&fresh), "status": "FAILED", "reason": "boom"});
    stack.tag_ami().handle(failed).await.unwrap();
    assert_eq!(
        stack.cloud.image_tags(&fresh).await["amiscan:verdict"],
        "PASS"
    );
}

#[tokio::test]
async fn a_rescan_starting_on_a_pass_older_than_the_max_age_marks_it_stale_and_a_recent_pass_stands(
) {
    let stack = Stack::new("ap-southeast-7").await;
    let old = "2026-01-05T10:00:00.000Z";
    let recent = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut amis = Vec::new();
    for (name, verdict, last) in [
        ("overdue-pass", "PASS", old),
        ("overdue-fail", "FAIL", old),
        ("recent-pass", "PASS", recent.as_str()),
    ] {
        let ami = stack
            .cloud
            .register_ami(
                name,
                &[
                    (SELECTION_KEY, SELECTION_VALUE),
                    ("amiscan:verdict", verdict),
                    ("amiscan:last-scan", last),
                ],
            )
            .await;
        let started = json!({"scan": Stack::scan_input(&ami), "status": "IN_PROGRESS"});
        stack.tag_ami().handle(started).await.unwrap();
        amis.push(ami);
    }
    let tags = stack.cloud.image_tags(&amis[0]).await;
    assert_eq!(
        (
            tags["amiscan:status"].as_str(),
            tags["amiscan:verdict"].as_str(),
            tags["amiscan:last-scan"].as_str()
        ),
        ("IN_PROGRESS", "STALE", old),
        "an overdue PASS does not stand while its rescan runs"
    );
    assert!(tags["amiscan:reason"].contains("older than MaxScanAgeDays (7 days)"));
    // A FAIL stays FAIL (STALE would let FAIL-only guardrails launch it);
    // a recent PASS stands.
    assert_eq!(
        stack.cloud.image_tags(&amis[1]).await["amiscan:verdict"],
        "FAIL"
    );
    let tags = stack.cloud.image_tags(&amis[2]).await;
    assert_eq!(tags["amiscan:verdict"], "PASS");
    assert!(!tags.contains_key("amiscan:reason"));
}

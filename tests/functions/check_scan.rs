//! check-scan against the local cloud.

use amiscan_core::lambda::Handler;
use amiscan_tests::{control, Stack, SELECTION_KEY, SELECTION_VALUE};
use serde_json::json;

fn coverage(instance_id: &str, scanned: bool, reason: &str) {
    control(
        "/coverage",
        json!({"instance_id": instance_id, "coverage": {
            "accountId": amiscan_tests::ACCOUNT, "resourceId": instance_id,
            "resourceType": "AWS_EC2_INSTANCE", "scanType": "PACKAGE",
            "scanStatus": {"statusCode": if scanned { "ACTIVE" } else { "INACTIVE" }, "reason": reason},
            "lastScannedAt": if scanned { json!(1_763_900_000) } else { json!(null) },
        }}),
    );
}

#[tokio::test]
async fn check_scan_answers_from_inspectors_coverage_and_starts_nothing() {
    let stack = Stack::new("eu-south-1").await;
    let ami = stack
        .cloud
        .register_ami("golden", &[(SELECTION_KEY, SELECTION_VALUE)])
        .await;
    let scan = stack.launched_scan(&ami).await;
    let instance_id = scan["instance_id"].as_str().unwrap().to_string();

    // Not in Inspector's coverage at all: timed out.
    let out = stack.check_scan().handle(scan.clone()).await.unwrap();
    assert_eq!(out["outcome"], "TIMED_OUT");
    assert_eq!(out["status"], "TIMED_OUT");

    // Inspector will never scan it.
    coverage(&instance_id, false, "UNSUPPORTED_OS");
    let out = stack.check_scan().handle(scan.clone()).await.unwrap();
    assert_eq!(out["outcome"], "NOT_SCANNABLE");
    assert_eq!(out["status"], "NOT_SCANNABLE");
    assert!(out["reason"].as_str().unwrap().contains("UNSUPPORTED_OS"));

    // Scanned, but the event was lost: the answer carries the report's
    // facts, whatever the AMI's tags say, and nothing is started.
    coverage(&instance_id, true, "SUCCESSFUL");
    stack
        .cloud
        .tag(
            &ami,
            &[
                ("amiscan:scan-id", scan["scan_id"].as_str().unwrap()),
                ("amiscan:status", "COMPLETE"),
            ],
        )
        .await;
    let out = stack.check_scan().handle(scan.clone()).await.unwrap();
    assert_eq!(out["outcome"], "SCANNED");
    assert_eq!(out["inspector"]["source"], "deadline");
    assert!(out["inspector"]["event_time"].is_string());
    assert!(stack
        .cloud
        .executions(&stack.report_machine)
        .await
        .is_empty());

    // The AMI is gone: not scannable, whatever the coverage.
    stack
        .cloud
        .ec2()
        .deregister_image()
        .image_id(&ami)
        .send()
        .await
        .unwrap();
    let out = stack.check_scan().handle(scan).await.unwrap();
    assert_eq!(out["outcome"], "NOT_SCANNABLE");
    assert!(out["reason"].as_str().unwrap().contains("deregistered"));
}

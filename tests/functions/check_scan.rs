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
async fn check_scan_times_out_gives_up_or_hands_a_scanned_instance_over() {
    let stack = Stack::new("eu-south-1").await;
    let ami = stack
        .cloud
        .register_ami("golden", &[(SELECTION_KEY, SELECTION_VALUE)])
        .await;
    let scan = stack.launched_scan(&ami).await;
    let instance_id = scan["instance_id"].as_str().unwrap().to_string();
    let scan_id = scan["scan_id"].as_str().unwrap().to_string();

    // Not in Inspector's coverage at all: timed out, nothing started.
    let out = stack.check_scan().handle(scan.clone()).await.unwrap();
    assert_eq!(serde_json::to_value(&out).unwrap()["outcome"], "TIMED_OUT");
    assert!(stack
        .cloud
        .executions(&stack.report_machine)
        .await
        .is_empty());

    // Inspector will never scan it.
    coverage(&instance_id, false, "UNSUPPORTED_OS");
    let out = serde_json::to_value(stack.check_scan().handle(scan.clone()).await.unwrap()).unwrap();
    assert_eq!(out["outcome"], "NOT_SCANNABLE");
    assert_eq!(out["status"], "NOT_SCANNABLE");
    assert!(out["reason"].as_str().unwrap().contains("UNSUPPORTED_OS"));

    // Scanned, but the event was lost: report-and-cleanup is started once,
    // with the report input the rule would have given it.
    coverage(&instance_id, true, "SUCCESSFUL");
    for _ in 0..2 {
        let out =
            serde_json::to_value(stack.check_scan().handle(scan.clone()).await.unwrap()).unwrap();
        assert_eq!(out["outcome"], "HANDED_OVER");
    }
    let executions = stack.cloud.executions(&stack.report_machine).await;
    assert_eq!(executions, [format!("{scan_id}-deadline")]);

    // Once report-and-cleanup has tagged the AMI, the scan is finished.
    stack
        .cloud
        .tag(
            &ami,
            &[
                ("amiscan:scan-id", &scan_id),
                ("amiscan:status", "COMPLETE"),
            ],
        )
        .await;
    let out = serde_json::to_value(stack.check_scan().handle(scan).await.unwrap()).unwrap();
    assert_eq!(out["outcome"], "FINISHED");
}

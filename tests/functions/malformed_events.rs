//! malformed events against the local cloud.

use amiscan_core::lambda::Handler;
use amiscan_tests::{Stack, SELECTION_KEY, SELECTION_VALUE};
use serde_json::json;

#[tokio::test]
async fn every_function_rejects_a_malformed_event_by_field_and_changes_nothing() {
    let stack = Stack::new("us-east-2").await;
    let ami = stack
        .cloud
        .register_ami("golden", &[(SELECTION_KEY, SELECTION_VALUE)])
        .await;
    let scan = stack.launched_scan(&ami).await;
    let before = stack.snapshot(&[&ami]).await;
    stack.notifications();

    let malformed: Vec<(&str, Result<(), amiscan_core::Error>, &str)> = vec![
        (
            "find-amis",
            stack.find_amis(20).handle(json!({"ami_ids": ["ami-12345678", "not-an-ami"]})).await.map(drop),
            "ami_ids[1]",
        ),
        (
            "find-amis",
            stack.find_amis(20).handle(json!({"ami_id": "ami-12345678"})).await.map(drop),
            "ami_id",
        ),
        (
            "launch-instance",
            stack.launch_instance("t3.small").handle(json!({"scan_id": 7, "ami_id": ami})).await.map(drop),
            "scan_id",
        ),
        (
            "create-scan-rule",
            stack
                .create_scan_rule()
                .handle(json!({"scan": Stack::scan_input(&ami), "task_token": "t"}))
                .await
                .map(drop),
            "scan.instance_id",
        ),
        (
            "export-report",
            stack.export_report("CSV").handle(json!({"scan": {"scan_id": scan["scan_id"], "ami_id": ami, "instance_id": "i-zz"}})).await.map(drop),
            "scan.instance_id",
        ),
        (
            "tag-ami",
            stack.tag_ami().handle(json!({"scan": scan, "status": "DONE"})).await.map(drop),
            "status",
        ),
        (
            "tag-ami",
            stack.tag_ami().handle(json!({"scan": scan, "status": "COMPLETE"})).await.map(drop),
            "summary",
        ),
        (
            "cleanup",
            stack.cleanup().handle(json!({"rule_name": "someone-elses-rule"})).await.map(drop),
            "rule_name",
        ),
        ("cleanup", stack.cleanup().handle(json!({})).await.map(drop), "scan_id"),
        (
            "check-scan",
            stack
                .check_scan()
                .handle(json!({"scan_id": scan["scan_id"], "ami_id": ami}))
                .await
                .map(drop),
            "instance_id",
        ),
        // Malformed ids are refused where they stand, by deserialisation.
        (
            "tag-ami",
            stack
                .tag_ami()
                .handle(json!({"scan": {"scan_id": scan["scan_id"], "ami_id": "ami-NOTHEX!"}, "status": "FAILED"}))
                .await
                .map(drop),
            "scan.ami_id",
        ),
        (
            "check-scan",
            stack
                .check_scan()
                .handle(json!({"scan_id": scan["scan_id"], "ami_id": ami, "instance_id": "i-1"}))
                .await
                .map(drop),
            "instance_id",
        ),
        (
            "cleanup",
            stack
                .cleanup()
                .handle(json!({"scan": {"scan_id": "ami-1234-20261123", "ami_id": ami}}))
                .await
                .map(drop),
            "scan.scan_id",
        ),
        (
            "start-scan",
            stack.start_scan().handle(json!({"scan_id": format!("{ami}-20261123"), "ami_id": "ami-zz"})).await.map(drop),
            "ami_id",
        ),
        (
            "collect-findings",
            stack.collect_findings().handle(json!({"Records": [{"body": "{}"}]})).await.map(drop),
            "Records[0].messageId",
        ),
        (
            "find-amis",
            stack
                .find_amis(20)
                .handle(json!({"ami_ids": ["ami-12345678", "ami-1234567"]}))
                .await
                .map(drop),
            "ami_ids[1]",
        ),
    ];
    for (function, result, field) in malformed {
        match result {
            Err(amiscan_core::Error::InvalidInput { field: got, .. }) => {
                assert_eq!(got, field, "{function}")
            }
            other => panic!("{function}: expected InvalidInput on {field}, got {other:?}"),
        }
    }
    assert_eq!(
        stack.snapshot(&[&ami]).await,
        before,
        "a malformed event changed the emulator"
    );
    assert!(
        stack.notifications().is_empty(),
        "a malformed event published a message"
    );
}

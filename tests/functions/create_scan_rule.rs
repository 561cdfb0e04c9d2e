//! create-scan-rule against the local cloud.

use amiscan_core::lambda::Handler;
use amiscan_core::model::{parse_event, InstanceScanMessage};
use amiscan_tests::Stack;
use serde_json::{json, Value};

#[tokio::test]
async fn create_scan_rule_makes_one_rule_that_delivers_inspectors_event_with_the_latest_token() {
    let stack = Stack::new("ca-central-1").await;
    let ami = stack.cloud.register_ami("golden", &[]).await;
    let scan = stack.launched_instance(&ami).await;
    let instance_id = scan.instance_id.clone().unwrap();
    let request = |token: &str| json!({"scan": scan, "task_token": token});
    let first = stack
        .create_scan_rule()
        .handle(request("first-token"))
        .await
        .unwrap();
    // A retried wait makes the same rule again, with its own token.
    let second = stack
        .create_scan_rule()
        .handle(request("second-token"))
        .await
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(first, format!("amiscan-scan-{instance_id}"));
    assert_eq!(Some(&first), scan.rule_name.as_ref());
    assert_eq!(stack.cloud.rule_names().await, [first.as_str()]);

    let events = stack.cloud.events();
    let rule = events
        .describe_rule()
        .name(first.as_str())
        .send()
        .await
        .unwrap();
    let pattern: Value = serde_json::from_str(rule.event_pattern().unwrap()).unwrap();
    assert_eq!(pattern["source"], json!(["aws.inspector2"]));
    assert_eq!(pattern["detail-type"], json!(["Inspector2 Scan"]));
    assert_eq!(pattern["detail"]["instance-id"], json!([instance_id]));
    assert_eq!(
        pattern["detail"]["scan-status"],
        json!(["INITIAL_SCAN_COMPLETE"])
    );
    let targets = events
        .list_targets_by_rule()
        .rule(first.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(targets.targets().len(), 1);
    let target = &targets.targets()[0];
    assert_eq!(target.arn(), stack.findings_queue_arn);
    assert!(target.role_arn().is_none(), "a queue target needs no role");

    // Inspector's event for another instance is not delivered; this
    // instance's is, with the waiter and the event as EventBridge has it.
    for instance in ["i-0fedcba9876543210", instance_id.as_str()] {
        events
            .put_events()
            .entries(
                amiscan_core::aws::events::types::PutEventsRequestEntry::builder()
                    .source("aws.inspector2")
                    .detail_type("Inspector2 Scan")
                    .resources(instance)
                    .detail(
                        json!({"scan-status": "INITIAL_SCAN_COMPLETE", "instance-id": instance,
                               "finding-severity-counts": {"CRITICAL": 0, "HIGH": 0, "MEDIUM": 0, "TOTAL": 0},
                               "version": "1.0"})
                        .to_string(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let out = stack.cloud.json_call(
        "sqs",
        "AmazonSQS.ReceiveMessage",
        json!({"QueueUrl": stack.findings_queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 2}),
    );
    let bodies: Vec<Value> = out["Messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| serde_json::from_str(m["Body"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let message: InstanceScanMessage = parse_event(bodies[0].clone()).unwrap();
    assert_eq!(message.amiscan_instance_scan.task_token, "second-token");
    assert_eq!(message.amiscan_instance_scan.scan_id, scan.scan_id);
    assert_eq!(message.event["detail"]["instance-id"], json!(instance_id));
    assert!(message.event_time().is_some());
}

//! create-scan-rule against the local cloud.

use amiscan_core::lambda::Handler;
use amiscan_tests::Stack;
use serde_json::{json, Value};

#[tokio::test]
async fn create_scan_rule_makes_one_rule_and_target_even_when_run_twice() {
    let stack = Stack::new("ca-central-1").await;
    let ami = stack.cloud.register_ami("golden", &[]).await;
    let scan = stack.launched_instance(&ami).await;
    let instance_id = scan.instance_id.clone().unwrap();
    let input = serde_json::to_value(&scan).unwrap();
    let first = stack
        .create_scan_rule()
        .handle(input.clone())
        .await
        .unwrap();
    let second = stack.create_scan_rule().handle(input).await.unwrap();
    assert_eq!(first, second);
    let name = first.rule_name.clone().unwrap();
    assert_eq!(name, format!("amiscan-scan-{instance_id}"));
    assert_eq!(stack.cloud.rule_names().await, [name.as_str()]);

    let events = stack.cloud.events();
    let rule = events
        .describe_rule()
        .name(name.as_str())
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
        .rule(name.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(targets.targets().len(), 1);
    let target = &targets.targets()[0];
    assert_eq!(target.arn(), stack.report_machine);
    assert!(target.role_arn().unwrap().ends_with(":role/amiscan-events"));
    let template = target.input_transformer().unwrap().input_template();
    assert!(
        template.contains(&format!("\"instance_id\":\"{instance_id}\"")),
        "{template}"
    );
}

//! cleanup against the local cloud.

use amiscan_core::lambda::Handler;
use amiscan_core::ops::cleanup as core_cleanup;
use amiscan_tests::{error_type, Stack};
use chrono::{Duration, Utc};
use serde_json::{json, Value};

#[tokio::test]
async fn cleanup_removes_the_instance_and_rule_and_is_idempotent() {
    let stack = Stack::new("sa-east-1").await;
    let ami = stack.cloud.register_ami("golden", &[]).await;
    let scan = stack.launched_scan(&ami).await;
    let instance_id = scan["instance_id"].as_str().unwrap().to_string();
    let rule = scan["rule_name"].as_str().unwrap().to_string();

    let report = stack.cleanup().handle(json!({"scan": scan})).await.unwrap();
    assert_eq!(report.terminated, [instance_id.as_str()]);
    assert_eq!(report.rules_deleted, [rule.as_str()]);
    assert_eq!(stack.cloud.instance_state(&instance_id).await, "terminated");
    assert!(stack.cloud.rule_names().await.is_empty());

    let again = stack.cleanup().handle(json!({"scan": scan})).await.unwrap();
    assert!(again.terminated.is_empty());
    assert_eq!(again.instances_already_gone, [instance_id]);
    assert_eq!(again.rules_already_gone, [rule]);
}

#[tokio::test]
async fn cleanup_finds_an_instance_by_its_scan_id_when_the_launch_result_was_lost() {
    let stack = Stack::new("ap-south-1").await;
    let ami = stack.cloud.register_ami("golden", &[]).await;
    let scan = stack.launched_instance(&ami).await;
    let report = stack
        .cleanup()
        .handle(json!({"scan_id": scan.scan_id}))
        .await
        .unwrap();
    assert_eq!(report.terminated, [scan.instance_id.clone().unwrap()]);
    assert_eq!(
        stack
            .cloud
            .instance_state(scan.instance_id.as_deref().unwrap())
            .await,
        "terminated"
    );
}

#[tokio::test]
async fn cleanup_refuses_an_instance_without_the_scanner_tag() {
    let stack = Stack::new("ap-northeast-2").await;
    let ami = stack.cloud.register_ami("golden", &[]).await;
    let stranger = stack
        .cloud
        .scanner_instance(&ami, &format!("{ami}-20261123"), false)
        .await;
    let err = stack
        .cleanup()
        .handle(json!({"instance_id": stranger}))
        .await
        .unwrap_err();
    assert_eq!(error_type(err), "NotScannerManaged");
    assert_eq!(stack.cloud.instance_state(&stranger).await, "running");
}

#[tokio::test]
async fn sweep_removes_orphans_past_the_deadline_and_keeps_live_scans() {
    let stack = Stack::new("ap-southeast-1").await;
    let ami = stack.cloud.register_ami("golden", &[]).await;
    let scan = stack.launched_scan(&ami).await;
    let instance_id = scan["instance_id"].as_str().unwrap().to_string();
    let rule = scan["rule_name"].as_str().unwrap().to_string();
    // A rule whose instance is long gone, and somebody else's rule.
    let gone = stack.cloud.scanner_instance(&ami, "x", true).await;
    stack
        .cloud
        .ec2()
        .terminate_instances()
        .instance_ids(&gone)
        .send()
        .await
        .unwrap();
    let events = stack.cloud.events();
    let stale_rule = format!("amiscan-scan-{gone}");
    events
        .put_rule()
        .name(&stale_rule)
        .event_pattern(r#"{"source":["aws.inspector2"]}"#)
        .send()
        .await
        .unwrap();
    events
        .put_rule()
        .name("someone-elses-rule")
        .event_pattern(r#"{"source":["aws.ec2"]}"#)
        .send()
        .await
        .unwrap();
    let stranger = stack.cloud.scanner_instance(&ami, "y", false).await;
    let settings = stack.cleanup_settings();

    // Within the deadline: only the stale rule goes.
    let now = core_cleanup::sweep(&stack.cloud.ec2(), &events, &settings, Utc::now())
        .await
        .unwrap();
    assert!(now.terminated.is_empty());
    assert_eq!(now.rules_deleted, [stale_rule]);
    assert_eq!(stack.cloud.instance_state(&instance_id).await, "running");

    // Past the deadline plus margin: the scan instance and its rule go too.
    let later = Utc::now() + Duration::minutes(120 + 30 + 1);
    let swept = core_cleanup::sweep(&stack.cloud.ec2(), &events, &settings, later)
        .await
        .unwrap();
    assert_eq!(swept.terminated, [instance_id.as_str()]);
    assert_eq!(swept.rules_deleted, [rule]);
    assert_eq!(stack.cloud.instance_state(&instance_id).await, "terminated");
    assert_eq!(stack.cloud.instance_state(&stranger).await, "running");
    assert_eq!(stack.cloud.rule_names().await, ["someone-elses-rule"]);

    // The hourly schedule's event runs the sweep through the handler.
    let scheduled: Value =
        serde_json::from_str(include_str!("../../events/cleanup/sweep-scheduled.json")).unwrap();
    let report = stack.cleanup().handle(scheduled).await.unwrap();
    assert!(report.terminated.is_empty());
}

#[tokio::test]
async fn a_tagged_instance_without_the_scanner_profile_survives_cleanup_and_the_sweep() {
    let stack = Stack::new("il-central-1").await;
    let ami = stack.cloud.register_ami("golden", &[]).await;
    let scan_id = format!("{ami}-20261123");
    // Someone tagged a production instance as a scanner: tag, scan id and all.
    let impostor = stack.cloud.scanner_instance(&ami, &scan_id, true).await;

    let err = stack
        .cleanup()
        .handle(json!({"instance_id": impostor}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not the scanner's"), "{err}");
    assert_eq!(error_type(err), "NotScannerManaged");

    let by_scan = stack
        .cleanup()
        .handle(json!({"scan_id": scan_id}))
        .await
        .unwrap();
    assert!(by_scan.terminated.is_empty() && by_scan.rules_deleted.is_empty());

    // A rule named for it, or for no instance at all, is not deleted.
    let events = stack.cloud.events();
    for name in [
        format!("amiscan-scan-{impostor}"),
        "amiscan-scan-other".to_string(),
    ] {
        events
            .put_rule()
            .name(&name)
            .event_pattern(r#"{"source":["aws.inspector2"]}"#)
            .send()
            .await
            .unwrap();
        let err = stack
            .cleanup()
            .handle(json!({"rule_name": name}))
            .await
            .unwrap_err();
        assert_eq!(error_type(err), "NotScannerManaged", "{name}");
    }
    assert_eq!(stack.cloud.rule_names().await.len(), 2);

    let later = Utc::now() + Duration::days(2);
    let swept = core_cleanup::sweep(
        &stack.cloud.ec2(),
        &stack.cloud.events(),
        &stack.cleanup_settings(),
        later,
    )
    .await
    .unwrap();
    assert!(swept.terminated.is_empty());
    assert_eq!(stack.cloud.instance_state(&impostor).await, "running");
}

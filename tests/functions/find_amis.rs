//! find-amis against the local cloud.

use std::collections::BTreeMap;

use amiscan_core::lambda::Handler;
use amiscan_tests::{message_of, Stack, SELECTION_KEY, SELECTION_VALUE};
use chrono::Utc;
use serde_json::{json, Value};

#[tokio::test]
async fn find_amis_with_nothing_tagged_starts_nothing_and_says_so() {
    let stack = Stack::new("eu-north-1").await;
    stack.cloud.register_ami("untagged", &[]).await;
    let out = stack.find_amis(20).handle(json!({})).await.unwrap();
    assert_eq!(out.found, 0);
    assert!(out.started.is_empty());
    assert!(stack
        .cloud
        .executions(&stack.launch_machine)
        .await
        .is_empty());
    let messages = stack.notifications();
    assert_eq!(messages.len(), 1);
    let (subject, body, event_type) = message_of(&messages[0]);
    assert_eq!(event_type, "NOTHING_TO_SCAN");
    assert!(subject.contains("nothing to scan"), "{subject}");
    assert_eq!(body["found"], 0);
}

#[tokio::test]
async fn find_amis_starts_one_scan_per_tagged_ami_once_per_day() {
    let stack = Stack::new("eu-west-1").await;
    let tagged = stack
        .cloud
        .register_ami("golden-ubuntu", &[(SELECTION_KEY, SELECTION_VALUE)])
        .await;
    stack
        .cloud
        .register_ami("other", &[(SELECTION_KEY, "false")])
        .await;
    let scheduled: Value =
        serde_json::from_str(include_str!("../../events/find-amis/scheduled.json")).unwrap();

    let first = stack.find_amis(20).handle(scheduled.clone()).await.unwrap();
    assert_eq!(first.found, 1);
    assert_eq!(first.started.len(), 1);
    assert_eq!(first.started[0].ami_id, tagged);
    let today = Utc::now().format("%Y%m%d");
    assert_eq!(
        stack.cloud.executions(&stack.launch_machine).await,
        vec![format!("{tagged}-{today}")]
    );

    // The schedule firing again the same day starts nothing new.
    let again = stack.find_amis(20).handle(scheduled).await.unwrap();
    assert!(again.started.is_empty());
    assert_eq!(again.already_running.len(), 1);
    assert_eq!(stack.cloud.executions(&stack.launch_machine).await.len(), 1);

    let messages = stack.notifications();
    assert_eq!(messages.len(), 2);
    assert_eq!(message_of(&messages[0]).2, "SCAN_BATCH_STARTED");
    assert_eq!(message_of(&messages[1]).2, "NOTHING_TO_SCAN");

    // A forced manual re-scan gets an execution of its own.
    let forced = stack
        .find_amis(20)
        .handle(json!({"ami_ids": [tagged], "force": true}))
        .await
        .unwrap();
    assert_eq!(forced.started.len(), 1);
    assert_eq!(stack.cloud.executions(&stack.launch_machine).await.len(), 2);
}

#[tokio::test]
async fn find_amis_pages_through_1500_amis_and_explains_every_skip() {
    let stack = Stack::new("ap-southeast-2").await;
    let names: Vec<String> = (0..1500).map(|i| format!("golden-{i:04}")).collect();
    let tagged = stack
        .cloud
        .register_amis(&names, &[(SELECTION_KEY, SELECTION_VALUE)])
        .await;
    // One not available, one already being scanned.
    stack
        .cloud
        .ec2()
        .disable_image()
        .image_id(&tagged[0])
        .send()
        .await
        .unwrap();
    let busy = stack
        .cloud
        .scanner_instance(&tagged[1], &format!("{}-20261122", tagged[1]), true)
        .await;

    let out = stack.find_amis(250).handle(json!({})).await.unwrap();
    assert_eq!(out.found, 1500);
    // The scanning instance takes one of the 250 slots.
    assert_eq!(out.started.len(), 249);
    let reasons: BTreeMap<&str, &str> = out
        .skipped
        .iter()
        .map(|s| (s.ami_id.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 1500 - 249);
    assert_eq!(
        reasons[tagged[0].as_str()],
        "state is disabled (not available)"
    );
    assert_eq!(
        reasons[tagged[1].as_str()],
        format!("already being scanned by instance {busy}")
    );
    let capped = reasons
        .values()
        .filter(|r| r.starts_with("concurrent-scan cap of 250 reached"))
        .count();
    assert_eq!(capped, 1500 - 249 - 2);
    assert_eq!(
        stack.cloud.executions(&stack.launch_machine).await.len(),
        249
    );
}

#[tokio::test]
async fn find_amis_reports_requested_amis_that_are_missing_or_foreign() {
    let stack = Stack::new("eu-west-2").await;
    let own = stack.cloud.register_ami("requested-untagged", &[]).await;
    let foreign = stack.cloud.foreign_ami().await;
    let out = stack
        .find_amis(20)
        .handle(json!({"ami_ids": [own, foreign, "ami-0000000000000dead"]}))
        .await
        .unwrap();
    assert_eq!(out.found, 3);
    assert_eq!(out.started.len(), 1);
    assert_eq!(out.started[0].ami_id, own);
    let reasons: BTreeMap<&str, &str> = out
        .skipped
        .iter()
        .map(|s| (s.ami_id.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(reasons[foreign.as_str()], "not owned by this account");
    assert_eq!(reasons["ami-0000000000000dead"], "not found");
}

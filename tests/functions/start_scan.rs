//! start-scan against the local cloud (the launcher's stand-in for
//! Inspector's on-demand scan API).

use amiscan_core::aws::inspector::types::OnDemandResourceType;
use amiscan_core::lambda::Handler;
use amiscan_tests::{control, error_type, Stack, SELECTION_KEY, SELECTION_VALUE};
use serde_json::{json, Value};

async fn scans_of(stack: &Stack, ami: &str) -> Vec<(String, String)> {
    let out = stack
        .cloud
        .inspector()
        .list_on_demand_scans()
        .resource_id(ami)
        .resource_type(OnDemandResourceType::Ami)
        .send()
        .await
        .unwrap();
    out.items()
        .iter()
        .map(|s| {
            (
                s.scan_id().to_string(),
                s.scan_status().as_str().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn start_scan_starts_one_scan_marks_it_and_a_retry_starts_no_second() {
    let stack = Stack::new("ap-northeast-3").await;
    let (ami, started) = stack.started_snapshot_scan().await;
    let id = started
        .inspector_scan_id
        .clone()
        .expect("an Inspector scan id");
    assert!(started.wait_seconds.unwrap() > 0 && started.deadline_at.is_some());
    assert_eq!(
        scans_of(&stack, &ami).await,
        [(id.clone(), "IN_PROGRESS".to_string())]
    );
    let (marker, _) = stack
        .cloud
        .object_text(&stack.bucket, &format!("staging/ondemand/{id}/scan.json"))
        .await;
    let marker: Value = serde_json::from_str(&marker).unwrap();
    assert_eq!(marker["scan"]["scan_id"], format!("{ami}-20261123"));
    assert_eq!(marker["attached"], false);

    // A retried start (same scan, same attempt) is the same clientToken:
    // Inspector answers with the same scan, nothing new starts.
    let again = stack
        .start_scan()
        .handle(Stack::snapshot_input(&ami))
        .await
        .unwrap();
    assert_eq!(again["inspector_scan_id"], id.as_str());
    assert_eq!(scans_of(&stack, &ami).await.len(), 1);

    // The attempt ends without a report: what it staged goes, and nothing
    // else in the bucket does.
    let staged_of = |keys: &[String]| {
        keys.iter()
            .filter(|k| k.starts_with(&format!("staging/ondemand/{id}/")))
            .count()
    };
    let before = stack.cloud.object_keys(&stack.bucket).await;
    assert_eq!(staged_of(&before), 1, "the marker");
    let out = stack
        .start_scan()
        .handle(json!({ "discard_staging": again }))
        .await
        .unwrap();
    assert_eq!(out, json!({"deleted": 1}));
    let after = stack.cloud.object_keys(&stack.bucket).await;
    assert_eq!(staged_of(&after), 0);
    assert_eq!(after.len(), before.len() - 1, "nothing else was deleted");
}

#[tokio::test]
async fn start_scan_attaches_to_a_scan_someone_else_started() {
    let stack = Stack::new("ap-east-1").await;
    let ami = stack
        .cloud
        .register_ami("golden", &[(SELECTION_KEY, SELECTION_VALUE)])
        .await;
    let theirs = stack
        .cloud
        .inspector()
        .start_on_demand_scan()
        .resource_id(&ami)
        .resource_type(OnDemandResourceType::Ami)
        .send()
        .await
        .unwrap()
        .scan_id()
        .to_string();
    let started = stack
        .start_scan()
        .handle(Stack::snapshot_input(&ami))
        .await
        .unwrap();
    assert_eq!(started["inspector_scan_id"], theirs.as_str());
    assert_eq!(
        scans_of(&stack, &ami).await.len(),
        1,
        "Conflict started nothing"
    );
    let (marker, _) = stack
        .cloud
        .object_text(
            &stack.bucket,
            &format!("staging/ondemand/{theirs}/scan.json"),
        )
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&marker).unwrap()["attached"],
        true
    );
}

#[tokio::test]
async fn start_scan_throttled_past_the_sdk_retries_is_transient_and_starts_nothing() {
    let stack = Stack::new("eu-central-2").await;
    let ami = stack
        .cloud
        .register_ami("golden", &[(SELECTION_KEY, SELECTION_VALUE)])
        .await;
    control(
        "/ondemand/throttle-starts",
        json!({"image_id": ami, "times": 20}),
    );
    let before = stack.snapshot(&[&ami]).await;
    let err = stack
        .start_scan()
        .handle(Stack::snapshot_input(&ami))
        .await
        .unwrap_err();
    control(
        "/ondemand/throttle-starts",
        json!({"image_id": ami, "times": 0}),
    );
    assert_eq!(error_type(err), "Transient");
    assert!(scans_of(&stack, &ami).await.is_empty());
    assert_eq!(stack.snapshot(&[&ami]).await, before);
}

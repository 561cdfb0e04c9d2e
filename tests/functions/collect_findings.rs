//! collect-findings against the local cloud, fed SQS records built from the
//! shared event fixtures (tests/fixtures/ondemand), as Inspector sends them.

use amiscan_core::lambda::Handler;
use amiscan_tests::{Stack, ACCOUNT};
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/ondemand/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn finding_event(scan_id: &str, ami: &str, n: u32) -> Value {
    let mut event = fixture("finding-event.json");
    let detail = &mut event["detail"];
    detail["scanId"] = json!(scan_id);
    detail["findingArn"] = json!(format!(
        "arn:aws:inspector2:us-east-1:{ACCOUNT}:finding/ondemand/{scan_id}/{n:020x}"
    ));
    detail["resources"][0]["id"] = json!(ami);
    event
}

fn completion_event(scan_id: &str, ami: &str, total: u64) -> Value {
    let mut event = fixture("complete-event.json");
    event["detail"]["scanId"] = json!(scan_id);
    event["detail"]["resourceId"] = json!(ami);
    event["detail"]["findingSeverityCounts"]["TOTAL"] = json!(total);
    event["resources"] = json!([ami]);
    event
}

fn batch(bodies: &[String]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(n, body)| {
            json!({"messageId": format!("m-{n}"), "receiptHandle": format!("r-{n}"), "body": body,
                   "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                   "eventSource": "aws:sqs", "eventSourceARN": format!("arn:aws:sqs:us-east-1:{ACCOUNT}:amiscan-findings"),
                   "awsRegion": "us-east-1"})
        })
        .collect();
    json!({ "Records": records })
}

/// Hands the bodies to the collector as one batch; none may fail. The
/// bucket's keys afterwards.
async fn collected(stack: &Stack, bodies: &[String]) -> Vec<String> {
    let out = stack
        .collect_findings()
        .handle(batch(bodies))
        .await
        .unwrap();
    assert!(out.batch_item_failures.is_empty(), "{out:?}");
    stack.cloud.object_keys(&stack.bucket).await
}

#[tokio::test]
async fn collect_findings_stages_each_finding_once_and_ignores_what_is_not_amiscans() {
    let stack = Stack::new("af-south-1").await;
    let (ami, started) = stack.started_snapshot_scan().await;
    let id = started.inspector_scan_id.clone().unwrap();
    let foreign = "00000000-0000-4000-8000-000000000000";
    let bodies: Vec<String> = [
        finding_event(&id, &ami, 1),
        finding_event(&id, &ami, 2),
        finding_event(&id, &ami, 1), // EventBridge delivered it twice
        finding_event(foreign, &ami, 3),
        json!({"detail-type": "EC2 Instance State-change Notification", "detail": {}}),
    ]
    .iter()
    .map(|v| v.to_string())
    .chain(["{not json".to_string()])
    .collect();
    let keys = collected(&stack, &bodies).await;
    let staged: Vec<_> = keys.iter().filter(|k| k.contains("/findings/")).collect();
    assert_eq!(staged.len(), 2, "{keys:?}");
    assert!(staged
        .iter()
        .all(|k| k.starts_with(&format!("staging/ondemand/{id}/findings/"))));
    assert!(
        !keys.iter().any(|k| k.contains(foreign)),
        "a foreign scan's finding is not stored"
    );
    let (text, _) = stack.cloud.object_text(&stack.bucket, staged[0]).await;
    let stored: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        stored["scanId"],
        json!(id),
        "the finding is stored as Inspector sent it"
    );

    // The completion, then a waiter whose execution no longer waits: both
    // are stored, and neither fails the batch.
    let waiter = json!({"amiscan_waiter": {"scan_id": started.scan_id.to_string(),
                        "inspector_scan_id": id, "task_token": "AAAA-not-a-live-token"}});
    let bodies = [
        completion_event(&id, &ami, 2).to_string(),
        waiter.to_string(),
    ];
    let keys = collected(&stack, &bodies).await;
    for name in ["complete.json", "waiter.json"] {
        assert!(
            keys.contains(&format!("staging/ondemand/{id}/{name}")),
            "{name}: {keys:?}"
        );
    }
    let (text, _) = stack
        .cloud
        .object_text(
            &stack.bucket,
            &format!("staging/ondemand/{id}/complete.json"),
        )
        .await;
    let outcome: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (
            outcome["scanStatus"].clone(),
            outcome["findingSeverityCounts"]["TOTAL"].clone()
        ),
        (json!("SUCCESSFUL"), json!(2))
    );
}

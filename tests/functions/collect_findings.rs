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
    // Every finding of finding_event is CRITICAL.
    event["detail"]["findingSeverityCounts"]["CRITICAL"] = json!(total);
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
    // One object for the batch's findings of the scan: two findings, named
    // by their count.
    let staged: Vec<_> = keys.iter().filter(|k| k.contains("/findings/")).collect();
    assert_eq!(staged.len(), 1, "{keys:?}");
    assert!(staged[0].starts_with(&format!("staging/ondemand/{id}/findings/2-")));
    assert!(
        !keys.iter().any(|k| k.contains(foreign)),
        "a foreign scan's finding is not stored"
    );
    let (text, _) = stack.cloud.object_text(&stack.bucket, staged[0]).await;
    let stored: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(stored.len(), 2, "the duplicate is staged once: {text}");
    assert!(
        stored.iter().all(|f| f["scanId"] == json!(id)),
        "each finding is stored as Inspector sent it"
    );
    // The same batch delivered again writes the same object.
    let again = collected(&stack, &bodies).await;
    assert_eq!(again, keys);

    // Another account's completion of the hub's scan (a member's, or a
    // stranger's) wakes nothing: a scan is woken by its own account only.
    for from in ["111111111111", "999999999999"] {
        let mut forged = completion_event(&id, &ami, 2);
        forged["account"] = json!(from);
        let out = stack
            .collect_findings()
            .handle(batch(&[forged.to_string()]))
            .await
            .unwrap();
        assert!(out.batch_item_failures.is_empty());
        let keys = stack.cloud.object_keys(&stack.bucket).await;
        assert!(
            !keys.iter().any(|k| k.ends_with("/complete.json")),
            "{from}: {keys:?}"
        );
    }

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

/// The export of a snapshot scan staged over several batches: what `export`
/// writes for a completion of `total` findings.
async fn export_snapshot(
    stack: &Stack,
    ami: &str,
    started: &amiscan_core::model::ScanContext,
    total: u64,
) -> amiscan_core::report::ScanSummary {
    let id = started.inspector_scan_id.clone().unwrap();
    let mut outcome = completion_event(&id, ami, total)["detail"].clone();
    outcome["source"] = json!("event");
    // Inspector's own record agrees: the scan is done.
    amiscan_tests::control(
        "/ondemand/finish",
        json!({"scan_id": id, "status": "SUCCESSFUL"}),
    );
    stack
        .export_report("CSV")
        .handle(json!({"scan": started, "snapshot": outcome}))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_finding_staged_by_two_batches_is_reported_once_and_a_changed_body_is_a_conflict() {
    let stack = Stack::new("ap-southeast-4").await;
    let (ami, started) = stack.started_snapshot_scan().await;
    let id = started.inspector_scan_id.clone().unwrap();
    let bodies = |ns: &[u32]| -> Vec<String> {
        ns.iter()
            .map(|n| finding_event(&id, &ami, *n).to_string())
            .collect()
    };
    // Finding 2 comes in both batches (SQS delivered it again).
    collected(&stack, &bodies(&[1, 2])).await;
    let keys = collected(&stack, &bodies(&[2, 3])).await;
    let staged: Vec<_> = keys.iter().filter(|k| k.contains("/findings/")).collect();
    assert_eq!(staged.len(), 2, "one object per batch: {keys:?}");
    let summary = export_snapshot(&stack, &ami, &started, 3).await;
    assert_eq!(
        (summary.finding_count, summary.findings_expected),
        (3, Some(3))
    );
    assert_eq!(summary.verdict.as_str(), "FAIL", "{summary:?}");
    let rows = stack
        .cloud
        .object_text(&stack.bucket, &summary.findings_key)
        .await
        .0;
    assert_eq!(rows.lines().count(), 3);
    assert!(
        !stack
            .cloud
            .object_keys(&stack.bucket)
            .await
            .iter()
            .any(|k| k.starts_with(&format!("staging/ondemand/{id}/findings/"))),
        "the staged batches are deleted after the report"
    );

    // A second scan whose CRITICAL finding 2 is forged first as a LOW,
    // CLOSED copy under its findingArn, then arrives as Inspector sent it:
    // which body is Inspector's cannot be told, and the real one fails the
    // AMI whichever came first: FAIL, never PASS.
    let stack = Stack::new("ap-southeast-5").await;
    let (ami, started) = stack.started_snapshot_scan().await;
    let id = started.inspector_scan_id.clone().unwrap();
    collected(&stack, &[finding_event(&id, &ami, 1).to_string()]).await;
    let mut forged = finding_event(&id, &ami, 2);
    forged["detail"]["severity"] = json!("LOW");
    forged["detail"]["status"] = json!("CLOSED");
    collected(&stack, &[forged.to_string()]).await;
    collected(&stack, &[finding_event(&id, &ami, 2).to_string()]).await;
    let summary = export_snapshot(&stack, &ami, &started, 2).await;
    assert_eq!(summary.verdict.as_str(), "FAIL", "{summary:?}");
    let reason = summary.reason.unwrap_or_default();
    assert!(reason.contains("different body"), "{reason}");
    assert!(reason.contains(&format!("{:020x}", 2)), "{reason}");
}

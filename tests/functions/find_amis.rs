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

/// EC2's "EC2 AMI State Change" event for `ami` (the sample's shape), as the
/// runs queue delivers it, with the weekly run's `{}` when `weekly`.
/// A runs-queue batch of EC2's creation events for `amis` (of the
/// emulator's account, in `region`), with the weekly run's `{}` if asked.
fn runs_batch(region: &str, amis: &[&str], weekly: bool) -> Value {
    let sample: Value =
        serde_json::from_str(include_str!("../../events/find-amis/ami-available.json")).unwrap();
    let mut bodies: Vec<Value> = amis
        .iter()
        .map(|ami| {
            let mut event = sample.clone();
            event["detail"]["ImageId"] = json!(ami);
            event["region"] = json!(region);
            event["resources"] = json!([format!("arn:aws:ec2:{region}::image/{ami}")]);
            event
        })
        .collect();
    if weekly {
        bodies.push(json!({}));
    }
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| json!({"messageId": format!("m-{i}"), "body": body.to_string()}))
        .collect();
    json!({ "Records": records })
}

#[tokio::test]
async fn find_amis_counts_running_executions_against_the_cap() {
    let stack = Stack::new("eu-south-2").await;
    let machine = stack
        .cloud
        .create_waiting_state_machine("amiscan-launch-scan-waiting")
        .await;
    let names: Vec<String> = (0..4).map(|i| format!("golden-{i}")).collect();
    let amis = stack
        .cloud
        .register_amis(&names, &[(SELECTION_KEY, SELECTION_VALUE)])
        .await;
    let today = Utc::now().format("%Y%m%d");
    // Yesterday's scan of the first is still running; today's of the second.
    let yesterday = format!("{}-20261130", amis[0]);
    stack.cloud.start_execution(&machine, &yesterday).await;
    stack
        .cloud
        .start_execution(&machine, &format!("{}-{today}", amis[1]))
        .await;

    let out = stack
        .find_amis_on(&machine, 3, &[])
        .handle(json!({}))
        .await
        .unwrap();
    assert_eq!(out.in_flight, 2);
    assert_eq!(out.started.len(), 1, "{out:?}");
    assert_eq!(out.already_running.len(), 1);
    assert_eq!(out.already_running[0].ami_id, amis[1]);
    let reasons: BTreeMap<&str, &str> = out
        .skipped
        .iter()
        .map(|s| (s.ami_id.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(
        reasons[amis[0].as_str()],
        format!("already being scanned by execution {yesterday}")
    );
    assert_eq!(reasons.len(), 2);
    assert!(reasons
        .values()
        .any(|r| *r == "concurrent-scan cap of 3 reached; first in line next run"));
    // Every tagged AMI was never scanned: all four are overdue, and the
    // deferred one is the one the summary says is not being scanned (the
    // first is, by yesterday's execution).
    assert_eq!(out.overdue.len(), 4);
    assert_eq!(out.overdue.iter().filter(|o| !o.scanning).count(), 1);
    // The run started one execution: three now run, the cap.
    let running = stack.cloud.executions(&machine).await;
    assert_eq!(running.len(), 3);
    let messages = stack.notifications();
    assert_eq!(messages.len(), 1);
    let (_, body, _) = message_of(&messages[0]);
    assert_eq!(body["in_flight"], 2);
    assert_eq!(body["counts"]["overdue_not_scanning"], 1);
}

#[tokio::test]
async fn an_overdue_pass_that_no_scan_of_the_run_reaches_is_tagged_stale() {
    let stack = Stack::new("ap-east-2").await;
    let machine = stack
        .cloud
        .create_waiting_state_machine("amiscan-launch-scan-waiting")
        .await;
    let recent = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut amis = BTreeMap::new();
    for (label, verdict, last) in [
        ("oldest-pass", "PASS", "2026-01-01T00:00:00.000Z"),
        ("old-pass", "PASS", "2026-02-01T00:00:00.000Z"),
        ("old-fail", "FAIL", "2026-02-01T00:00:00.000Z"),
        ("busy-pass", "PASS", "2026-02-01T00:00:00.000Z"),
        ("recent-pass", "PASS", recent.as_str()),
    ] {
        let ami = stack
            .cloud
            .register_ami(
                label,
                &[
                    (SELECTION_KEY, SELECTION_VALUE),
                    ("amiscan:verdict", verdict),
                    ("amiscan:last-scan", last),
                ],
            )
            .await;
        amis.insert(label, ami);
    }
    // Yesterday's scan of one is still running: it counts against the cap of
    // 2, so the run starts one scan, of the AMI scanned longest ago.
    let yesterday = format!("{}-20261130", amis["busy-pass"]);
    stack.cloud.start_execution(&machine, &yesterday).await;
    let out = stack
        .find_amis_on(&machine, 2, &[])
        .handle(json!({}))
        .await
        .unwrap();
    assert_eq!(out.started.len(), 1, "{out:?}");
    assert_eq!(out.started[0].ami_id, amis["oldest-pass"]);
    let marked: Vec<&str> = out
        .overdue
        .iter()
        .filter(|o| o.marked_stale)
        .map(|o| o.ami_id.as_str())
        .collect();
    assert_eq!(marked, [amis["old-pass"].as_str()]);
    assert!(out.not_marked_stale.is_empty());
    let tags = stack.cloud.image_tags(&amis["old-pass"]).await;
    assert_eq!(tags["amiscan:verdict"], "STALE");
    assert!(tags["amiscan:reason"].contains("older than MaxScanAgeDays (7 days)"));
    assert_eq!(tags["amiscan:last-scan"], "2026-02-01T00:00:00.000Z");
    // A FAIL stays FAIL; a recent PASS stands; a started or running scan
    // marks its own AMI when it starts (tag-ami), not find-amis.
    for (label, verdict) in [
        ("old-fail", "FAIL"),
        ("recent-pass", "PASS"),
        ("oldest-pass", "PASS"),
        ("busy-pass", "PASS"),
    ] {
        assert_eq!(
            stack.cloud.image_tags(&amis[label]).await["amiscan:verdict"],
            verdict,
            "{label}"
        );
    }
    let messages = stack.notifications();
    let (_, body, _) = message_of(&messages[0]);
    assert_eq!(body["counts"]["marked_stale"], 1);
}

#[tokio::test]
async fn find_amis_scans_new_amis_as_scan_on_create_says() {
    let stack = Stack::new("ap-southeast-3").await;
    let tagged = stack
        .cloud
        .register_ami("packer-build", &[(SELECTION_KEY, SELECTION_VALUE)])
        .await;
    let untagged = stack.cloud.register_ami("scratch", &[]).await;

    // TAGGED: the tagged one is scanned; the untagged one is skipped, and a
    // batch of only untagged AMIs tells nobody.
    let quiet = stack
        .find_amis(20)
        .handle(runs_batch(&stack.cloud.region, &[&untagged], false))
        .await
        .unwrap();
    assert!(quiet.started.is_empty());
    assert!(quiet.skipped[0]
        .reason
        .starts_with("not tagged InspectorScan=true"));
    assert!(stack.notifications().is_empty());
    // A duplicated event is one scan.
    let out = stack
        .find_amis(20)
        .handle(runs_batch(
            &stack.cloud.region,
            &[&tagged, &untagged, &tagged],
            false,
        ))
        .await
        .unwrap();
    let started: Vec<&str> = out.started.iter().map(|s| s.ami_id.as_str()).collect();
    assert_eq!(started, [tagged.as_str()]);
    let messages = stack.notifications();
    assert_eq!(messages.len(), 1);
    let (_, body, event_type) = message_of(&messages[0]);
    assert_eq!(event_type, "SCAN_BATCH_STARTED");
    assert_eq!(body["selection"], "2 new AMIs");

    // The weekly run in the same batch covers every tagged AMI as well:
    // today's scan of the new one already exists.
    let weekly = stack
        .find_amis(20)
        .handle(runs_batch(&stack.cloud.region, &[&untagged], true))
        .await
        .unwrap();
    assert!(weekly.started.is_empty());
    assert_eq!(weekly.already_running.len(), 1);

    // ALL: the untagged one too; OFF: none.
    let all = stack
        .find_amis_on(&stack.launch_machine, 20, &[("SCAN_ON_CREATE", "ALL")])
        .handle(runs_batch(&stack.cloud.region, &[&untagged], false))
        .await
        .unwrap();
    assert_eq!(all.started.len(), 1);
    assert_eq!(all.started[0].ami_id, untagged);
    let off = stack
        .find_amis_on(&stack.launch_machine, 20, &[("SCAN_ON_CREATE", "OFF")])
        .handle(json!({"ami_ids": [], "x": 1}))
        .await;
    assert!(off.is_err(), "bad input is refused before any call");
    let before = stack.cloud.executions(&stack.launch_machine).await.len();
    let off = stack
        .find_amis_on(&stack.launch_machine, 20, &[("SCAN_ON_CREATE", "OFF")])
        .handle(runs_batch(&stack.cloud.region, &[&tagged], false))
        .await
        .unwrap();
    assert!(off.skipped[0].reason.starts_with("ScanOnCreate is OFF"));
    assert_eq!(
        stack.cloud.executions(&stack.launch_machine).await.len(),
        before
    );
}

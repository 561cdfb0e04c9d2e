use super::*;

const FINDING: &str = include_str!("../../../../../tests/fixtures/ondemand/finding-event.json");
const COMPLETE: &str = include_str!("../../../../../tests/fixtures/ondemand/complete-event.json");

#[test]
fn records_are_told_apart_by_detail_type_and_checked() {
    match classify(FINDING) {
        Item::Finding { scan_id, finding } => {
            assert_eq!(scan_id, "8b1e4a9c-2f3d-4e5a-9b6c-7d8e9f0a1b2c");
            assert!(finding.finding_arn.ends_with("/3a9e0c5b7d1f4e2a8c6b"));
        }
        other => panic!("{other:?}"),
    }
    let mut forged: Value = serde_json::from_str(COMPLETE).unwrap();
    forged["source"] = "inspector2.ami.ondemand".into();
    assert!(
        matches!(classify(&forged.to_string()), Item::Refused(why) if why.contains("aws.inspector2")),
        "only AWS can send an aws.* source: any other completion is forged"
    );
    match classify(COMPLETE) {
        Item::Completion { outcome, .. } => {
            assert_eq!(outcome.scan_status, "SUCCESSFUL");
            assert_eq!(outcome.finding_severity_counts.unwrap().total, 1);
            assert_eq!(outcome.source.as_deref(), Some("event"));
        }
        other => panic!("{other:?}"),
    }
    let mut foreign: Value = serde_json::from_str(FINDING).unwrap();
    foreign["detail-type"] = "EC2 Instance State-change Notification".into();
    assert!(matches!(classify(&foreign.to_string()), Item::Other(_)));
    let mut no_arn: Value = serde_json::from_str(FINDING).unwrap();
    no_arn["detail"]
        .as_object_mut()
        .unwrap()
        .remove("findingArn");
    assert!(
        matches!(classify(&no_arn.to_string()), Item::Malformed(m) if m.contains("findingArn"))
    );
    let mut escape: Value = serde_json::from_str(FINDING).unwrap();
    escape["detail"]["scanId"] = "../../scans".into();
    assert!(matches!(classify(&escape.to_string()), Item::Malformed(m) if m.contains("scanId")));
    assert!(matches!(classify("not json"), Item::Malformed(_)));
    assert!(matches!(classify("[1]"), Item::Malformed(_)));
    let waiter = serde_json::json!({"amiscan_waiter": {
        "scan_id": "ami-0123456789abcdef0-20261123", "inspector_scan_id": "s-1", "task_token": "t"}});
    assert!(matches!(classify(&waiter.to_string()), Item::Waiter(_)));
}

#[test]
fn an_instance_scan_delivery_is_checked_against_its_waiter() {
    let event: Value = serde_json::from_str(include_str!(
        "../../../../../events/create-scan-rule/inspector-scan-event.json"
    ))
    .unwrap();
    let message = |event: &Value, instance: &str| {
        serde_json::json!({"amiscan_instance_scan": {
            "scan_id": "ami-0123456789abcdef0-20261127", "instance_id": instance, "task_token": "t"},
            "event": event})
        .to_string()
    };
    match classify(&message(&event, "i-0123456789abcdef0")) {
        Item::InstanceScanned(m) => {
            assert_eq!(m.event_time().as_deref(), Some("2026-11-27T13:41:10Z"));
            // Of this account, for a waiter that names none.
            let own = event["account"].as_str().unwrap();
            assert_eq!(foreign_instance_event(&m, own), None);
            let refused = foreign_instance_event(&m, "999999999999").unwrap();
            assert!(refused.contains(own), "{refused}");
            // A member's instance: its event must be of that account, not
            // of the hub's nor of another member's.
            let mut member = (*m).clone();
            member.amiscan_instance_scan.account_id = Some("111111111111".parse().unwrap());
            assert!(foreign_instance_event(&member, own).is_some());
            member.event["account"] = "111111111111".into();
            assert_eq!(foreign_instance_event(&member, own), None);
            member.event["account"] = "222222222222".into();
            assert!(foreign_instance_event(&member, own).is_some());
        }
        other => panic!("{other:?}"),
    }
    // Another instance's event, or not Inspector's completion: refused,
    // naming the field.
    let other = classify(&message(&event, "i-0fedcba9876543210"));
    assert!(
        matches!(&other, Item::Malformed(m) if m.contains("event.detail.instance-id")),
        "{other:?}"
    );
    let mut pending = event.clone();
    pending["detail"]["scan-status"] = "INITIAL_SCAN_PENDING".into();
    let pending = classify(&message(&pending, "i-0123456789abcdef0"));
    assert!(
        matches!(&pending, Item::Malformed(m) if m.contains("event.detail.scan-status")),
        "{pending:?}"
    );
    let mut forged = event.clone();
    forged["source"] = "someone.else".into();
    let forged = classify(&message(&forged, "i-0123456789abcdef0"));
    assert!(
        matches!(&forged, Item::Malformed(m) if m.contains("event.source")),
        "{forged:?}"
    );
}

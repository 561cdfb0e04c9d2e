//! Every sample in `events/` is what its function or state machine accepts
//! or returns, so the README's commands and the documented shapes stay true.

use std::path::Path;

use amiscan_core::model::{parse_event, ReportInput, RuleName, RuleRequest, ScanContext};
use amiscan_core::ops::check_scan::{CheckResult, SnapshotCheck};
use amiscan_core::ops::cleanup::{self, CleanupReport};
use amiscan_core::ops::collect_findings::{self, BatchResponse, Item, SqsBatch};
use amiscan_core::ops::create_scan_rule;
use amiscan_core::ops::find_amis::{self, FindOutput};
use amiscan_core::ops::tag_ami::{TagOutput, TagRequest};
use amiscan_core::report::ScanSummary;
use serde_json::Value;

fn sample(path: &str) -> Value {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(path);
    serde_json::from_str(&std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{path}: {e}")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn samples(dir: &str) -> Vec<(String, Value)> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(dir);
    let mut out: Vec<_> = std::fs::read_dir(full)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .map(|name| (name.clone(), sample(&format!("{dir}/{name}"))))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_function_accepts_its_sample_inputs_and_its_outputs_parse() {
    for (name, event) in samples("find-amis") {
        if name == "output.json" {
            serde_json::from_value::<FindOutput>(event).unwrap();
        } else {
            find_amis::parse_request(event).unwrap_or_else(|e| panic!("find-amis/{name}: {e}"));
        }
    }
    for (name, event) in samples("create-scan-rule") {
        match name.as_str() {
            "request.json" => drop(parse_event::<RuleRequest>(event).unwrap()),
            "output.json" => drop(serde_json::from_value::<RuleName>(event).unwrap()),
            _ => assert_eq!(event["detail-type"], "Inspector2 Scan", "{name}"),
        }
    }
    for dir in ["launch-instance", "check-scan"] {
        for (name, event) in samples(dir) {
            if name.starts_with("output") && dir == "check-scan" {
                serde_json::from_value::<CheckResult>(event).unwrap();
                continue;
            }
            if name.starts_with("snapshot") && dir == "check-scan" {
                parse_event::<SnapshotCheck>(event).unwrap_or_else(|e| panic!("{dir}/{name}: {e}"));
                continue;
            }
            parse_event::<ScanContext>(event).unwrap_or_else(|e| panic!("{dir}/{name}: {e}"));
        }
    }
    let export: ReportInput = parse_event(sample("export-report/scan-complete.json")).unwrap();
    export.scan.require_instance("scan").unwrap();
    serde_json::from_value::<ScanSummary>(sample("export-report/output.json")).unwrap();
    let snapshot: ReportInput =
        parse_event(sample("export-report/snapshot-complete.json")).unwrap();
    assert!(snapshot.scan.inspector_scan_id.is_some() && snapshot.snapshot.is_some());
    let start: ScanContext = parse_event(sample("start-scan/scan.json")).unwrap();
    assert!(
        start.inspector_scan_id.is_none(),
        "start-scan starts from a scan without one"
    );
    let started: ScanContext = parse_event(sample("start-scan/output.json")).unwrap();
    assert!(started.inspector_scan_id.is_some() && started.wait_seconds.is_some());
    let batch: SqsBatch = parse_event(sample("collect-findings/batch.json")).unwrap();
    let kinds: Vec<_> = batch
        .records
        .iter()
        .map(|r| match collect_findings::classify(&r.body) {
            Item::Finding { .. } => "finding",
            Item::Waiter(_) => "waiter",
            Item::Completion { .. } => "completion",
            Item::InstanceScanned(_) => "instance scanned",
            other => panic!("collect-findings/batch.json: {other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        ["finding", "waiter", "completion", "instance scanned"]
    );
    serde_json::from_value::<BatchResponse>(sample("collect-findings/output.json")).unwrap();
    for (name, event) in samples("tag-ami") {
        if name == "output.json" {
            serde_json::from_value::<TagOutput>(event).unwrap();
        } else {
            parse_event::<TagRequest>(event).unwrap_or_else(|e| panic!("tag-ami/{name}: {e}"));
        }
    }
    for (name, event) in samples("cleanup") {
        if name == "output.json" {
            serde_json::from_value::<CleanupReport>(event).unwrap();
        } else {
            cleanup::parse_request(event).unwrap_or_else(|e| panic!("cleanup/{name}: {e}"));
        }
    }
}

#[test]
fn the_state_machine_samples_carry_what_their_first_states_read() {
    let launch = sample("launch-scan/input.json");
    parse_event::<ScanContext>(launch["scan"].clone()).unwrap();
    let report: ReportInput = parse_event(sample("report-and-cleanup/input.json")).unwrap();
    report.scan.require_instance("scan").unwrap();
    assert!(report.scan.rule_name.is_some());
}

#[test]
fn the_rule_turns_inspectors_event_into_the_collectors_wake_up() {
    let request: RuleRequest = parse_event(sample("create-scan-rule/request.json")).unwrap();
    let event = sample("create-scan-rule/inspector-scan-event.json");
    let transformer =
        create_scan_rule::input_transformer(&request.scan, &request.task_token, None).unwrap();
    // What EventBridge does: the whole event, as JSON, in its placeholder.
    let rendered = transformer
        .input_template()
        .replace(create_scan_rule::WHOLE_EVENT, &event.to_string());
    let body = serde_json::from_str::<Value>(&rendered)
        .unwrap()
        .to_string();
    match collect_findings::classify(&body) {
        Item::InstanceScanned(message) => {
            assert_eq!(message.amiscan_instance_scan.task_token, request.task_token);
            assert_eq!(message.event, event);
        }
        other => panic!("{other:?}"),
    }
}

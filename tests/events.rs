//! Every sample in `events/` is what its function or state machine accepts
//! or returns, so the README's commands and the documented shapes stay true.

use std::path::Path;

use amiscan_core::cleanup::{self, CleanupReport};
use amiscan_core::deadline::CheckResult;
use amiscan_core::export::ExportRequest;
use amiscan_core::find::{self, FindOutput};
use amiscan_core::model::{parse_event, ScanContext};
use amiscan_core::report::ScanSummary;
use amiscan_core::tagging::{TagOutput, TagRequest};
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
            find::parse_request(event).unwrap_or_else(|e| panic!("find-amis/{name}: {e}"));
        }
    }
    for dir in ["launch-instance", "create-scan-rule", "check-scan"] {
        for (name, event) in samples(dir) {
            if name.starts_with("output") && dir == "check-scan" {
                serde_json::from_value::<CheckResult>(event).unwrap();
                continue;
            }
            let scan: ScanContext =
                parse_event(event).unwrap_or_else(|e| panic!("{dir}/{name}: {e}"));
            scan.validate("")
                .unwrap_or_else(|e| panic!("{dir}/{name}: {e}"));
        }
    }
    let export: ExportRequest = parse_event(sample("export-report/scan-complete.json")).unwrap();
    export.scan.require_instance("scan").unwrap();
    serde_json::from_value::<ScanSummary>(sample("export-report/output.json")).unwrap();
    for (name, event) in samples("tag-ami") {
        if name == "output.json" {
            serde_json::from_value::<TagOutput>(event).unwrap();
        } else {
            let request: TagRequest =
                parse_event(event).unwrap_or_else(|e| panic!("tag-ami/{name}: {e}"));
            request.scan.validate("scan").unwrap();
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
    let scan: ScanContext = serde_json::from_value(launch["scan"].clone()).unwrap();
    scan.validate("scan").unwrap();
    let report: ExportRequest = parse_event(sample("report-and-cleanup/input.json")).unwrap();
    report.scan.require_instance("scan").unwrap();
    assert!(report.scan.rule_name.is_some());
}

#[test]
fn the_rule_turns_inspectors_event_into_the_report_machines_input() {
    let scan: ScanContext = serde_json::from_value(sample("create-scan-rule/output.json")).unwrap();
    let event = sample("report-and-cleanup/inspector-scan-event.json");
    let transformer = amiscan_core::rule::input_transformer(&scan).unwrap();
    // What EventBridge does: each path's value, as JSON, in its placeholder.
    let mut rendered = transformer.input_template().to_string();
    for (name, path) in transformer.input_paths_map().unwrap() {
        let mut value = &event;
        for part in path.trim_start_matches("$.").split('.') {
            value = &value[part];
        }
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        rendered = rendered.replace(&format!("<{name}>"), &text);
    }
    let input: Value = serde_json::from_str(&rendered).unwrap();
    let expected = sample("report-and-cleanup/input.json");
    assert_eq!(input["scan"], expected["scan"]);
    assert_eq!(
        input["inspector"]["severity_counts"],
        expected["inspector"]["severity_counts"]
    );
    assert_eq!(
        input["inspector"]["event_time"],
        expected["inspector"]["event_time"]
    );
}

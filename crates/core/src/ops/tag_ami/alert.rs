//! The alert that goes with each tag write, worded from the data: what the
//! state machines' one publishing state sends. Every alert keeps its
//! `event_type` and `severity` attributes; `default` carries JSON for
//! programs and `email` a few lines for people.

use serde_json::{json, Value};

use super::{reason_text, TagRequest};
use crate::model::{ScanStatus, Verdict};
use crate::notify::{EventType, Notification};
use crate::report::ScanSummary;

/// The alert for a tag write, and a second one to send after it: a
/// vulnerable AMI gets `AMI_VULNERABLE`, then the `SCAN_COMPLETED` every
/// completed scan gets. `tagged` is false when a failure found its AMI gone.
pub fn alerts_for(request: &TagRequest, tagged: bool) -> (Notification, Option<Notification>) {
    let scan = &request.scan;
    let ami = scan.ami_id.as_str();
    let ids = format!("Scan: {}", scan.scan_id);
    let why = request
        .reason
        .as_ref()
        .map(reason_text)
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "no reason given".into());
    match (request.status, &request.summary) {
        _ if request.resource_gone => (
            note(
                EventType::ScanFailed,
                "INFO",
                format!("amiscan: {ami} was deregistered (or its snapshots deleted) during its scan"),
                json!({ "scan": scan, "reason": request.reason }),
                format!(
                    "amiscan: {ami} was deregistered (or its snapshots deleted) during its scan.\n\n{ids}\nNothing was tagged; there is nothing left to scan."
                ),
            ),
            None,
        ),
        (ScanStatus::InProgress, _) => {
            let (subject, first) = match (&scan.instance_id, &scan.inspector_scan_id) {
                (Some(instance), _) => (
                    format!("amiscan: scanning {ami} on {instance}"),
                    format!("amiscan started scanning {ami} on instance {instance}."),
                ),
                (None, Some(inspector)) => (
                    format!("amiscan: scanning {ami} from its snapshots"),
                    format!("amiscan started a snapshot scan of {ami} (Inspector scan {inspector})."),
                ),
                (None, None) => (
                    format!("amiscan: scanning {ami}"),
                    format!("amiscan started scanning {ami}."),
                ),
            };
            (
                note(
                    EventType::ScanStarted,
                    "INFO",
                    subject,
                    json!(scan),
                    format!("{first}\n\n{ids}\nAnother message follows when the scan ends."),
                ),
                None,
            )
        }
        (ScanStatus::Complete | ScanStatus::NotScannable, Some(summary)) => result(summary),
        (ScanStatus::Failed, _) => {
            let state = request.failed_state.as_deref().unwrap_or("an unnamed state");
            (
                note(
                    EventType::ScanFailed,
                    "ERROR",
                    format!("amiscan: a scan failed in {state}"),
                    json!({ "scan": scan, "failed_state": state, "error": request.reason }),
                    format!(
                        "amiscan: the scan of {ami} failed in state {state}.\n\n{ids}\nError: {why}\n{}",
                        if tagged {
                            "The AMI is tagged FAILED; the execution history has the details."
                        } else {
                            "The AMI no longer exists, so nothing was tagged; the execution history has the details."
                        }
                    ),
                ),
                None,
            )
        }
        (status, _) => (
            note(
                EventType::ScanFailed,
                "WARNING",
                format!("amiscan: {ami} was not scanned ({status})"),
                json!({ "scan": scan, "status": status.as_str(), "reason": request.reason }),
                format!(
                    "amiscan could not complete the scan of {ami}: {status}.\n\n{ids}\nWhat Inspector said: {why}\nThe AMI is tagged with this status; the weekly run tries again."
                ),
            ),
            None,
        ),
    }
}

/// A report's alerts: the verdict's, with a failed cleanup said in the same
/// message (the sweep removes what is left).
fn result(summary: &ScanSummary) -> (Notification, Option<Notification>) {
    let ami = summary.ami_id.as_str();
    let digest = &summary.digest;
    let counts = format!(
        "{} critical, {} high",
        summary.counts.critical, summary.counts.high
    );
    let body = json!(summary);
    if let Some(error) = &summary.cleanup_error {
        let (event_type, subject, first) = if summary.alert {
            (
                EventType::AmiVulnerable,
                format!("amiscan: {ami} is vulnerable; its cleanup failed, left to the sweep"),
                format!("amiscan: {ami} is vulnerable, and its scan instance could not be cleaned up (the hourly sweep will)."),
            )
        } else {
            (
                EventType::ScanCompleted,
                format!(
                    "amiscan: {ami} scanned, {}; its cleanup failed, left to the sweep",
                    summary.verdict.as_str()
                ),
                format!("amiscan scanned {ami}, but its scan instance could not be cleaned up (the hourly sweep will)."),
            )
        };
        let mut without = summary.clone();
        without.cleanup_error = None;
        return (
            note(
                event_type,
                &summary.highest_severity,
                subject,
                json!({ "scan_id": summary.scan_id, "ami_id": ami, "summary": without, "cleanup_error": error }),
                format!("{first}\n\n{digest}\nCleanup error: {}", reason_text(error)),
            ),
            None,
        );
    }
    let completed = || {
        note(
            EventType::ScanCompleted,
            &summary.highest_severity,
            format!(
                "amiscan: {ami} scanned, {} ({counts})",
                summary.verdict.as_str()
            ),
            body.clone(),
            format!("amiscan scanned {ami}.\n\n{digest}"),
        )
    };
    match summary.verdict {
        Verdict::NotScannable => (
            note(
                EventType::ScanFailed,
                "WARNING",
                format!("amiscan: Inspector could not scan {ami}"),
                body.clone(),
                format!("amiscan: Inspector could not scan {ami}.\n\n{digest}"),
            ),
            None,
        ),
        Verdict::Incomplete => {
            let expected = summary
                .findings_expected
                .map_or("an unknown number".to_string(), |e| e.to_string());
            (
                note(
                    EventType::ScanIncomplete,
                    "WARNING",
                    format!(
                        "amiscan: {ami} scan incomplete ({} findings arrived, {expected} expected)",
                        summary.finding_count
                    ),
                    body.clone(),
                    format!(
                        "amiscan: the scan of {ami} is incomplete; it is not a PASS.\n\n{digest}"
                    ),
                ),
                None,
            )
        }
        _ if summary.alert => (
            note(
                EventType::AmiVulnerable,
                &summary.highest_severity,
                format!("amiscan: {ami} is vulnerable ({counts})"),
                body.clone(),
                format!("amiscan: {ami} is vulnerable.\n\n{digest}"),
            ),
            Some(completed()),
        ),
        _ => (completed(), None),
    }
}

fn note(
    event_type: EventType,
    severity: &str,
    subject: String,
    body: Value,
    text: String,
) -> Notification {
    Notification {
        subject,
        event_type,
        severity: severity.to_string(),
        body,
        text,
        place: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_event;

    fn request(name: &str) -> TagRequest {
        parse_event(super::super::tests::sample(name)).unwrap()
    }

    fn alerts_for_test(request: &TagRequest) -> (Notification, Option<Notification>) {
        alerts_for(request, true)
    }

    fn kind(note: &Notification) -> (&'static str, &str) {
        (note.event_type.as_str(), note.severity.as_str())
    }

    #[test]
    fn a_start_names_the_instance_or_inspectors_scan() {
        let mut start = request("in-progress.json");
        let (note, more) = alerts_for_test(&start);
        assert_eq!(kind(&note), ("SCAN_STARTED", "INFO"));
        assert!(note.subject.ends_with("on i-0123456789abcdef0") && more.is_none());
        assert_eq!(note.body["ami_id"], "ami-0123456789abcdef0");
        start.scan.instance_id = None;
        start.scan.inspector_scan_id = Some("8b1e4a9c".into());
        let (note, _) = alerts_for_test(&start);
        assert!(note.subject.ends_with("from its snapshots") && note.text.contains("8b1e4a9c"));
    }

    #[test]
    fn a_vulnerable_ami_gets_its_alert_then_the_scan_completed() {
        let mut done = request("complete.json");
        let summary = done.summary.as_mut().unwrap();
        summary.alert = true;
        summary.digest = "1 new: CVE-2026-1 (CRITICAL)".into();
        let highest = summary.highest_severity.clone();
        let (first, second) = alerts_for_test(&done);
        assert_eq!(first.event_type, EventType::AmiVulnerable);
        assert_eq!(first.severity, highest);
        assert!(
            first.text.ends_with("1 new: CVE-2026-1 (CRITICAL)"),
            "the digest"
        );
        assert_eq!(first.body["verdict"], "FAIL");
        let second = second.expect("SCAN_COMPLETED follows");
        assert_eq!(second.event_type, EventType::ScanCompleted);
        assert!(
            second.subject.contains("scanned, FAIL"),
            "{}",
            second.subject
        );
        done.summary.as_mut().unwrap().alert = false;
        let (only, none) = alerts_for_test(&done);
        assert_eq!((only.event_type, none), (EventType::ScanCompleted, None));
    }

    #[test]
    fn a_failed_cleanup_is_said_in_the_one_result_alert() {
        let mut done = request("complete.json");
        let summary = done.summary.as_mut().unwrap();
        summary.alert = true;
        summary.cleanup_error =
            Some(serde_json::json!({"Error": "AwsError", "Cause": "throttled"}));
        let (note, more) = alerts_for_test(&done);
        assert!(more.is_none());
        assert_eq!(note.event_type, EventType::AmiVulnerable);
        assert!(note.subject.contains("cleanup failed"));
        assert_eq!(note.body["cleanup_error"]["Error"], "AwsError");
        assert_eq!(note.body["summary"]["verdict"], "FAIL");
        assert!(note.body["summary"].get("cleanup_error").is_none());
        assert!(note.text.ends_with("Cleanup error: AwsError: throttled"));
    }

    #[test]
    fn incomplete_and_unreadable_scans_warn_with_the_numbers_or_the_reason() {
        let mut done = request("complete.json");
        let summary = done.summary.as_mut().unwrap();
        summary.verdict = Verdict::Incomplete;
        summary.finding_count = 2;
        summary.findings_expected = Some(3);
        let (note, _) = alerts_for_test(&done);
        assert_eq!(kind(&note), ("SCAN_INCOMPLETE", "WARNING"));
        assert!(note.subject.ends_with("(2 findings arrived, 3 expected)"));
        done.summary.as_mut().unwrap().findings_expected = None;
        assert!(alerts_for_test(&done)
            .0
            .subject
            .contains("an unknown number expected"));
        done.summary.as_mut().unwrap().verdict = Verdict::NotScannable;
        let (note, _) = alerts_for_test(&done);
        assert_eq!(kind(&note), ("SCAN_FAILED", "WARNING"));
        assert!(note
            .subject
            .starts_with("amiscan: Inspector could not scan"));
    }

    #[test]
    fn endings_without_a_report_say_where_and_why() {
        let failed = request("failed.json");
        let mut failed_in = failed.clone();
        failed_in.failed_state = Some("Launch Scan Instance".into());
        let (note, _) = alerts_for_test(&failed_in);
        assert_eq!(kind(&note), ("SCAN_FAILED", "ERROR"));
        assert_eq!(
            note.subject,
            "amiscan: a scan failed in Launch Scan Instance"
        );
        assert_eq!(note.body["error"]["Error"], "CapacityUnavailable");
        assert!(note
            .text
            .contains("Error: CapacityUnavailable: no capacity"));
        let timed_out = request("timed-out.json");
        let (note, _) = alerts_for_test(&timed_out);
        assert_eq!(kind(&note), ("SCAN_FAILED", "WARNING"));
        assert!(note.subject.ends_with("was not scanned (TIMED_OUT)"));
        let mut gone = failed;
        gone.resource_gone = true;
        let (note, _) = alerts_for_test(&gone);
        assert_eq!(kind(&note), ("SCAN_FAILED", "INFO"));
        assert!(note.subject.contains("deregistered"));
    }

    #[test]
    fn every_subject_fits_sns_at_its_longest() {
        let mut failed = request("failed.json");
        failed.failed_state = Some("S".repeat(80));
        let alert = alerts_for_test(&failed).0.publishable().unwrap();
        assert!(alert.subject.len() <= 100 && alert.subject.is_ascii());
    }
}

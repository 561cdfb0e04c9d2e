//! The run summary: its JSON, its text, and whether it is worth an alert.

#[allow(unused_imports)]
use super::*;

/// Whether a skip is the cap's (the AMI waits for the next run).
pub(crate) fn deferred(skip: &Skipped) -> bool {
    skip.reason.starts_with("concurrent-scan cap of")
}

/// Whether the run tells the topic: always, except a creation-only run that
/// started, deferred and failed nothing (an untagged AMI became available).
pub fn worth_alerting(output: &FindOutput, request: &FindRequest) -> bool {
    !request.creation_only()
        || !output.started.is_empty()
        || !output.failed.is_empty()
        || !output.ignored.is_empty()
        || output.skipped.iter().any(deferred)
}

/// The run's summary message.
pub fn summary(
    output: &FindOutput,
    settings: &FindSettings,
    request: &FindRequest,
) -> Notification {
    let mut parts = Vec::new();
    if request.tagged {
        parts.push(format!(
            "AMIs tagged {}={}",
            settings.selection_tag_key, settings.selection_tag_value
        ));
    }
    if !request.named.is_empty() {
        parts.push(format!("{} requested AMIs", request.named.len()));
    }
    if !request.created.is_empty() {
        parts.push(format!("{} new AMIs", request.created.len()));
    }
    let selection = if parts.is_empty() {
        "no AMIs".to_string()
    } else {
        parts.join(" and ")
    };
    let overdue_left = output.overdue.iter().filter(|o| !o.scanning).count();
    let (event_type, subject) = if output.found == 0 {
        (
            EventType::NothingToScan,
            format!("amiscan: nothing to scan, no {selection}"),
        )
    } else if output.started.is_empty() {
        (
            EventType::NothingToScan,
            format!(
                "amiscan: no scan started ({} found, {} already running, {} skipped)",
                output.found,
                output.already_running.len(),
                output.skipped.len()
            ),
        )
    } else {
        (
            EventType::ScanBatchStarted,
            format!(
                "amiscan: started {} scans ({} found, {} skipped)",
                output.started.len(),
                output.found,
                output.skipped.len()
            ),
        )
    };
    let severity = if !output.failed.is_empty()
        || !output.ignored.is_empty()
        || !output.not_marked_stale.is_empty()
        || output.exceptions_error.is_some()
        || !output.not_reached.is_empty()
        || !output.ous_not_listed.is_empty()
    {
        "ERROR"
    } else if overdue_left > 0 || !output.expiring.is_empty() || !output.not_onboarded.is_empty() {
        "WARNING"
    } else {
        "INFO"
    };
    let text = summary_text(output, settings, &selection);
    Notification {
        subject: subject.clone(),
        event_type,
        severity: severity.into(),
        text: format!("{subject}\n\n{text}"),
        place: None,
        body: json!({
            "event_type": event_type,
            "selection": selection,
            "found": output.found,
            "in_flight": output.in_flight,
            "max_scan_age_days": settings.max_scan_age_days,
            "places": output.places,
            "not_onboarded": output.not_onboarded,
            "not_reached": output.not_reached,
            "ous_not_listed": output.ous_not_listed,
            "counts": {
                "started": output.started.len(),
                "already_running": output.already_running.len(),
                "skipped": output.skipped.len(),
                "failed": output.failed.len(),
                "overdue": output.overdue.len(),
                "overdue_not_scanning": overdue_left,
                "marked_stale": output.overdue.iter().filter(|o| o.marked_stale).count(),
                "not_marked_stale": output.not_marked_stale.len(),
                "ignored": output.ignored.len(),
                "expiring": output.expiring.len(),
            },
            "expiring": first_listed(&output.expiring),
            "exceptions_error": output.exceptions_error,
            "started": first_listed(&output.started),
            "already_running": first_listed(&output.already_running),
            "skipped": first_listed(&output.skipped),
            "failed": first_listed(&output.failed),
            "overdue": first_listed(&output.overdue),
            "ignored": first_listed(&output.ignored),
            "not_marked_stale": first_listed(&output.not_marked_stale),
            "not_listed": {
                "started": output.started.len().saturating_sub(LISTED_PER_KIND),
                "already_running": output.already_running.len().saturating_sub(LISTED_PER_KIND),
                "skipped": output.skipped.len().saturating_sub(LISTED_PER_KIND),
                "failed": output.failed.len().saturating_sub(LISTED_PER_KIND),
                "overdue": output.overdue.len().saturating_sub(LISTED_PER_KIND),
                "ignored": output.ignored.len().saturating_sub(LISTED_PER_KIND),
            },
        }),
    }
}

/// The AMIs named in a line of the text, the first `TEXT_LISTED` and how
/// many more; `None` for none.
fn named<'a>(ids: impl Iterator<Item = &'a str>) -> Option<String> {
    let ids: Vec<&str> = ids.collect();
    if ids.is_empty() {
        return None;
    }
    let shown = ids[..ids.len().min(TEXT_LISTED)].join(", ");
    Some(match ids.len().saturating_sub(TEXT_LISTED) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    })
}

/// What an email subscriber reads of a run: what it looked at, what it
/// started, deferred and could not start, and what is overdue.
pub(crate) fn summary_text(
    output: &FindOutput,
    settings: &FindSettings,
    selection: &str,
) -> String {
    let mut lines = vec![format!(
        "Looked at {selection}: {} found, {} scans already in flight.",
        output.found, output.in_flight
    )];
    if output.places.len() > 1 || !output.not_onboarded.is_empty() {
        let accounts: BTreeSet<&str> = output
            .places
            .iter()
            .map(|p| p.account_id.as_str())
            .collect();
        lines.push(format!(
            "Covered {} accounts in {} account-Region pairs.",
            accounts.len(),
            output.places.len()
        ));
    }
    for account in &output.not_onboarded {
        lines.push(format!(
            "WARNING: account {} is not onboarded, none of its AMIs was scanned: {}",
            account.account_id, account.reason
        ));
    }
    for unit in &output.ous_not_listed {
        lines.push(format!(
            "Could not list the accounts of {}, so none of them was scanned: {}",
            unit.ou, unit.reason
        ));
    }
    for place in output.not_reached.iter().take(TEXT_LISTED) {
        lines.push(format!(
            "Could not list the AMIs of {}/{}: {}",
            place.account_id, place.region, place.reason
        ));
    }
    if let Some(ids) = named(output.started.iter().map(|s| s.ami_id.as_str())) {
        lines.push(format!("Started {}: {ids}", output.started.len()));
    }
    if !output.already_running.is_empty() {
        lines.push(format!(
            "Already scanned or scanning today: {}",
            output.already_running.len()
        ));
    }
    let capped = output.skipped.iter().filter(|s| deferred(s));
    if let Some(ids) = named(capped.map(|s| s.ami_id.as_str())) {
        lines.push(format!(
            "Deferred to the next run (concurrent-scan cap of {}): {ids}",
            settings.max_concurrent_scans
        ));
    }
    let other = output.skipped.iter().filter(|s| !deferred(s)).count();
    if other > 0 {
        lines.push(format!(
            "Skipped for another reason: {other} (see the JSON message or find-amis' output)"
        ));
    }
    let late = output.overdue.iter().filter(|o| !o.scanning);
    if let Some(ids) = named(late.map(|o| o.ami_id.as_str())) {
        lines.push(format!(
            "Overdue (no completed scan in {} days) and not scanned by this run: {ids}",
            settings.max_scan_age_days
        ));
    }
    let stale = output.overdue.iter().filter(|o| o.marked_stale);
    if let Some(ids) = named(stale.map(|o| o.ami_id.as_str())) {
        lines.push(format!(
            "Tagged STALE (their PASS is older than {} days and no scan of this run reaches them): {ids}",
            settings.max_scan_age_days
        ));
    }
    for not in output.not_marked_stale.iter().take(TEXT_LISTED) {
        lines.push(format!(
            "Could not tag {} STALE: {}",
            not.ami_id, not.reason
        ));
    }
    for failed in output.failed.iter().take(TEXT_LISTED) {
        lines.push(format!(
            "Could not start {}: {}",
            failed.ami_id, failed.reason
        ));
    }
    for ignored in &output.ignored {
        lines.push(format!("Ignored {}: {}", ignored.ami_id, ignored.reason));
    }
    if let Some(error) = &output.exceptions_error {
        lines.push(format!(
            "The exceptions file is invalid, so no exception applies: {error}"
        ));
    }
    for e in output.expiring.iter().take(TEXT_LISTED) {
        lines.push(format!(
            "Exception expiring in {} days ({}): {}{} on {}: {}",
            e.days_left,
            e.expires,
            e.vulnerability_id,
            e.package
                .as_ref()
                .map(|p| format!(" in {p}"))
                .unwrap_or_default(),
            e.ami.as_deref().unwrap_or("every AMI"),
            e.reason
        ));
    }
    lines.push(
        "Query: run amiscan-not-scanned-recently in the stack's Athena workgroup for every AMI's last scan."
            .into(),
    );
    lines.join("\n")
}

/// AMIs each line of the email text names.
pub(crate) const TEXT_LISTED: usize = 20;

/// Entries of each kind the run's alert lists. SNS refuses a message over
/// 256 KiB, and a weekly run over thousands of tagged AMIs skips thousands
/// (over the concurrency cap): the alert lists the first ones and counts the
/// rest; the function's own output lists every one.
pub const LISTED_PER_KIND: usize = 50;

pub(crate) fn first_listed<T: serde::Serialize>(entries: &[T]) -> &[T] {
    &entries[..entries.len().min(LISTED_PER_KIND)]
}

/// The skip reason of a new AMI that ScanOnCreate does not select.
pub fn not_selected(settings: &FindSettings) -> String {
    match settings.scan_on_create {
        ScanOnCreate::Off => "ScanOnCreate is OFF; the weekly run scans it when tagged".into(),
        _ => format!(
            "not tagged {}={} (ScanOnCreate=TAGGED); the weekly run scans it once tagged",
            settings.selection_tag_key, settings.selection_tag_value
        ),
    }
}

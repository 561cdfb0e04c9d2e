//! Judging a scan: exceptions and the previous scan per finding, and a
//! snapshot scan's completeness and verdict.

#[allow(unused_imports)]
use super::*;

/// What each active finding is checked against: the exceptions naming the
/// AMI, and the previous completed scan's active vulnerabilities (`None`:
/// this is the AMI's first scan).
pub struct Judge {
    pub exceptions: ForAmi,
    pub previous: Option<HashSet<(String, Option<String>)>>,
    pub at: DateTime<Utc>,
}

impl Judge {
    /// Marks an active finding excepted and new, as it is.
    pub fn annotate(&self, row: &mut report::FindingRow) {
        if !row.is_active() {
            return;
        }
        if let Some(e) = self.exceptions.covering(
            row.vulnerability_id.as_deref(),
            row.package_name.as_deref(),
            self.at,
        ) {
            row.exception_reason = Some(e.reason.clone());
            row.exception_expires = Some(e.expires.to_string());
        }
        row.is_new = self
            .previous
            .as_ref()
            .is_none_or(|keys| !keys.contains(&row.vulnerability().key()));
    }
}

/// A snapshot scan's verdict and why: drawn from its findings only when
/// every finding Inspector counted has arrived; `INCOMPLETE` otherwise
/// (missing findings never make a `PASS`), `NOT_SCANNABLE` when Inspector
/// could not read the image.
pub fn snapshot_verdict(
    outcome: &SnapshotOutcome,
    received: u64,
    from_findings: Verdict,
) -> (Verdict, Option<String>) {
    if outcome.scan_status == SNAPSHOT_FAILED {
        let reason = outcome
            .scan_status_reason
            .clone()
            .unwrap_or_else(|| "Inspector gave no reason".into());
        return (
            Verdict::NotScannable,
            Some(format!("Inspector could not scan the snapshots: {reason}")),
        );
    }
    match outcome.finding_severity_counts.as_ref().map(|c| c.total) {
        Some(expected) if received >= expected => (from_findings, None),
        Some(expected) => (
            Verdict::Incomplete,
            Some(format!(
                "{received} of {expected} findings arrived; the rest never did"
            )),
        ),
        None => (
            Verdict::Incomplete,
            Some(format!(
                "Inspector's completion event was lost, so the {received} findings that arrived cannot be known to be all"
            )),
        ),
    }
}

/// Whether the report should wait for more findings: some are missing and
/// the grace after completion is not over.
pub fn should_wait(
    outcome: &SnapshotOutcome,
    received: u64,
    grace_seconds: u64,
    now: DateTime<Utc>,
) -> Option<u64> {
    if outcome.scan_status != SNAPSHOT_SUCCESSFUL || outcome.grace_over == Some(true) {
        return None;
    }
    let expected = outcome.finding_severity_counts.as_ref()?.total;
    if received >= expected {
        return None;
    }
    let completed = outcome.completed_at.as_deref().and_then(time::parse)?;
    let waited = (now - completed).num_seconds().max(0) as u64;
    (waited < grace_seconds).then_some(expected)
}

/// `FindingsPending` while [`should_wait`] says so, for Step Functions to
/// retry the export.
pub(crate) fn wait_for_more(
    outcome: &SnapshotOutcome,
    received: u64,
    grace_seconds: u64,
    now: DateTime<Utc>,
) -> Result<()> {
    match should_wait(outcome, received, grace_seconds, now) {
        Some(expected) => Err(Error::FindingsPending {
            scan_id: outcome.scan_id.clone(),
            expected,
            received,
        }),
        None => Ok(()),
    }
}

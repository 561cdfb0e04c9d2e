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
            row.exception_owner = Some(e.owner.clone());
        }
        row.is_new = self
            .previous
            .as_ref()
            .is_none_or(|keys| !keys.contains(&row.vulnerability().key()));
    }
}

/// What identifies a finding as this scan's: Inspector's on-demand finding
/// ARN is `arn:<partition>:inspector2:<region>:<account>:finding/ondemand/<scanId>/<id>`.
#[derive(Debug, Clone, Copy)]
pub struct OwnScan<'a> {
    pub account: &'a str,
    pub scan_id: &'a str,
    pub ami_id: &'a str,
}

impl OwnScan<'_> {
    /// Why a staged finding is not this scan's, or `None` when it is: its
    /// ARN is under this account's and scan's on-demand findings, its
    /// account is this account, and its one resource is the scan's AMI.
    pub fn foreign(&self, f: &Finding) -> Option<String> {
        let parts: Vec<&str> = f.finding_arn.splitn(6, ':').collect();
        let under = format!("finding/ondemand/{}/", self.scan_id);
        let arn_ok = parts.len() == 6
            && parts[0] == "arn"
            && parts[2] == "inspector2"
            && parts[4] == self.account
            && parts[5]
                .strip_prefix(&under)
                .is_some_and(|id| !id.is_empty() && !id.contains('/'));
        if !arn_ok {
            return Some(format!(
                "findingArn {:?} is not under this account's on-demand scan {}",
                f.finding_arn, self.scan_id
            ));
        }
        if f.aws_account_id != self.account {
            return Some(format!(
                "finding {} names account {:?}",
                f.finding_arn, f.aws_account_id
            ));
        }
        if f.resources.is_empty() || f.resources.iter().any(|r| r.id != self.ami_id) {
            return Some(format!(
                "finding {} is not of {}",
                f.finding_arn, self.ami_id
            ));
        }
        None
    }
}

/// What a snapshot scan's export learned besides the findings' rows: each
/// is evidence that the findings are, or are not, all and only Inspector's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Distinct findings of this scan received, per severity as Inspector
    /// gave it (whatever their status or exceptions).
    pub received: SeverityCounts,
    /// A `findingArn` that arrived with two different bodies, and how many
    /// extra bodies did.
    pub conflict: Option<(String, u64)>,
    /// The first reason a staged finding was not this scan's, and how many
    /// were not.
    pub foreign: Option<(String, u64)>,
    /// GetOnDemandScanStatus disagreeing with the completion, and how.
    pub status_disagrees: Option<String>,
    /// A body the rows did not keep (a conflict's other body) that would
    /// fail the scan on its own.
    pub other_body_breaches: bool,
}

impl Evidence {
    /// Something arrived that Inspector did not say.
    pub fn contradicts(&self) -> bool {
        self.conflict.is_some()
            || self.foreign.is_some()
            || self.status_disagrees.is_some()
            || self.other_body_breaches
    }
}

/// Whether a scan raises `AMI_VULNERABLE`: a `FAIL` under `EveryFail`,
/// one whose new findings fail on their own under `New`, and any `FAIL`
/// whose findings contradicted Inspector (which rows were kept cannot
/// tell what is new).
pub fn should_alert(
    verdict: Verdict,
    alert_on: AlertOn,
    new_findings: Verdict,
    contradicted: bool,
) -> bool {
    verdict == Verdict::Fail
        && (contradicted
            || match alert_on {
                AlertOn::EveryFail => true,
                AlertOn::New => new_findings == Verdict::Fail,
            })
}

/// Why a snapshot scan ended as it did: `missing` (a lost completion event
/// or findings that never arrived: what a fresh scan can make whole) or
/// `contradicted` (something arrived that Inspector did not say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    Missing,
    Contradicted,
}

impl Gap {
    pub fn as_str(self) -> &'static str {
        match self {
            Gap::Missing => "missing",
            Gap::Contradicted => "contradicted",
        }
    }
}

/// A snapshot scan's verdict, why, and what kind of gap made it
/// `INCOMPLETE`. The findings that arrived decide a `FAIL` on their own;
/// a `PASS` needs Inspector's word on every count (per severity) and
/// nothing that contradicts it; `NOT_SCANNABLE` when Inspector could not
/// read the image.
pub fn snapshot_verdict(
    outcome: &SnapshotOutcome,
    evidence: &Evidence,
    from_findings: Verdict,
) -> (Verdict, Option<String>, Option<Gap>) {
    if outcome.scan_status == SNAPSHOT_FAILED && evidence.status_disagrees.is_none() {
        let reason = outcome
            .scan_status_reason
            .clone()
            .unwrap_or_else(|| "Inspector gave no reason".into());
        return (
            Verdict::NotScannable,
            Some(format!("Inspector could not scan the snapshots: {reason}")),
            None,
        );
    }
    let mut contradicted = Vec::new();
    if let Some(how) = &evidence.status_disagrees {
        contradicted.push(format!(
            "Inspector's scan status contradicts the completion: {how}"
        ));
    }
    if let Some((arn, n)) = &evidence.conflict {
        contradicted.push(format!(
            "{n} finding event(s) arrived with a different body under a findingArn already received ({arn})"
        ));
    }
    if let Some((why, n)) = &evidence.foreign {
        contradicted.push(format!("{n} finding event(s) were not this scan's: {why}"));
    }
    let received = &evidence.received;
    let mut missing = None;
    match outcome.finding_severity_counts.as_ref() {
        Some(expected) => {
            let differs: Vec<String> = Severity::ALL
                .iter()
                .filter(|s| expected.get(**s) != received.get(**s))
                .map(|s| format!("{} {} of {}", s.as_str(), received.get(*s), expected.get(*s)))
                .collect();
            let over = Severity::ALL.iter().any(|s| received.get(*s) > expected.get(*s));
            if over || (differs.is_empty() && received.total() != expected.total) {
                contradicted.push(format!(
                    "the findings received do not match Inspector's counts ({}; TOTAL {} of {})",
                    differs.join(", "),
                    received.total(),
                    expected.total
                ));
            } else if !differs.is_empty() {
                missing = Some(format!(
                    "findings were missing: {} of {} arrived ({})",
                    received.total(),
                    expected.total,
                    differs.join(", ")
                ));
            }
        }
        None => {
            missing = Some(format!(
                "findings may be missing: Inspector's completion event, which carries the only count, was lost, so the {} findings that arrived cannot be known to be all",
                received.total()
            ))
        }
    }
    let problems: Vec<String> = contradicted.iter().chain(missing.iter()).cloned().collect();
    if from_findings == Verdict::Fail || evidence.other_body_breaches {
        // What arrived already fails the AMI: nothing missing could pass it.
        let reason = (!problems.is_empty()).then(|| {
            format!(
                "failed on the findings that arrived; besides, {}",
                problems.join("; ")
            )
        });
        return (Verdict::Fail, reason, None);
    }
    if !contradicted.is_empty() {
        return (
            Verdict::Incomplete,
            Some(format!(
                "findings were contradicted: {}",
                problems.join("; ")
            )),
            Some(Gap::Contradicted),
        );
    }
    match missing {
        Some(why) => (Verdict::Incomplete, Some(why), Some(Gap::Missing)),
        None => (from_findings, None, None),
    }
}

/// Whether the scan should get its one fresh on-demand scan instead of
/// recording this one: only a `missing` gap on a verdict that is not
/// already `FAIL` (what arrived would pass), and only on the first
/// on-demand scan of the scan. A lost best-effort event costs a rescan, not
/// a blocked AMI; a contradiction is never rescanned away.
pub fn wants_fresh_scan(verdict: Verdict, gap: Option<Gap>, snapshot_attempt: Option<u32>) -> bool {
    verdict == Verdict::Incomplete
        && gap == Some(Gap::Missing)
        && snapshot_attempt.unwrap_or(0) == 0
}

/// How GetOnDemandScanStatus's answer disagrees with the completion the
/// scan was woken with (status, scan id, the AMI), if it does.
pub fn status_disagreement(
    completion: &SnapshotOutcome,
    status: Option<&SnapshotOutcome>,
    ami_id: &str,
) -> Option<String> {
    let Some(status) = status else {
        return Some(format!(
            "Inspector keeps no on-demand scan {} of {ami_id}",
            completion.scan_id
        ));
    };
    if status.scan_id != completion.scan_id {
        return Some(format!(
            "scan id {} instead of {}",
            status.scan_id, completion.scan_id
        ));
    }
    if status.resource_id.as_deref() != Some(ami_id) {
        return Some(format!(
            "the scan is of {:?}, not {ami_id}",
            status.resource_id.as_deref().unwrap_or("no resource")
        ));
    }
    if completion
        .resource_id
        .as_deref()
        .is_some_and(|r| r != ami_id)
    {
        return Some(format!(
            "the completion names {:?}, not {ami_id}",
            completion.resource_id.as_deref().unwrap_or_default()
        ));
    }
    if status.scan_status != completion.scan_status {
        return Some(format!(
            "status {} instead of {}",
            status.scan_status, completion.scan_status
        ));
    }
    None
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

/// Why an instance is not the scanner amiscan launched for this scan, or
/// `None` when it is: launched from the scan's AMI, tagged as amiscan's
/// scanner of this AMI and scan, and running with the scanner's profile.
pub fn scanner_disagreement(
    instance: Option<&ec2::ScannerInstance>,
    scan: &ScanContext,
    profile: Option<&InstanceProfile>,
) -> Option<String> {
    let Some(i) = instance else {
        return Some("no such instance".into());
    };
    if i.image_id.as_deref() != Some(scan.ami_id.as_str()) {
        return Some(format!(
            "{} was launched from {}, not {}",
            i.instance_id,
            i.image_id.as_deref().unwrap_or("no image"),
            scan.ami_id
        ));
    }
    if !i.managed
        || i.ami_id.as_deref() != Some(scan.ami_id.as_str())
        || i.scan_id.as_deref() != Some(scan.scan_id.as_str())
    {
        return Some(format!(
            "{} does not carry amiscan's scanner tags for {}",
            i.instance_id, scan.scan_id
        ));
    }
    let runs_with = i.profile_arn.as_deref().unwrap_or_default();
    match profile {
        Some(p) if p.is(runs_with) => None,
        Some(_) => Some(format!(
            "{} does not run with the scanner's instance profile",
            i.instance_id
        )),
        None => Some("this stack launches no scan instances".into()),
    }
}

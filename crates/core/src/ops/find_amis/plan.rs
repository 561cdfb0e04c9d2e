//! The choice of AMIs to scan, pure: caps, in-flight scans, freshness.

#[allow(unused_imports)]
use super::*;

/// What is already scanning an AMI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Busy {
    /// A running launch-scan execution, by name (its scan id).
    Execution(String),
    /// A live scanner instance, by id.
    Instance(String),
}

/// The AMIs to start, in order, and why every other one is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub to_start: Vec<AmiCandidate>,
    /// AMIs whose scan of the id this run would use is already running.
    pub already_running: Vec<(AmiCandidate, ScanId)>,
    pub skipped: Vec<Skipped>,
}

/// Decides which AMIs to scan. `busy` maps an AMI to what already scans it;
/// the `in_flight` scans count against `cap`. An AMI whose running scan is
/// the one this run would start (`scan_id_of`) is already running, not
/// skipped. The AMIs scanned longest ago (or never) go first, so a cap below
/// the number of tagged AMIs still reaches every AMI over successive runs.
pub fn plan_scans(
    mut candidates: Vec<AmiCandidate>,
    not_scannable: Vec<Skipped>,
    busy: &HashMap<String, Busy>,
    in_flight: usize,
    cap: u32,
    scan_id_of: impl Fn(&AmiId) -> ScanId,
) -> Plan {
    let mut skipped = not_scannable;
    candidates.sort_by(|a, b| {
        a.last_scanned
            .cmp(&b.last_scanned)
            .then_with(|| a.ami_id.cmp(&b.ami_id))
    });
    let mut budget = (cap as usize).saturating_sub(in_flight);
    let mut to_start = Vec::new();
    let mut already_running = Vec::new();
    for ami in candidates {
        let reason = if ami.state != "available" {
            Some(format!("state is {} (not available)", ami.state))
        } else {
            match busy.get(ami.ami_id.as_str()) {
                Some(Busy::Execution(name)) if *name == scan_id_of(&ami.ami_id).as_str() => {
                    let id = scan_id_of(&ami.ami_id);
                    already_running.push((ami, id));
                    continue;
                }
                Some(Busy::Execution(name)) => {
                    Some(format!("already being scanned by execution {name}"))
                }
                Some(Busy::Instance(id)) => Some(format!("already being scanned by instance {id}")),
                None if budget == 0 => Some(format!(
                    "concurrent-scan cap of {cap} reached; first in line next run"
                )),
                None => None,
            }
        };
        match reason {
            Some(reason) => skipped.push(Skipped {
                ami_id: ami.ami_id.to_string(),
                reason,
            }),
            None => {
                budget -= 1;
                to_start.push(ami);
            }
        }
    }
    Plan {
        to_start,
        already_running,
        skipped,
    }
}

/// The AMIs found that are overdue, oldest first (never scanned before any).
pub fn overdue(candidates: &[AmiCandidate], max_age_days: u32, now: DateTime<Utc>) -> Vec<Overdue> {
    let mut out: Vec<Overdue> = candidates
        .iter()
        .filter(|c| {
            c.scan_age_days(now)
                .is_none_or(|d| d > i64::from(max_age_days))
        })
        .map(|c| Overdue {
            ami_id: c.ami_id.clone(),
            place: c.place.clone(),
            last_scanned: c.last_scanned,
            scan_age_days: c.scan_age_days(now),
            scanning: false,
            verdict: c.verdict.clone(),
            marked_stale: false,
        })
        .collect();
    out.sort_by(|a, b| {
        a.last_scanned
            .cmp(&b.last_scanned)
            .then_with(|| a.ami_id.cmp(&b.ami_id))
    });
    out
}

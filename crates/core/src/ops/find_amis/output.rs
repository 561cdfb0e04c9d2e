//! What find-amis reports: the AMIs it saw, started, skipped and found overdue.

#[allow(unused_imports)]
use super::*;

/// An AMI that may be scanned, as DescribeImages reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmiCandidate {
    pub ami_id: AmiId,
    /// Its account and Region.
    pub place: Place,
    pub name: Option<String>,
    pub platform: String,
    pub state: String,
    /// When amiscan last completed a scan of it, from its tags.
    pub last_scanned: Option<DateTime<Utc>>,
    /// Its verdict tag, as EC2 gave it.
    pub verdict: Option<String>,
}

impl AmiCandidate {
    pub(crate) fn of(
        image: &ec2::types::Image,
        prefix: &TagPrefix,
        place: &Place,
    ) -> Option<AmiCandidate> {
        Some(AmiCandidate {
            ami_id: image.image_id()?.parse().ok()?,
            place: place.clone(),
            name: image.name().map(str::to_string),
            platform: image.platform_details().unwrap_or("Linux/UNIX").to_string(),
            state: image
                .state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "unknown".into()),
            last_scanned: ec2::tag(image.tags(), &prefix.key(tags::LAST_SCAN))
                .and_then(crate::model::time::parse),
            verdict: ec2::tag(image.tags(), &prefix.key(tags::VERDICT)).map(str::to_string),
        })
    }

    /// Whole days since the last completed scan; `None` when never scanned.
    pub fn scan_age_days(&self, now: DateTime<Utc>) -> Option<i64> {
        self.last_scanned.map(|at| (now - at).num_days().max(0))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub ami_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartedScan {
    pub ami_id: AmiId,
    /// Its account and Region (`account_id`, `region`).
    #[serde(flatten)]
    pub place: Place,
    pub scan_id: ScanId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    /// When the AMI's last completed scan was (`null`: never).
    #[serde(default)]
    pub last_scanned: Option<DateTime<Utc>>,
    /// Whole days since then (`null`: never scanned).
    #[serde(default)]
    pub scan_age_days: Option<i64>,
}

/// An AMI whose last completed scan is older than MaxScanAgeDays, or that
/// was never scanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overdue {
    pub ami_id: AmiId,
    /// Its account and Region (`account_id`, `region`).
    #[serde(flatten)]
    pub place: Place,
    pub last_scanned: Option<DateTime<Utc>>,
    pub scan_age_days: Option<i64>,
    /// Whether this run started (or found running) its scan.
    pub scanning: bool,
    /// Its verdict tag when the run began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// Whether this run tagged its old `PASS` `STALE` (no scan of this run
    /// reaches it; a started scan's own start does that).
    #[serde(default)]
    pub marked_stale: bool,
}

/// find-amis' result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindOutput {
    pub found: usize,
    pub started: Vec<StartedScan>,
    pub already_running: Vec<StartedScan>,
    pub skipped: Vec<Skipped>,
    /// Executions that could not be started; the run fails so it is retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<Skipped>,
    /// Scans in flight when the run began: running launch executions and
    /// live scanner instances.
    #[serde(default)]
    pub in_flight: usize,
    /// AMIs found whose last completed scan is older than MaxScanAgeDays
    /// (or that were never scanned), oldest first.
    #[serde(default)]
    pub overdue: Vec<Overdue>,
    /// Overdue `PASS` AMIs this run could not tag `STALE`, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_marked_stale: Vec<Skipped>,
    /// Queue messages that were no trigger amiscan knows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<Skipped>,
    /// Exceptions in force that expire within 14 days, soonest first.
    #[serde(default)]
    pub expiring: Vec<Expiring>,
    /// Why `config/exceptions.json` is invalid (then no exception applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exceptions_error: Option<String>,
    /// The accounts and Regions the run covered and listed.
    #[serde(default)]
    pub places: Vec<Place>,
    /// Listed member accounts without a member role find-amis may assume:
    /// none of their AMIs was scanned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_onboarded: Vec<NotOnboarded>,
    /// Accounts and Regions whose AMIs could not be listed this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_reached: Vec<NotReached>,
    /// Organizational units whose accounts could not be listed this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ous_not_listed: Vec<OuNotListed>,
}

//! One scan's outcome: the `scans` table row, export-report's result and the
//! source of the AMI's result tags; and the tally it is drawn from.

use serde::{Deserialize, Serialize};

use super::rows::FindingRow;
use crate::model::{SeverityCounts, Verdict};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanSummary {
    pub scan_id: String,
    pub ami_id: String,
    pub ami_name: Option<String>,
    pub platform: Option<String>,
    /// `snapshot` or `instance`: how this scan read the image (summaries
    /// written before snapshot mode are instance scans).
    #[serde(default = "instance_mode")]
    pub scan_mode: String,
    /// The scan instance (instance mode only).
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Inspector's on-demand scan id (snapshot mode only).
    #[serde(default)]
    pub inspector_scan_id: Option<String>,
    pub instance_type: Option<String>,
    pub requested_at: Option<String>,
    pub launched_at: Option<String>,
    pub scanned_at: String,
    pub verdict: Verdict,
    pub severity_threshold: String,
    /// The most severe active finding's level, or `NONE`.
    pub highest_severity: String,
    /// Every finding written, whatever its status.
    pub finding_count: u64,
    /// Snapshot mode: how many findings Inspector said the scan has
    /// (`findingSeverityCounts.TOTAL`); `None` when its completion event was
    /// lost. The verdict is `INCOMPLETE` unless `finding_count` reaches it.
    #[serde(default)]
    pub findings_expected: Option<u64>,
    /// Why the verdict is `INCOMPLETE` or `NOT_SCANNABLE`.
    #[serde(default)]
    pub reason: Option<String>,
    /// Active findings per severity; the verdict is drawn from these.
    #[serde(flatten)]
    pub counts: SeverityCounts,
    pub bucket: String,
    pub findings_key: String,
    pub summary_key: String,
    pub report_key: Option<String>,
    /// The object a reader opens first: the human report, else the data.
    pub report_uri: String,
}

fn instance_mode() -> String {
    "instance".into()
}

/// Tallies rows as they stream past.
#[derive(Debug, Default)]
pub struct Tally {
    pub rows: u64,
    pub active: SeverityCounts,
}

impl Tally {
    pub fn add(&mut self, row: &FindingRow) {
        self.rows += 1;
        if row.is_active() {
            self.active.add(row.severity());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;
    use crate::report::rows::instance_finding_row;
    use crate::report::rows::tests::{instance, sample_finding, scan};
    use chrono::Utc;

    #[test]
    fn only_active_findings_count_towards_the_verdict() {
        let mut tally = Tally::default();
        for (sev, status) in [
            ("CRITICAL", "CLOSED"),
            ("HIGH", "ACTIVE"),
            ("LOW", "SUPPRESSED"),
        ] {
            let f = sample_finding("arn:x", sev, status);
            tally.add(&instance_finding_row(&f, &scan(), &instance(), Utc::now()).1);
        }
        assert_eq!(tally.rows, 3);
        assert_eq!(tally.active.total(), 1);
        assert_eq!(tally.active.high, 1);
        assert_eq!(
            Verdict::of(&tally.active, Some(Severity::Critical)),
            Verdict::Pass
        );
    }
}

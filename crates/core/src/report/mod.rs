//! Report layout, all pure: the S3 keys of a scan's objects, the finding
//! rows, the summary record and the human report's writer.

pub mod rows;
pub mod summary;
pub mod writer;

pub use rows::{finding_row, FindingRow};
pub use summary::{ScanSummary, Tally};
pub use writer::{HumanReport, ReportFormat};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::ScanContext;

/// Where a scan's objects go. Athena tables sit on `findings/` and `scans/`,
/// partitioned by the UTC day of the scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportKeys {
    pub findings: String,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

pub const FINDINGS_PREFIX: &str = "findings/";
pub const SCANS_PREFIX: &str = "scans/";
pub const REPORTS_PREFIX: &str = "reports/";

pub fn report_keys(scan: &ScanContext, at: DateTime<Utc>, report_ext: Option<&str>) -> ReportKeys {
    let day = at.format("%Y-%m-%d");
    ReportKeys {
        findings: format!("{FINDINGS_PREFIX}scan_date={day}/{}.jsonl", scan.scan_id),
        summary: format!("{SCANS_PREFIX}scan_date={day}/{}.json", scan.scan_id),
        report: report_ext
            .map(|ext| format!("{REPORTS_PREFIX}{}/{}.{ext}", scan.ami_id, scan.scan_id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::rows::tests::scan;
    use chrono::TimeZone;

    #[test]
    fn keys_are_hive_partitioned_by_day_and_named_by_scan() {
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 1, 2, 3).unwrap();
        let keys = report_keys(&scan(), at, Some("csv"));
        assert_eq!(
            keys.findings,
            "findings/scan_date=2026-11-24/ami-0123456789abcdef0-20261123.jsonl"
        );
        assert_eq!(
            keys.summary,
            "scans/scan_date=2026-11-24/ami-0123456789abcdef0-20261123.json"
        );
        assert_eq!(
            keys.report.as_deref(),
            Some("reports/ami-0123456789abcdef0/ami-0123456789abcdef0-20261123.csv")
        );
        assert_eq!(report_keys(&scan(), at, None).report, None);
    }
}

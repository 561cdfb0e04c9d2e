//! Report layout, all pure: the S3 keys of a scan's objects, the finding
//! rows, the summary record and the human report's writer.

pub mod rows;
pub mod summary;
pub mod writer;

pub use rows::{finding_row, FindingRow, Source};
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
/// Where a snapshot scan's findings wait for its report: one object per
/// collector batch and scan, holding that batch's findings of the scan.
/// The bucket's lifecycle rule expires what a report did not delete.
pub const STAGING_PREFIX: &str = "staging/ondemand/";

/// The staged objects of one on-demand scan, by Inspector's scan id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staging(String);

impl Staging {
    /// Refuses an id that could leave its folder (only letters, digits,
    /// `-` and `_`, as Inspector's ids are).
    pub fn of(inspector_scan_id: &str) -> Result<Staging, String> {
        if inspector_scan_id.is_empty()
            || inspector_scan_id.len() > 128
            || !inspector_scan_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("{inspector_scan_id:?} is not an Inspector scan id"));
        }
        Ok(Staging(format!("{STAGING_PREFIX}{inspector_scan_id}/")))
    }
    /// Everything of this scan.
    pub fn prefix(&self) -> &str {
        &self.0
    }
    /// start-scan's record: the scan is amiscan's, and which scan it is.
    pub fn marker(&self) -> String {
        format!("{}scan.json", self.0)
    }
    /// The completion event's detail.
    pub fn completion(&self) -> String {
        format!("{}complete.json", self.0)
    }
    /// launch-scan's task token, waiting for the completion.
    pub fn waiter(&self) -> String {
        format!("{}waiter.json", self.0)
    }
    pub fn findings(&self) -> String {
        format!("{}findings/", self.0)
    }
    /// One collector batch's findings of this scan, as JSON Lines:
    /// `<count of findingArns>-<hash of the sorted findingArns and the
    /// body>.jsonl`. A batch delivered again (the same findings, the same
    /// bodies, sorted) writes the same key; a body that differs under a
    /// findingArn already staged is another object, never an overwrite, so
    /// the export sees both. The count lets the export check completeness
    /// from the names alone.
    pub fn batch(&self, finding_arns: &[&str], body: &[u8]) -> String {
        let mut sorted = finding_arns.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut named = sorted.join("\n").into_bytes();
        named.extend_from_slice(b"\n\n");
        named.extend_from_slice(body);
        let hash = fnv1a(&named);
        format!("{}findings/{}-{hash:016x}.jsonl", self.0, sorted.len())
    }
}

/// How many findings a batch object holds, from its key (`None`: not a
/// batch object's key).
pub fn batch_count(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?.strip_suffix(".jsonl")?;
    let (count, hash) = name.split_once('-')?;
    (hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| count.parse().ok())
        .flatten()
}

/// A staged finding's fingerprint, to tell two bodies under one
/// `findingArn` apart without keeping either.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    fnv1a(bytes)
}

/// FNV-1a, 64 bits: stable across builds, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The pointer to the AMI's last completed scan's summary record.
pub fn latest_key(ami_id: &str) -> String {
    format!("state/latest/{ami_id}.json")
}

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

    #[test]
    fn a_batch_of_staged_findings_is_named_by_its_findings_and_counts_them() {
        let staging = Staging::of("8b1e4a9c-2f3d").unwrap();
        let key = staging.batch(&["arn:x/b", "arn:x/a", "arn:x/b"], b"a\nb\n");
        assert!(
            key.starts_with("staging/ondemand/8b1e4a9c-2f3d/findings/2-"),
            "{key}"
        );
        assert!(key.ends_with(".jsonl"));
        // The same findings in another order name the same object.
        assert_eq!(key, staging.batch(&["arn:x/a", "arn:x/b"], b"a\nb\n"));
        assert_ne!(key, staging.batch(&["arn:x/a", "arn:x/c"], b"a\nb\n"));
        // Another body under the same findings is another object.
        assert_ne!(key, staging.batch(&["arn:x/a", "arn:x/b"], b"a\nB\n"));
        assert_eq!(batch_count(&key), Some(2));
        assert_eq!(batch_count("staging/ondemand/x/findings/3a9e0c.json"), None);
        assert_eq!(batch_count("staging/ondemand/x/scan.json"), None);
    }
}

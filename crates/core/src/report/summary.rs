//! One scan's outcome: the `scans` table row, export-report's result and the
//! source of the AMI's result tags; and the tally it is drawn from.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::rows::{FindingRow, Vulnerability};
use crate::model::{Severity, SeverityCounts, Verdict};

/// Vulnerabilities each list of the delta names in what export-report
/// returns (Step Functions caps a state's data at 256 KiB) and in the alert;
/// the summary record in S3 lists every one.
pub const DELTA_LISTED: usize = 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanSummary {
    pub scan_id: String,
    pub ami_id: String,
    /// The AMI's account and Region (summaries written before members
    /// existed have neither: the hub's).
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
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
    /// Why a snapshot scan is `INCOMPLETE`: `missing` (findings or the
    /// completion never arrived: a fresh scan can make it whole) or
    /// `contradicted` (something arrived that Inspector did not say).
    #[serde(default)]
    pub gap: Option<String>,
    /// Active findings per severity that no exception in force accepts;
    /// the verdict is drawn from these.
    #[serde(flatten)]
    pub counts: SeverityCounts,
    /// Active findings an exception in force accepts (not in `counts`).
    #[serde(default)]
    pub excepted: u64,
    /// Why `config/exceptions.json` was not applied: then no exception is.
    #[serde(default)]
    pub exceptions_error: Option<String>,
    /// The version of `config/exceptions.json` the scan was judged with
    /// (its S3 VersionId and ETag); absent when there was no file.
    #[serde(default)]
    pub exceptions_version_id: Option<String>,
    #[serde(default)]
    pub exceptions_etag: Option<String>,
    /// Who accepted each risk that excepted a finding of this scan.
    #[serde(default)]
    pub exception_owners: Vec<String>,
    /// Findings an Inspector suppression rule hides (instance scans); they
    /// count toward the verdict unless `CountSuppressed` is false.
    #[serde(default)]
    pub suppressed: u64,
    /// The AMI's previous completed scan (`PASS` or `FAIL`, either mode);
    /// `None` for a first scan.
    #[serde(default)]
    pub previous_scan_id: Option<String>,
    #[serde(default)]
    pub first_scan: bool,
    /// Active vulnerabilities (by id and package) not in the previous scan.
    #[serde(default)]
    pub new_count: u64,
    /// Active in the previous scan, not in this one.
    #[serde(default)]
    pub fixed_count: u64,
    /// Active in both.
    #[serde(default)]
    pub still_open_count: u64,
    #[serde(default)]
    pub new: Vec<Vulnerability>,
    #[serde(default)]
    pub fixed: Vec<Vulnerability>,
    #[serde(default)]
    pub still_open: Vec<Vulnerability>,
    /// The delta in one line for people: "2 new: CVE-…(CRITICAL), …; 1
    /// fixed; 37 still open", or that this is the AMI's first scan.
    #[serde(default)]
    pub delta: String,
    /// Whether the `AMI_VULNERABLE` alert fires: the verdict is `FAIL` and,
    /// with `ALERT_ON=NEW`, a finding new since the previous scan is at or
    /// above the threshold and accepted by no exception.
    #[serde(default)]
    pub alert: bool,
    /// The scan for people, a few plain lines: what email subscribers read
    /// under each alert's first line.
    #[serde(default)]
    pub digest: String,
    /// Set by report-and-cleanup, never by the export nor in the S3 record:
    /// the error of a scan instance's cleanup that failed after the export
    /// (the alert says so; the hourly sweep removes what is left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_error: Option<serde_json::Value>,
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

impl ScanSummary {
    /// The AMI, what changed since the previous scan, the verdict, counts
    /// by severity, the report and the named query to run.
    pub fn digest_text(&self) -> String {
        let c = &self.counts;
        let mut lines = vec![
            format!(
                "AMI: {} ({})",
                self.ami_id,
                self.ami_name.as_deref().unwrap_or("no name")
            ),
            format!("Since the previous scan: {}", self.delta),
            format!(
                "Verdict: {} (threshold {}), {} scan {} at {}",
                self.verdict.as_str(),
                self.severity_threshold,
                self.scan_mode,
                self.scan_id,
                self.scanned_at
            ),
            format!(
                "Active findings: {} critical, {} high, {} medium, {} low{}",
                c.critical,
                c.high,
                c.medium,
                c.low,
                if self.excepted > 0 {
                    format!(" ({} more accepted by exceptions)", self.excepted)
                } else {
                    String::new()
                }
            ),
        ];
        if let Some(reason) = &self.reason {
            lines.push(format!("Why: {reason}"));
        }
        if let Some(error) = &self.exceptions_error {
            lines.push(format!(
                "Exceptions NOT applied, the file is invalid: {error}"
            ));
        }
        lines.push(format!("Report: {}", self.report_uri));
        lines.push(
            "Query: run amiscan-new-since-previous-scan (or amiscan-failing-amis) in the stack's Athena workgroup."
                .into(),
        );
        lines.join("\n")
    }

    /// The summary with each delta list cut to [`DELTA_LISTED`], as
    /// export-report returns it.
    pub fn listed(mut self) -> ScanSummary {
        for list in [&mut self.new, &mut self.fixed, &mut self.still_open] {
            list.truncate(DELTA_LISTED);
        }
        self
    }

    /// The active vulnerabilities of this scan, from its record in S3.
    pub fn open(&self) -> impl Iterator<Item = &Vulnerability> {
        self.new.iter().chain(&self.still_open)
    }
}

/// Tallies rows as they stream past.
#[derive(Debug, Default)]
pub struct Tally {
    pub rows: u64,
    /// Active findings no exception accepts, per severity.
    pub active: SeverityCounts,
    /// Active findings an exception accepts.
    pub excepted: u64,
    /// Active, accepted by no exception, and new since the previous scan.
    pub new_unexcepted: SeverityCounts,
    /// The owners of the exceptions that accepted a finding.
    pub exception_owners: std::collections::BTreeSet<String>,
    /// Findings an Inspector suppression rule hides.
    pub suppressed: u64,
    /// Every active vulnerability, by id and package, at its most severe.
    pub open: BTreeMap<(String, Option<String>), Vulnerability>,
}

impl Tally {
    pub fn add(&mut self, row: &FindingRow) {
        self.rows += 1;
        if row.is_suppressed() {
            self.suppressed += 1;
        }
        if !row.is_active() {
            return;
        }
        if row.exception_reason.is_some() {
            self.excepted += 1;
            if let Some(owner) = &row.exception_owner {
                self.exception_owners.insert(owner.clone());
            }
        } else {
            self.active.add(row.severity());
            if row.is_new {
                self.new_unexcepted.add(row.severity());
            }
        }
        let v = row.vulnerability();
        let worse = |a: &str, b: &str| Severity::from_inspector(a) < Severity::from_inspector(b);
        self.open
            .entry(v.key())
            .and_modify(|held| {
                if worse(&v.severity, &held.severity) {
                    held.severity = v.severity.clone();
                }
            })
            .or_insert(v);
    }
}

/// What changed since the previous completed scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    pub first_scan: bool,
    pub new: Vec<Vulnerability>,
    pub fixed: Vec<Vulnerability>,
    pub still_open: Vec<Vulnerability>,
}

/// Most severe first, then by id and package.
fn sorted(mut list: Vec<Vulnerability>) -> Vec<Vulnerability> {
    list.sort_by(|a, b| {
        Severity::from_inspector(&a.severity)
            .cmp(&Severity::from_inspector(&b.severity))
            .then_with(|| a.key().cmp(&b.key()))
    });
    list
}

/// Compares this scan's active vulnerabilities with the previous completed
/// scan's (`None`: this is the first).
pub fn delta<'a>(
    open: &BTreeMap<(String, Option<String>), Vulnerability>,
    previous: Option<impl IntoIterator<Item = &'a Vulnerability>>,
) -> Delta {
    let Some(previous) = previous else {
        return Delta {
            first_scan: true,
            new: sorted(open.values().cloned().collect()),
            ..Delta::default()
        };
    };
    let before: BTreeMap<_, _> = previous.into_iter().map(|v| (v.key(), v)).collect();
    let (still, new): (Vec<_>, Vec<_>) = open
        .values()
        .cloned()
        .partition(|v| before.contains_key(&v.key()));
    let fixed = before
        .iter()
        .filter(|(k, _)| !open.contains_key(*k))
        .map(|(_, v)| (*v).clone())
        .collect();
    Delta {
        first_scan: false,
        new: sorted(new),
        fixed: sorted(fixed),
        still_open: sorted(still),
    }
}

/// The keys of a previous scan's active vulnerabilities, for `is_new`.
pub fn keys_of<'a>(
    previous: impl IntoIterator<Item = &'a Vulnerability>,
) -> HashSet<(String, Option<String>)> {
    previous.into_iter().map(Vulnerability::key).collect()
}

impl Delta {
    /// "2 new: CVE-a (CRITICAL), CVE-b (HIGH); 1 fixed; 37 still open",
    /// listing at most [`DELTA_LISTED`] new ones.
    pub fn line(&self) -> String {
        if self.first_scan {
            return format!(
                "first scan of this AMI: {} open vulnerabilities",
                self.new.len()
            );
        }
        let mut new = format!("{} new", self.new.len());
        if !self.new.is_empty() {
            let listed: Vec<String> = self
                .new
                .iter()
                .take(DELTA_LISTED)
                .map(|v| format!("{} ({})", v.vulnerability_id, v.severity))
                .collect();
            new.push_str(": ");
            new.push_str(&listed.join(", "));
            if self.new.len() > DELTA_LISTED {
                new.push_str(&format!(", and {} more", self.new.len() - DELTA_LISTED));
            }
        }
        format!(
            "{new}; {} fixed; {} still open",
            self.fixed.len(),
            self.still_open.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;
    use crate::report::rows::tests::{instance_row, sample_finding};
    use chrono::Utc;

    fn vuln(id: &str, package: &str, severity: &str) -> Vulnerability {
        Vulnerability {
            vulnerability_id: id.into(),
            package: Some(package.into()),
            severity: severity.into(),
        }
    }

    #[test]
    fn the_delta_compares_vulnerabilities_by_id_and_package() {
        let mut tally = Tally::default();
        for (arn, sev, cve, pkg) in [
            ("arn:1", "HIGH", "CVE-1", "openssl"),
            ("arn:2", "CRITICAL", "CVE-2", "openssh"),
            ("arn:3", "LOW", "CVE-3", "zlib"),
            // The same vulnerability in another package is another one.
            ("arn:4", "MEDIUM", "CVE-3", "zlib-dev"),
            // Found twice: counted once, at its most severe.
            ("arn:5", "CRITICAL", "CVE-1", "openssl"),
        ] {
            let f = sample_finding(arn, sev, "ACTIVE");
            let mut row = instance_row(&f, Utc::now());
            row.vulnerability_id = Some(cve.into());
            row.package_name = Some(pkg.into());
            tally.add(&row);
        }
        assert_eq!(tally.open.len(), 4);
        assert_eq!(
            tally.open[&("CVE-1".to_string(), Some("openssl".to_string()))].severity,
            "CRITICAL"
        );
        let previous = [
            vuln("CVE-1", "openssl", "HIGH"),
            vuln("CVE-3", "zlib", "LOW"),
            vuln("CVE-9", "bash", "HIGH"),
        ];
        let d = delta(&tally.open, Some(&previous));
        let ids = |l: &[Vulnerability]| -> Vec<String> {
            l.iter()
                .map(|v| {
                    format!(
                        "{}/{}",
                        v.vulnerability_id,
                        v.package.as_deref().unwrap_or("")
                    )
                })
                .collect()
        };
        assert_eq!(ids(&d.new), ["CVE-2/openssh", "CVE-3/zlib-dev"]);
        assert_eq!(ids(&d.fixed), ["CVE-9/bash"]);
        assert_eq!(ids(&d.still_open), ["CVE-1/openssl", "CVE-3/zlib"]);
        assert_eq!(
            d.line(),
            "2 new: CVE-2 (CRITICAL), CVE-3 (MEDIUM); 1 fixed; 2 still open"
        );
        let first = delta(&tally.open, None::<&[Vulnerability]>);
        assert!(first.first_scan && first.new.len() == 4 && first.fixed.is_empty());
        assert_eq!(
            first.line(),
            "first scan of this AMI: 4 open vulnerabilities"
        );
        let many: Vec<Vulnerability> = (0..25)
            .map(|n| vuln(&format!("CVE-{n:02}"), "p", "LOW"))
            .collect();
        let open = many.iter().map(|v| (v.key(), v.clone())).collect();
        let d = delta(&open, Some(&[] as &[Vulnerability]));
        assert!(
            d.line()
                .ends_with("CVE-19 (LOW), and 5 more; 0 fixed; 0 still open"),
            "{}",
            d.line()
        );
    }

    #[test]
    fn only_active_findings_count_towards_the_verdict() {
        let mut tally = Tally::default();
        for (sev, status) in [
            ("CRITICAL", "CLOSED"),
            ("HIGH", "ACTIVE"),
            ("LOW", "SUPPRESSED"),
        ] {
            let f = sample_finding("arn:x", sev, status);
            tally.add(&instance_row(&f, Utc::now()));
        }
        assert_eq!(tally.rows, 3);
        assert_eq!(tally.active.total(), 1);
        assert_eq!(tally.active.high, 1);
        assert_eq!(tally.suppressed, 1, "suppressed findings are counted apart");
        assert_eq!(
            Verdict::of(&tally.active, Some(Severity::Critical)),
            Verdict::Pass
        );
        // A suppressed finding the export counts (CountSuppressed, the
        // default) weighs like an active one.
        let mut counted = instance_row(
            &sample_finding("arn:y", "CRITICAL", "SUPPRESSED"),
            Utc::now(),
        );
        counted.counted = true;
        tally.add(&counted);
        assert_eq!((tally.suppressed, tally.active.critical), (2, 1));
        assert_eq!(
            Verdict::of(&tally.active, Some(Severity::Critical)),
            Verdict::Fail
        );
    }
}

//! The flat finding rows that Athena's `findings` table reads, each with
//! the whole finding in Inspector's own field names.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::finding::{FindingTime, VulnerablePackage};
use crate::model::{time, Finding, InstanceId, ScanContext, Severity};

/// A package's installed version as `epoch:version-release`.
fn installed_version(p: &VulnerablePackage) -> String {
    let mut v = String::new();
    if let Some(epoch) = p.epoch.filter(|e| *e != 0) {
        v.push_str(&format!("{epoch}:"));
    }
    v.push_str(&p.version);
    if let Some(release) = p.release.as_deref().filter(|r| !r.is_empty()) {
        v.push('-');
        v.push_str(release);
    }
    v
}

fn joined<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    let list: Vec<&str> = values.filter(|v| !v.is_empty()).collect();
    (!list.is_empty()).then(|| list.join(", "))
}

/// A time as the rows write it: ISO 8601 in milliseconds, from epoch
/// seconds or any ISO 8601; other text is kept as it is.
fn time_text(t: &Option<FindingTime>) -> Option<String> {
    match t.as_ref()? {
        FindingTime::Seconds(n) => n
            .as_f64()
            .and_then(|secs| DateTime::from_timestamp_millis((secs * 1000.0) as i64))
            .map(time::timestamp),
        FindingTime::Text(s) => Some(time::parse(s).map(time::timestamp).unwrap_or(s.clone())),
    }
}

/// Inspector's status of a finding a suppression rule hides.
pub const SUPPRESSED: &str = "SUPPRESSED";

/// One finding of one scan, flat, with stable snake_case columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingRow {
    pub scan_id: String,
    pub ami_id: String,
    pub ami_name: Option<String>,
    /// `snapshot` or `instance`: how Inspector read the image.
    pub scan_mode: String,
    /// The scan instance (instance mode only).
    pub instance_id: Option<String>,
    /// Inspector's on-demand scan id (snapshot mode only).
    pub inspector_scan_id: Option<String>,
    pub account_id: String,
    /// The AMI's Region (the scan's).
    #[serde(default)]
    pub region: String,
    pub scanned_at: String,
    pub finding_arn: String,
    pub severity: String,
    pub status: String,
    pub finding_type: String,
    pub title: Option<String>,
    pub vulnerability_id: Option<String>,
    pub package_name: Option<String>,
    pub installed_version: Option<String>,
    pub fixed_in_version: Option<String>,
    pub fix_available: Option<String>,
    pub exploit_available: Option<bool>,
    pub inspector_score: Option<f64>,
    pub epss_score: Option<f64>,
    pub cvss3_score: Option<f64>,
    pub first_observed_at: Option<String>,
    pub last_observed_at: Option<String>,
    pub remediation: Option<String>,
    /// Why an exception in force accepts this finding (`config/exceptions.json`).
    #[serde(default)]
    pub exception_reason: Option<String>,
    /// The day that exception expires (UTC, inclusive).
    #[serde(default)]
    pub exception_expires: Option<String>,
    /// Who accepted the risk that covers it.
    #[serde(default)]
    pub exception_owner: Option<String>,
    /// Whether the finding counts toward the verdict (not a column): an
    /// `ACTIVE` finding, any finding of an on-demand scan, and a
    /// `SUPPRESSED` one unless `CountSuppressed` is false.
    #[serde(skip)]
    pub counted: bool,
    /// An active finding whose vulnerability (id and package) was not active
    /// in the AMI's previous completed scan; every active finding of a
    /// first scan.
    #[serde(default)]
    pub is_new: bool,
    /// The whole finding in Inspector's field names, as one JSON string.
    pub finding_json: String,
}

impl FindingRow {
    pub fn severity(&self) -> Severity {
        Severity::from_inspector(&self.severity)
    }

    pub fn is_active(&self) -> bool {
        self.counted
    }

    /// Hidden by an Inspector suppression rule.
    pub fn is_suppressed(&self) -> bool {
        self.status == SUPPRESSED
    }

    /// What the delta compares: the vulnerability and its package.
    pub fn vulnerability(&self) -> Vulnerability {
        Vulnerability {
            vulnerability_id: self
                .vulnerability_id
                .clone()
                .unwrap_or_else(|| self.title.clone().unwrap_or_default()),
            package: self.package_name.clone(),
            severity: self.severity().as_str().to_string(),
        }
    }
}

/// A vulnerability as the delta between two scans counts it: by id and
/// package; `severity` is the finding's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vulnerability {
    pub vulnerability_id: String,
    pub package: Option<String>,
    pub severity: String,
}

impl Vulnerability {
    pub fn key(&self) -> (String, Option<String>) {
        (self.vulnerability_id.clone(), self.package.clone())
    }
}

/// Where a finding came from: the scan instance, or Inspector's on-demand
/// scan of the AMI's snapshots.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    Instance(&'a InstanceId),
    Snapshot(&'a str),
}

impl Source<'_> {
    pub fn mode(&self) -> &'static str {
        match self {
            Source::Instance(_) => "instance",
            Source::Snapshot(_) => "snapshot",
        }
    }
    pub fn instance_id(&self) -> Option<String> {
        match self {
            Source::Instance(id) => Some(id.to_string()),
            Source::Snapshot(_) => None,
        }
    }
    pub fn inspector_scan_id(&self) -> Option<String> {
        match self {
            Source::Instance(_) => None,
            Source::Snapshot(id) => Some(id.to_string()),
        }
    }
}

/// A finding's row: the one mapping, for both modes.
pub fn finding_row(
    f: &Finding,
    scan: &ScanContext,
    source: Source<'_>,
    scanned_at: DateTime<Utc>,
) -> FindingRow {
    let details = f.package_vulnerability_details.as_ref();
    let packages = f.packages();
    FindingRow {
        scan_id: scan.scan_id.to_string(),
        ami_id: scan.ami_id.to_string(),
        ami_name: scan.ami_name.clone(),
        scan_mode: source.mode().to_string(),
        instance_id: source.instance_id(),
        inspector_scan_id: source.inspector_scan_id(),
        account_id: f.aws_account_id.clone(),
        region: scan
            .region
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default(),
        scanned_at: time::timestamp(scanned_at),
        finding_arn: f.finding_arn.clone(),
        severity: f.severity.clone(),
        // An on-demand scan reports what the image holds at that moment:
        // every finding it sends counts, whatever its `status` says (the
        // finding as sent stays in `finding_json`).
        status: match source {
            Source::Snapshot(_) => "ACTIVE".to_string(),
            Source::Instance(_) => f.status.clone(),
        },
        finding_type: f.finding_type.clone(),
        title: f.title.clone(),
        vulnerability_id: details.and_then(|d| d.vulnerability_id.clone()),
        package_name: joined(packages.iter().map(|p| p.name.as_str())),
        installed_version: {
            let versions: Vec<String> = packages.iter().map(installed_version).collect();
            joined(versions.iter().map(String::as_str))
        },
        fixed_in_version: joined(
            packages
                .iter()
                .filter_map(|p| p.fixed_in_version.as_deref()),
        ),
        fix_available: f.fix_available.clone(),
        exploit_available: f.exploit_available.as_deref().map(|v| v == "YES"),
        inspector_score: f.inspector_score,
        epss_score: f.epss.as_ref().and_then(|e| e.score),
        cvss3_score: f.cvss3(),
        first_observed_at: time_text(&f.first_observed_at),
        last_observed_at: time_text(&f.last_observed_at),
        remediation: f
            .remediation
            .as_ref()
            .and_then(|r| r.recommendation.as_ref())
            .and_then(|r| r.text.clone()),
        exception_reason: None,
        exception_expires: None,
        exception_owner: None,
        counted: matches!(source, Source::Snapshot(_)) || f.status == "ACTIVE",
        is_new: false,
        // A map of strings and numbers always encodes.
        finding_json: serde_json::to_string(f).unwrap_or_default(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::{json, Value};

    /// A finding as ListFindings gives it (see aws::inspector's conversion).
    pub(crate) fn sample_finding(arn: &str, severity: &str, status: &str) -> Finding {
        serde_json::from_value(json!({
            "awsAccountId": "123456789012",
            "findingArn": arn,
            "type": "PACKAGE_VULNERABILITY",
            "title": "CVE-2026-0001 - openssl",
            "description": "A \"quoted\", multi-line\ndescription",
            "severity": severity,
            "status": status,
            "inspectorScore": 9.8,
            "firstObservedAt": "2025-11-23T12:13:20.000Z",
            "lastObservedAt": "2025-11-23T12:13:20.000Z",
            "fixAvailable": "YES",
            "exploitAvailable": "NO",
            "epss": {"score": 0.42},
            "remediation": {"recommendation": {"text": "Update openssl"}},
            "resources": [{"type": "AWS_EC2_INSTANCE", "id": "i-0123456789abcdef0"}],
            "packageVulnerabilityDetails": {
                "vulnerabilityId": "CVE-2026-0001",
                "source": "NVD",
                "cvss": [{"baseScore": 9.8, "scoringVector": "CVSS:3.1/AV:N", "version": "3.1", "source": "NVD"}],
                "referenceUrls": ["https://example.com/a"],
                "vulnerablePackages": [{"name": "openssl", "version": "3.0.2", "epoch": 1,
                                        "release": "0ubuntu1.10", "fixedInVersion": "1:3.0.2-0ubuntu1.15"}]
            }
        }))
        .unwrap()
    }

    /// The row of a finding of the sample instance scan.
    pub(crate) fn instance_row(f: &Finding, at: DateTime<Utc>) -> FindingRow {
        finding_row(f, &scan(), Source::Instance(&instance()), at)
    }

    pub(crate) fn scan() -> ScanContext {
        let mut scan = ScanContext::new(
            "ami-0123456789abcdef0-20261123".parse().unwrap(),
            "ami-0123456789abcdef0".parse().unwrap(),
        );
        scan.ami_name = Some("ubuntu-22.04".into());
        scan.platform = Some("Linux/UNIX".into());
        scan.instance_id = Some(instance());
        scan
    }

    pub(crate) fn instance() -> InstanceId {
        "i-0123456789abcdef0".parse().unwrap()
    }

    #[test]
    fn a_row_is_flat_and_carries_the_raw_finding() {
        let f = sample_finding(
            "arn:aws:inspector2:us-east-1:123456789012:finding/1",
            "CRITICAL",
            "ACTIVE",
        );
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        let row = instance_row(&f, at);
        assert_eq!(row.severity(), Severity::Critical);
        assert_eq!(row.scan_mode, "instance");
        assert_eq!(row.instance_id.as_deref(), Some("i-0123456789abcdef0"));
        assert_eq!(row.vulnerability_id.as_deref(), Some("CVE-2026-0001"));
        assert_eq!(row.package_name.as_deref(), Some("openssl"));
        assert_eq!(
            row.installed_version.as_deref(),
            Some("1:3.0.2-0ubuntu1.10")
        );
        assert_eq!(row.fixed_in_version.as_deref(), Some("1:3.0.2-0ubuntu1.15"));
        assert_eq!(row.fix_available.as_deref(), Some("YES"));
        assert_eq!(row.exploit_available, Some(false));
        assert_eq!(row.cvss3_score, Some(9.8));
        assert_eq!(row.epss_score, Some(0.42));
        assert_eq!(row.scanned_at, "2026-11-23T10:00:00.000Z");
        assert_eq!(row.remediation.as_deref(), Some("Update openssl"));
        let line = serde_json::to_string(&row).unwrap();
        assert!(!line.contains('\n'), "JSON Lines need one object per line");
        let raw: Value = serde_json::from_str(&row.finding_json).unwrap();
        assert_eq!(
            raw["findingArn"],
            "arn:aws:inspector2:us-east-1:123456789012:finding/1"
        );
        assert_eq!(
            raw["packageVulnerabilityDetails"]["vulnerablePackages"][0]["name"],
            "openssl"
        );
        assert_eq!(raw["resources"][0]["id"], "i-0123456789abcdef0");
        assert_eq!(
            row.first_observed_at.as_deref(),
            Some("2025-11-23T12:13:20.000Z")
        );
    }

    #[test]
    fn a_snapshot_finding_event_maps_to_the_same_columns() {
        let event: Value = serde_json::from_str(include_str!(
            "../../../../tests/fixtures/ondemand/finding-event.json"
        ))
        .unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        let detail: Finding = serde_json::from_value(event["detail"].clone()).unwrap();
        let row = finding_row(&detail, &scan(), Source::Snapshot("scan-1"), at);
        assert_eq!(row.scan_mode, "snapshot");
        assert_eq!(row.instance_id, None);
        assert_eq!(row.inspector_scan_id.as_deref(), Some("scan-1"));
        assert_eq!(row.vulnerability_id.as_deref(), Some("CVE-2026-0001"));
        assert_eq!(row.package_name.as_deref(), Some("openssl"));
        assert_eq!(row.severity(), Severity::Critical);
        assert_eq!(row.fix_available.as_deref(), Some("YES"));
        assert_eq!(row.exploit_available, Some(true));
        assert_eq!(row.cvss3_score, Some(9.8));
        assert_eq!(
            row.first_observed_at.as_deref(),
            Some("2026-11-23T09:58:01.123Z")
        );
        assert!(row.finding_arn.contains(":finding/ondemand/"));
    }
}

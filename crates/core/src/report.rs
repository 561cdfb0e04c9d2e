//! Report layout, all pure: the flat finding rows that Athena reads, the raw
//! finding in Inspector's own field names, the CSV in Inspector's export
//! columns, the per-scan summary record and the S3 keys of each.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::aws::inspector2::types::{Finding, VulnerablePackage};
use crate::model::{ScanContext, Severity, SeverityCounts, Verdict};

/// Where a scan's objects go. Athena tables sit on `findings/` and `scans/`,
/// partitioned by the UTC day the report was written.
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

/// Timestamps as Athena and DuckDB both parse them.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn smithy_time(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

fn installed_version(p: &VulnerablePackage) -> String {
    let mut v = String::new();
    if p.epoch() != 0 {
        v.push_str(&format!("{}:", p.epoch()));
    }
    v.push_str(p.version());
    if let Some(release) = p.release().filter(|r| !r.is_empty()) {
        v.push('-');
        v.push_str(release);
    }
    v
}

fn joined<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    let list: Vec<&str> = values.filter(|v| !v.is_empty()).collect();
    (!list.is_empty()).then(|| list.join(", "))
}

/// One finding of one scan, flat, with stable snake_case columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingRow {
    pub scan_id: String,
    pub ami_id: String,
    pub ami_name: Option<String>,
    pub instance_id: String,
    pub account_id: String,
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
    /// The whole finding in Inspector's field names, as one JSON string.
    pub finding_json: String,
}

impl FindingRow {
    pub fn severity(&self) -> Severity {
        Severity::from_inspector(&self.severity)
    }

    pub fn is_active(&self) -> bool {
        self.status == "ACTIVE"
    }
}

/// The finding as JSON in Inspector's camelCase names, for the fields the SDK
/// exposes (the SDK types carry no serialiser of their own).
pub fn finding_json(f: &Finding) -> Value {
    let time = |t: Option<&aws_smithy_types::DateTime>| t.and_then(smithy_time).map(timestamp);
    let mut out = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            out.insert(k.to_string(), v);
        }
    };
    put("awsAccountId", json!(f.aws_account_id()));
    put("findingArn", json!(f.finding_arn()));
    put("type", json!(f.r#type().as_str()));
    put("title", json!(f.title()));
    put("description", json!(f.description()));
    put("severity", json!(f.severity().as_str()));
    put("status", json!(f.status().as_str()));
    put("inspectorScore", json!(f.inspector_score()));
    put("firstObservedAt", json!(time(Some(f.first_observed_at()))));
    put("lastObservedAt", json!(time(Some(f.last_observed_at()))));
    put("updatedAt", json!(time(f.updated_at())));
    put("fixAvailable", json!(f.fix_available().map(|v| v.as_str())));
    put(
        "exploitAvailable",
        json!(f.exploit_available().map(|v| v.as_str())),
    );
    put(
        "exploitabilityDetails",
        json!(f
            .exploitability_details()
            .and_then(|d| time(d.last_known_exploit_at()))
            .map(|t| json!({"lastKnownExploitAt": t}))),
    );
    put("epss", json!(f.epss().map(|e| json!({"score": e.score()}))));
    put(
        "remediation",
        json!(f
            .remediation()
            .and_then(|r| r.recommendation())
            .map(|r| json!({
                "recommendation": {"text": r.text(), "Url": r.url()}
            }))),
    );
    put(
        "resources",
        Value::Array(
            f.resources()
                .iter()
                .map(|r| {
                    let ec2 = r.details().and_then(|d| d.aws_ec2_instance());
                    json!({
                        "type": r.r#type().as_str(),
                        "id": r.id(),
                        "partition": r.partition(),
                        "region": r.region(),
                        "tags": r.tags(),
                        "details": ec2.map(|d| json!({"awsEc2Instance": {
                            "type": d.r#type(),
                            "imageId": d.image_id(),
                            "platform": d.platform(),
                            "launchedAt": time(d.launched_at()),
                        }})),
                    })
                })
                .collect(),
        ),
    );
    if let Some(p) = f.package_vulnerability_details() {
        put(
            "packageVulnerabilityDetails",
            json!({
                "vulnerabilityId": p.vulnerability_id(),
                "source": p.source(),
                "sourceUrl": p.source_url(),
                "vendorSeverity": p.vendor_severity(),
                "vendorCreatedAt": time(p.vendor_created_at()),
                "vendorUpdatedAt": time(p.vendor_updated_at()),
                "referenceUrls": p.reference_urls(),
                "relatedVulnerabilities": p.related_vulnerabilities(),
                "cvss": p.cvss().iter().map(|c| json!({
                    "baseScore": c.base_score(),
                    "scoringVector": c.scoring_vector(),
                    "version": c.version(),
                    "source": c.source(),
                })).collect::<Vec<_>>(),
                "vulnerablePackages": p.vulnerable_packages().iter().map(|v| json!({
                    "name": v.name(),
                    "version": v.version(),
                    "epoch": v.epoch(),
                    "release": v.release(),
                    "arch": v.arch(),
                    "packageManager": v.package_manager().map(|m| m.as_str()),
                    "filePath": v.file_path(),
                    "fixedInVersion": v.fixed_in_version(),
                    "remediation": v.remediation(),
                })).collect::<Vec<_>>(),
            }),
        );
    }
    Value::Object(out)
}

/// The NVD CVSS v3 base score, as Inspector's export reports it.
fn cvss3(f: &Finding) -> Option<f64> {
    f.package_vulnerability_details()?
        .cvss()
        .iter()
        .find(|c| c.source() == "NVD" && c.version().starts_with('3'))
        .map(|c| c.base_score())
}

pub fn finding_row(
    f: &Finding,
    scan: &ScanContext,
    instance_id: &str,
    scanned_at: DateTime<Utc>,
) -> FindingRow {
    let packages = f
        .package_vulnerability_details()
        .map(|p| p.vulnerable_packages())
        .unwrap_or_default();
    FindingRow {
        scan_id: scan.scan_id.clone(),
        ami_id: scan.ami_id.clone(),
        ami_name: scan.ami_name.clone(),
        instance_id: instance_id.to_string(),
        account_id: f.aws_account_id().to_string(),
        scanned_at: timestamp(scanned_at),
        finding_arn: f.finding_arn().to_string(),
        severity: f.severity().as_str().to_string(),
        status: f.status().as_str().to_string(),
        finding_type: f.r#type().as_str().to_string(),
        title: f.title().map(str::to_string),
        vulnerability_id: f
            .package_vulnerability_details()
            .map(|p| p.vulnerability_id().to_string()),
        package_name: joined(packages.iter().map(|p| p.name())),
        installed_version: {
            let versions: Vec<String> = packages.iter().map(installed_version).collect();
            joined(versions.iter().map(String::as_str))
        },
        fixed_in_version: joined(packages.iter().filter_map(|p| p.fixed_in_version())),
        fix_available: f.fix_available().map(|v| v.as_str().to_string()),
        exploit_available: f.exploit_available().map(|v| v.as_str() == "YES"),
        inspector_score: f.inspector_score(),
        epss_score: f.epss().map(|e| e.score()),
        cvss3_score: cvss3(f),
        first_observed_at: smithy_time(f.first_observed_at()).map(timestamp),
        last_observed_at: smithy_time(f.last_observed_at()).map(timestamp),
        remediation: f
            .remediation()
            .and_then(|r| r.recommendation())
            .and_then(|r| r.text())
            .map(str::to_string),
        finding_json: finding_json(f).to_string(),
    }
}

/// Inspector's CSV export columns, in its order.
pub const CSV_COLUMNS: [&str; 23] = [
    "AWS Account Id",
    "Severity",
    "Fix Available",
    "Finding Type",
    "Title",
    "Description",
    "Finding ARN",
    "First Seen",
    "Last Seen",
    "Resource ID",
    "Platform",
    "Affected Packages",
    "Package Installed Version",
    "Fixed in Version",
    "Remediation",
    "Inspector Score",
    "Vulnerability Id",
    "Vendor Severity",
    "NVD CVSS3 Score",
    "Ami",
    "Exploit Available",
    "Epss Score",
    "Reference Urls",
];

/// One CSV field, quoted when it must be (RFC 4180).
pub fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

pub fn csv_line(fields: impl IntoIterator<Item = String>) -> String {
    let mut line = fields
        .into_iter()
        .map(|f| csv_field(&f))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

pub fn csv_header() -> String {
    csv_line(CSV_COLUMNS.iter().map(|c| c.to_string()))
}

pub fn csv_row(f: &Finding, row: &FindingRow, scan: &ScanContext) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let num = |v: Option<f64>| v.map(|n| n.to_string()).unwrap_or_default();
    let details = f.package_vulnerability_details();
    let platform = f
        .resources()
        .iter()
        .find_map(|r| {
            r.details()
                .and_then(|d| d.aws_ec2_instance())
                .and_then(|d| d.platform())
        })
        .map(str::to_string)
        .or_else(|| scan.platform.clone())
        .unwrap_or_default();
    csv_line([
        row.account_id.clone(),
        row.severity.clone(),
        opt(&row.fix_available),
        row.finding_type.clone(),
        opt(&row.title),
        f.description().to_string(),
        row.finding_arn.clone(),
        opt(&row.first_observed_at),
        opt(&row.last_observed_at),
        row.instance_id.clone(),
        platform,
        opt(&row.package_name),
        opt(&row.installed_version),
        opt(&row.fixed_in_version),
        opt(&row.remediation),
        num(row.inspector_score),
        opt(&row.vulnerability_id),
        details
            .and_then(|d| d.vendor_severity())
            .unwrap_or_default()
            .to_string(),
        num(row.cvss3_score),
        scan.ami_id.clone(),
        f.exploit_available()
            .map(|v| v.as_str().to_string())
            .unwrap_or_default(),
        num(row.epss_score),
        details
            .map(|d| d.reference_urls().join(", "))
            .unwrap_or_default(),
    ])
}

/// One scan's outcome: the `scans` table row, the export's result and the
/// source of the AMI's result tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanSummary {
    pub scan_id: String,
    pub ami_id: String,
    pub ami_name: Option<String>,
    pub platform: Option<String>,
    pub instance_id: String,
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
pub(crate) mod tests {
    use super::*;
    use crate::aws::inspector2::types::{
        CvssScore, EpssDetails, ExploitAvailable, FindingStatus, FindingType, FixAvailable,
        PackageVulnerabilityDetails, Recommendation, Remediation, Resource, ResourceType,
        Severity as InspectorSeverity,
    };
    use chrono::TimeZone;

    pub(crate) fn sample_finding(arn: &str, severity: &str, status: &str) -> Finding {
        let t = aws_smithy_types::DateTime::from_secs(1_763_900_000);
        Finding::builder()
            .finding_arn(arn)
            .aws_account_id("123456789012")
            .r#type(FindingType::PackageVulnerability)
            .description("A \"quoted\", multi-line\ndescription")
            .title("CVE-2026-0001 - openssl")
            .severity(InspectorSeverity::from(severity))
            .status(FindingStatus::from(status))
            .first_observed_at(t)
            .last_observed_at(t)
            .inspector_score(9.8)
            .fix_available(FixAvailable::Yes)
            .exploit_available(ExploitAvailable::No)
            .epss(EpssDetails::builder().score(0.42).build())
            .remediation(
                Remediation::builder()
                    .recommendation(Recommendation::builder().text("Update openssl").build())
                    .build(),
            )
            .resources(
                Resource::builder()
                    .r#type(ResourceType::AwsEc2Instance)
                    .id("i-0123456789abcdef0")
                    .build()
                    .unwrap(),
            )
            .package_vulnerability_details(
                PackageVulnerabilityDetails::builder()
                    .vulnerability_id("CVE-2026-0001")
                    .source("NVD")
                    .cvss(
                        CvssScore::builder()
                            .base_score(9.8)
                            .scoring_vector("CVSS:3.1/AV:N")
                            .version("3.1")
                            .source("NVD")
                            .build()
                            .unwrap(),
                    )
                    .vulnerable_packages(
                        VulnerablePackage::builder()
                            .name("openssl")
                            .version("3.0.2")
                            .epoch(1)
                            .release("0ubuntu1.10")
                            .fixed_in_version("1:3.0.2-0ubuntu1.15")
                            .build()
                            .unwrap(),
                    )
                    .reference_urls("https://example.com/a")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    fn scan() -> ScanContext {
        ScanContext {
            scan_id: "ami-0123456789abcdef0-20261123".into(),
            ami_id: "ami-0123456789abcdef0".into(),
            ami_name: Some("ubuntu-22.04".into()),
            platform: Some("Linux/UNIX".into()),
            requested_at: None,
            instance_id: Some("i-0123456789abcdef0".into()),
            instance_type: None,
            launched_at: None,
            deadline_at: None,
            rule_name: None,
        }
    }

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
    fn a_row_is_flat_and_carries_the_raw_finding() {
        let f = sample_finding(
            "arn:aws:inspector2:us-east-1:123456789012:finding/1",
            "CRITICAL",
            "ACTIVE",
        );
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        let row = finding_row(&f, &scan(), "i-0123456789abcdef0", at);
        assert_eq!(row.severity(), Severity::Critical);
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
    }

    #[test]
    fn csv_uses_inspectors_columns_and_quotes_what_needs_it() {
        let f = sample_finding("arn:1", "HIGH", "ACTIVE");
        let row = finding_row(&f, &scan(), "i-0123456789abcdef0", Utc::now());
        let header = csv_header();
        assert!(header
            .starts_with("AWS Account Id,Severity,Fix Available,Finding Type,Title,Description,"));
        assert!(header.ends_with("Epss Score,Reference Urls\r\n"));
        let line = csv_row(&f, &row, &scan());
        assert!(
            line.contains(
                r#""A ""quoted"", multi-line
description""#
            ),
            "{line}"
        );
        assert!(line.starts_with("123456789012,HIGH,YES,PACKAGE_VULNERABILITY,"));
        assert!(line.contains(",ami-0123456789abcdef0,NO,0.42,https://example.com/a\r\n"));
        assert_eq!(csv_field("plain"), "plain");
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
            tally.add(&finding_row(&f, &scan(), "i-0123456789abcdef0", Utc::now()));
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

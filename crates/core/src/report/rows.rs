//! The flat finding rows that Athena's `findings` table reads, and the raw
//! finding in Inspector's own field names that each row carries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::aws::inspector::types::Finding;
use crate::model::{time, InstanceId, ScanContext, Severity};

/// A package's installed version as `epoch:version-release`.
fn installed_version(p: &Value) -> String {
    let mut v = String::new();
    if let Some(epoch) = p["epoch"].as_i64().filter(|e| *e != 0) {
        v.push_str(&format!("{epoch}:"));
    }
    v.push_str(p["version"].as_str().unwrap_or_default());
    if let Some(release) = p["release"].as_str().filter(|r| !r.is_empty()) {
        v.push('-');
        v.push_str(release);
    }
    v
}

fn joined<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    let list: Vec<&str> = values.filter(|v| !v.is_empty()).collect();
    (!list.is_empty()).then(|| list.join(", "))
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// A time as the rows write it. ListFindings' JSON carries epoch seconds,
/// events ISO 8601; anything else is kept as it is.
fn time_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(|secs| DateTime::from_timestamp_millis((secs * 1000.0) as i64))
            .map(time::timestamp),
        Value::String(s) => Some(time::parse(s).map(time::timestamp).unwrap_or(s.clone())),
        _ => None,
    }
}

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
        self.status == "ACTIVE"
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

/// The finding as JSON in Inspector's camelCase names, for the fields the SDK
/// exposes (the SDK types carry no serialiser of their own): the shape of a
/// snapshot scan's finding events too, so both modes share one row mapping.
pub fn finding_json(f: &Finding) -> Value {
    let iso =
        |t: Option<&aws_smithy_types::DateTime>| t.and_then(time::from_sdk).map(time::timestamp);
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
    put("firstObservedAt", json!(iso(Some(f.first_observed_at()))));
    put("lastObservedAt", json!(iso(Some(f.last_observed_at()))));
    put("updatedAt", json!(iso(f.updated_at())));
    put("fixAvailable", json!(f.fix_available().map(|v| v.as_str())));
    put(
        "exploitAvailable",
        json!(f.exploit_available().map(|v| v.as_str())),
    );
    put(
        "exploitabilityDetails",
        json!(f
            .exploitability_details()
            .and_then(|d| iso(d.last_known_exploit_at()))
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
                            "launchedAt": iso(d.launched_at()),
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
                "vendorCreatedAt": iso(p.vendor_created_at()),
                "vendorUpdatedAt": iso(p.vendor_updated_at()),
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

/// The NVD CVSS v3 base score, as Inspector's export reports it; else the
/// v3 score Inspector adjusted (all that some events carry).
fn cvss3(f: &Value) -> Option<f64> {
    let details = &f["packageVulnerabilityDetails"];
    let nvd = details["cvss"].as_array().and_then(|list| {
        list.iter()
            .find(|c| {
                c["source"] == "NVD" && c["version"].as_str().is_some_and(|v| v.starts_with('3'))
            })
            .and_then(|c| c["baseScore"].as_f64())
    });
    let adjusted = &f["inspectorScoreDetails"]["adjustedCvss"];
    nvd.or_else(|| {
        adjusted["version"]
            .as_str()
            .filter(|v| v.starts_with('3'))
            .and(adjusted["score"].as_f64())
    })
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

/// One row from a finding in Inspector's camelCase JSON (see `finding_json`).
pub fn finding_row(
    f: &Value,
    scan: &ScanContext,
    source: Source<'_>,
    scanned_at: DateTime<Utc>,
) -> FindingRow {
    let details = &f["packageVulnerabilityDetails"];
    let empty = Vec::new();
    let packages = details["vulnerablePackages"].as_array().unwrap_or(&empty);
    FindingRow {
        scan_id: scan.scan_id.to_string(),
        ami_id: scan.ami_id.to_string(),
        ami_name: scan.ami_name.clone(),
        scan_mode: source.mode().to_string(),
        instance_id: source.instance_id(),
        inspector_scan_id: source.inspector_scan_id(),
        account_id: text(&f["awsAccountId"]).unwrap_or_default(),
        scanned_at: time::timestamp(scanned_at),
        finding_arn: text(&f["findingArn"]).unwrap_or_default(),
        severity: text(&f["severity"]).unwrap_or_default(),
        status: text(&f["status"]).unwrap_or_default(),
        finding_type: text(&f["type"]).unwrap_or_default(),
        title: text(&f["title"]),
        vulnerability_id: text(&details["vulnerabilityId"]),
        package_name: joined(packages.iter().filter_map(|p| p["name"].as_str())),
        installed_version: {
            let versions: Vec<String> = packages.iter().map(installed_version).collect();
            joined(versions.iter().map(String::as_str))
        },
        fixed_in_version: joined(packages.iter().filter_map(|p| p["fixedInVersion"].as_str())),
        fix_available: text(&f["fixAvailable"]),
        exploit_available: f["exploitAvailable"].as_str().map(|v| v == "YES"),
        inspector_score: f["inspectorScore"].as_f64(),
        epss_score: f["epss"]["score"].as_f64(),
        cvss3_score: cvss3(f),
        first_observed_at: time_text(&f["firstObservedAt"]),
        last_observed_at: time_text(&f["lastObservedAt"]),
        remediation: text(&f["remediation"]["recommendation"]["text"]),
        exception_reason: None,
        exception_expires: None,
        is_new: false,
        finding_json: f.to_string(),
    }
}

/// A row of an instance scan, from the SDK's finding.
pub fn instance_finding_row(
    f: &Finding,
    scan: &ScanContext,
    instance_id: &InstanceId,
    scanned_at: DateTime<Utc>,
) -> (Value, FindingRow) {
    let raw = finding_json(f);
    let row = finding_row(&raw, scan, Source::Instance(instance_id), scanned_at);
    (raw, row)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::aws::inspector::types::{
        CvssScore, EpssDetails, ExploitAvailable, FindingStatus, FindingType, FixAvailable,
        PackageVulnerabilityDetails, Recommendation, Remediation, Resource, ResourceType,
        Severity as InspectorSeverity, VulnerablePackage,
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
        let (_, row) = instance_finding_row(&f, &scan(), &instance(), at);
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
        let row = finding_row(&event["detail"], &scan(), Source::Snapshot("scan-1"), at);
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

//! The flat finding rows that Athena's `findings` table reads, and the raw
//! finding in Inspector's own field names that each row carries.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::aws::inspector::types::{Finding, VulnerablePackage};
use crate::model::{time, InstanceId, ScanContext, Severity};

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
    instance_id: &InstanceId,
    scanned_at: DateTime<Utc>,
) -> FindingRow {
    let packages = f
        .package_vulnerability_details()
        .map(|p| p.vulnerable_packages())
        .unwrap_or_default();
    FindingRow {
        scan_id: scan.scan_id.to_string(),
        ami_id: scan.ami_id.to_string(),
        ami_name: scan.ami_name.clone(),
        instance_id: instance_id.to_string(),
        account_id: f.aws_account_id().to_string(),
        scanned_at: time::timestamp(scanned_at),
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
        first_observed_at: time::from_sdk(f.first_observed_at()).map(time::timestamp),
        last_observed_at: time::from_sdk(f.last_observed_at()).map(time::timestamp),
        remediation: f
            .remediation()
            .and_then(|r| r.recommendation())
            .and_then(|r| r.text())
            .map(str::to_string),
        finding_json: finding_json(f).to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::aws::inspector::types::{
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
        let row = finding_row(&f, &scan(), &instance(), at);
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
}

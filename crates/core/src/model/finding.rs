//! One Inspector finding, typed, in Inspector's own field names (camelCase):
//! the shape of a snapshot scan's "Inspector2 Finding"-style event detail and
//! of ListFindings' JSON. Both modes read a finding into this once, at the
//! edge (the collector from the event, aws/inspector from the SDK), and one
//! function maps it to a report row. Fields the report does not read are
//! kept as they came (`other`), so the row's `finding_json` is the finding
//! in full.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Fields this type does not name, kept in their order-independent form.
pub type Other = BTreeMap<String, Value>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub finding_arn: String,
    #[serde(default)]
    pub aws_account_id: String,
    #[serde(rename = "type", default)]
    pub finding_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub severity: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspector_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inspector_score_details: Option<ScoreDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_observed_at: Option<FindingTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_observed_at: Option<FindingTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_available: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exploit_available: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epss: Option<Epss>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<Remediation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<FindingResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_vulnerability_details: Option<PackageVulnerabilityDetails>,
    #[serde(flatten)]
    pub other: Other,
}

/// A time as Inspector writes it: ISO 8601 in events and the SDK's
/// conversion, epoch seconds in ListFindings' raw JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FindingTime {
    Seconds(serde_json::Number),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoreDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjusted_cvss: Option<AdjustedCvss>,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdjustedCvss {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Epss {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remediation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<Recommendation>,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Inspector spells this one `Url`.
    #[serde(rename = "Url", default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FindingResource {
    #[serde(rename = "type", default)]
    pub resource_type: String,
    #[serde(default)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<ResourceDetails>,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_ec2_instance: Option<Ec2InstanceDetails>,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ec2InstanceDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageVulnerabilityDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerability_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_severity: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cvss: Vec<Cvss>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vulnerable_packages: Vec<VulnerablePackage>,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cvss {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VulnerablePackage {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_in_version: Option<String>,
    #[serde(flatten)]
    pub other: Other,
}

impl Finding {
    /// The NVD CVSS v3 base score, as Inspector's export reports it; else
    /// the v3 score Inspector adjusted (all that some events carry).
    pub fn cvss3(&self) -> Option<f64> {
        let v3 = |v: &Option<String>| v.as_deref().is_some_and(|v| v.starts_with('3'));
        let nvd = self.package_vulnerability_details.as_ref().and_then(|d| {
            d.cvss
                .iter()
                .find(|c| c.source.as_deref() == Some("NVD") && v3(&c.version))
                .and_then(|c| c.base_score)
        });
        nvd.or_else(|| {
            self.inspector_score_details
                .as_ref()
                .and_then(|d| d.adjusted_cvss.as_ref())
                .filter(|a| v3(&a.version))
                .and_then(|a| a.score)
        })
    }

    /// The vulnerable packages, none if the finding has no package details.
    pub fn packages(&self) -> &[VulnerablePackage] {
        self.package_vulnerability_details
            .as_ref()
            .map_or(&[], |d| d.vulnerable_packages.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_finding_reads_inspectors_names_and_keeps_every_field_it_does_not_name() {
        let event = json!({
            "findingArn": "arn:aws:inspector2:us-east-1:123456789012:finding/ondemand/s/1",
            "awsAccountId": "123456789012",
            "type": "PACKAGE_VULNERABILITY",
            "severity": "HIGH",
            "status": "ACTIVE",
            "firstObservedAt": "2026-11-27T13:00:00.000Z",
            "lastObservedAt": 1764248400,
            "inspectorScoreDetails": {"adjustedCvss": {"score": 7.5, "version": "3.1", "scoringVector": "V"}},
            "remediation": {"recommendation": {"text": "Upgrade", "Url": "https://example.com"}},
            "packageVulnerabilityDetails": {"vulnerabilityId": "CVE-2026-1", "vulnerablePackages": [
                {"name": "openssl", "version": "3.0.2", "epoch": 1, "arch": "X86_64"}]},
            "scanId": "s"
        });
        let f: Finding = serde_json::from_value(event.clone()).unwrap();
        assert_eq!(f.cvss3(), Some(7.5));
        assert_eq!(f.packages()[0].name, "openssl");
        assert_eq!(
            f.last_observed_at,
            Some(FindingTime::Seconds(1764248400.into()))
        );
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            event,
            "nothing lost, nothing added"
        );
    }

    #[test]
    fn a_finding_without_its_arn_is_refused_naming_the_field() {
        let err = serde_json::from_value::<Finding>(json!({"severity": "LOW"})).unwrap_err();
        assert!(err.to_string().contains("findingArn"), "{err}");
    }
}

//! Inspector: an instance's findings, page by page, and its coverage; an
//! AMI's on-demand (snapshot) scans.

pub use aws_sdk_inspector2::{config, error, operation, types, Client};

use aws_smithy_async::future::pagination_stream::PaginationStream;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::model::{self, time, AmiId, InstanceId, SnapshotOutcome};
use operation::list_findings::{ListFindingsError, ListFindingsOutput};
use types::{
    CoverageFilterCriteria, CoverageStringComparison, CoverageStringFilter, CoveredResource,
    FilterCriteria, Finding, StringComparison, StringFilter,
};

/// ListFindings' largest page.
pub const FINDINGS_PAGE_SIZE: i32 = 100;

/// An instance's findings, one page at a time, so a caller can stream them
/// without holding them all.
pub struct FindingPages(
    PaginationStream<Result<ListFindingsOutput, SdkError<ListFindingsError, HttpResponse>>>,
);

impl FindingPages {
    /// The next page, each finding read into the typed finding both modes
    /// share.
    pub async fn next(&mut self) -> Option<Result<Vec<model::Finding>>> {
        let page = self.0.next().await?;
        Some(
            page.map_err(|e| Error::from_sdk("ListFindings", e))
                .and_then(|p| p.findings().iter().map(to_finding).collect()),
        )
    }
}

/// The SDK's finding as the typed finding, in Inspector's field names.
pub fn to_finding(f: &Finding) -> Result<model::Finding> {
    serde_json::from_value(finding_json(f))
        .map_err(|e| Error::Internal(format!("a finding ListFindings returned: {e}")))
}

/// The finding as JSON in Inspector's camelCase names, for the fields the SDK
/// exposes (the SDK types carry no serialiser of their own): the shape of a
/// snapshot scan's finding events too.
fn finding_json(f: &Finding) -> Value {
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

pub fn findings_of(client: &Client, instance_id: &InstanceId) -> Result<FindingPages> {
    let by_instance = StringFilter::builder()
        .comparison(StringComparison::Equals)
        .value(instance_id.as_str())
        .build()
        .map_err(|e| Error::Internal(format!("findings filter: {e}")))?;
    Ok(FindingPages(
        client
            .list_findings()
            .filter_criteria(FilterCriteria::builder().resource_id(by_instance).build())
            .max_results(FINDINGS_PAGE_SIZE)
            .into_paginator()
            .send(),
    ))
}

/// The instance's coverage record, if Inspector lists it.
pub async fn coverage_of(
    client: &Client,
    instance_id: &InstanceId,
) -> Result<Option<CoveredResource>> {
    let by_instance = CoverageStringFilter::builder()
        .comparison(CoverageStringComparison::Equals)
        .value(instance_id.as_str())
        .build()
        .map_err(|e| Error::Internal(format!("coverage filter: {e}")))?;
    let out = client
        .list_coverage()
        .filter_criteria(
            CoverageFilterCriteria::builder()
                .resource_id(by_instance)
                .build(),
        )
        .send()
        .await
        .map_err(|e| Error::from_sdk("ListCoverage", e))?;
    Ok(out.covered_resources.unwrap_or_default().into_iter().next())
}

/// StartOnDemandScan's answer.
pub enum OnDemandStart {
    /// Inspector's scan id: a new scan, or the one this client token started.
    Started(String),
    /// Another scan of this AMI is running (one at a time per AMI).
    Conflict(String),
}

pub async fn start_on_demand_scan(
    client: &Client,
    ami_id: &AmiId,
    client_token: &str,
) -> Result<OnDemandStart> {
    match client
        .start_on_demand_scan()
        .resource_id(ami_id.as_str())
        .resource_type(types::OnDemandResourceType::Ami)
        .client_token(client_token)
        .send()
        .await
    {
        Ok(out) => Ok(OnDemandStart::Started(out.scan_id)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_conflict_exception()) =>
        {
            let message = e
                .as_service_error()
                .and_then(|e| aws_smithy_types::error::metadata::ProvideErrorMetadata::message(e))
                .unwrap_or("a scan of this AMI is running")
                .to_string();
            Ok(OnDemandStart::Conflict(message))
        }
        Err(e) => Err(Error::from_sdk("StartOnDemandScan", e)),
    }
}

/// An on-demand scan as amiscan records it, from the fields that
/// ListOnDemandScans' items and GetOnDemandScanStatus' answer share.
fn outcome(
    scan_id: &str,
    resource_id: &str,
    status: &types::OnDemandScanStatus,
    reason: Option<&types::OnDemandScanStatusReason>,
    started_at: &aws_smithy_types::DateTime,
    completed_at: Option<&aws_smithy_types::DateTime>,
) -> SnapshotOutcome {
    let iso = |t: &aws_smithy_types::DateTime| time::from_sdk(t).map(time::timestamp);
    SnapshotOutcome {
        scan_id: scan_id.to_string(),
        resource_id: Some(resource_id.to_string()),
        scan_status: status.as_str().to_string(),
        scan_status_reason: reason.map(|r| r.as_str().to_string()),
        started_at: iso(started_at),
        completed_at: completed_at.and_then(iso),
        finding_severity_counts: None,
        source: Some("status".into()),
        grace_over: None,
    }
}

/// The AMI's on-demand scan that is running now, if any (ListOnDemandScans
/// lists newest first; it has no paginator in the SDK).
pub async fn running_on_demand_scan(
    client: &Client,
    ami_id: &AmiId,
) -> Result<Option<SnapshotOutcome>> {
    let mut token = None;
    loop {
        let out = client
            .list_on_demand_scans()
            .resource_id(ami_id.as_str())
            .resource_type(types::OnDemandResourceType::Ami)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| Error::from_sdk("ListOnDemandScans", e))?;
        if let Some(running) = out
            .items()
            .iter()
            .find(|s| s.scan_status() == &types::OnDemandScanStatus::InProgress)
        {
            return Ok(Some(outcome(
                running.scan_id(),
                running.resource_id(),
                running.scan_status(),
                running.scan_status_reason(),
                running.started_at(),
                running.completed_at(),
            )));
        }
        match out.next_token {
            Some(next) if !next.is_empty() => token = Some(next),
            _ => return Ok(None),
        }
    }
}

/// One on-demand scan's status; `None` once Inspector no longer keeps it.
pub async fn on_demand_scan_status(
    client: &Client,
    ami_id: &AmiId,
    scan_id: &str,
) -> Result<Option<SnapshotOutcome>> {
    match client
        .get_on_demand_scan_status()
        .resource_id(ami_id.as_str())
        .resource_type(types::OnDemandResourceType::Ami)
        .scan_id(scan_id)
        .send()
        .await
    {
        Ok(out) => Ok(Some(outcome(
            out.scan_id(),
            out.resource_id(),
            out.scan_status(),
            out.scan_status_reason(),
            out.started_at(),
            out.completed_at(),
        ))),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::from_sdk("GetOnDemandScanStatus", e)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use types::{
        CvssScore, EpssDetails, ExploitAvailable, FindingStatus, FindingType, FixAvailable,
        PackageVulnerabilityDetails, Recommendation, Remediation, Resource, ResourceType,
        Severity as InspectorSeverity, VulnerablePackage,
    };

    #[test]
    fn an_sdk_finding_becomes_the_typed_finding_in_inspectors_names() {
        let f = to_finding(&sdk_finding(
            "arn:aws:inspector2:us-east-1:123456789012:finding/1",
            "CRITICAL",
            "ACTIVE",
        ))
        .unwrap();
        assert_eq!(
            f.finding_arn,
            "arn:aws:inspector2:us-east-1:123456789012:finding/1"
        );
        assert_eq!(
            (f.severity.as_str(), f.status.as_str()),
            ("CRITICAL", "ACTIVE")
        );
        assert_eq!(f.finding_type, "PACKAGE_VULNERABILITY");
        assert_eq!(
            f.first_observed_at,
            Some(model::finding::FindingTime::Text(
                "2025-11-23T12:13:20.000Z".into()
            ))
        );
        assert_eq!(f.cvss3(), Some(9.8));
        let package = &f.packages()[0];
        assert_eq!((package.name.as_str(), package.epoch), ("openssl", Some(1)));
        assert_eq!(f.resources[0].id, "i-0123456789abcdef0");
        assert_eq!(f.epss.as_ref().and_then(|e| e.score), Some(0.42));
        assert_eq!(
            f.package_vulnerability_details
                .as_ref()
                .unwrap()
                .reference_urls,
            ["https://example.com/a"]
        );
    }

    pub(crate) fn sdk_finding(arn: &str, severity: &str, status: &str) -> Finding {
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
}

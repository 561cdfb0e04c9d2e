//! Inspector: an instance's findings, page by page, and its coverage; an
//! AMI's on-demand (snapshot) scans.

pub use aws_sdk_inspector2::{config, error, operation, types, Client};

use aws_smithy_async::future::pagination_stream::PaginationStream;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

use crate::error::{Error, Result};
use crate::model::{time, AmiId, InstanceId, SnapshotOutcome};
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
    pub async fn next(&mut self) -> Option<Result<Vec<Finding>>> {
        let page = self.0.next().await?;
        Some(
            page.map(|p| p.findings.unwrap_or_default())
                .map_err(|e| Error::from_sdk("ListFindings", e)),
        )
    }
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

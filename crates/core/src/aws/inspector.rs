//! Inspector: an instance's findings, page by page, and its coverage.

pub use aws_sdk_inspector2::{config, error, operation, types, Client};

use aws_smithy_async::future::pagination_stream::PaginationStream;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

use crate::error::{Error, Result};
use crate::model::InstanceId;
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

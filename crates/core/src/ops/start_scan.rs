//! start-scan: start Inspector's on-demand scan of an AMI's snapshots (or
//! attach to the one already running), and record in the staging folder
//! that the scan is amiscan's, so the collector keeps its findings; and
//! remove what an attempt that ends without a report staged.

use chrono::{DateTime, Duration, Utc};
use tracing::info;

use crate::aws::inspector::{self, OnDemandStart};
use crate::aws::s3;
use crate::error::{Error, Result};
use crate::model::{ScanContext, SnapshotMarker};
use crate::naming;
use crate::report::Staging;
use crate::settings::{vars, BucketName, EnvReader, FromEnv, Home, KmsKeyArn, ScanTimeoutMinutes};

/// start-scan: where the marker goes, and how long launch-scan waits.
#[derive(Debug, Clone)]
pub struct StartSettings {
    pub report_bucket: BucketName,
    pub report_kms_key_arn: KmsKeyArn,
    pub scan_timeout_minutes: ScanTimeoutMinutes,
    /// The functions' account, and the role they assume in a member's.
    pub home: Home,
}

impl FromEnv for StartSettings {
    fn from_env<F: Fn(&str) -> Option<String>>(mut env: EnvReader<F>) -> Result<Self> {
        let bucket: Option<BucketName> = env.required(vars::REPORT_BUCKET);
        let key: Option<KmsKeyArn> = env.required(vars::REPORT_KMS_KEY_ARN);
        let timeout: Option<ScanTimeoutMinutes> = env.required(vars::SCAN_TIMEOUT_MINUTES);
        let home = Home::read(&mut env);
        env.finish(|| {
            Some(StartSettings {
                home: home?,
                report_bucket: bucket?,
                report_kms_key_arn: key?,
                scan_timeout_minutes: timeout?,
            })
        })
    }
}

/// Starts (or attaches to) the scan; returns the context with Inspector's
/// scan id, the deadline and how long to wait for the completion.
pub async fn run(
    inspector_client: &inspector::Client,
    s3_client: &s3::Client,
    settings: &StartSettings,
    mut scan: ScanContext,
    now: DateTime<Utc>,
) -> Result<ScanContext> {
    let attempt = scan.snapshot_attempt.unwrap_or(0);
    let token = naming::on_demand_token(&scan.scan_id, attempt);
    let (inspector_scan_id, attached) =
        match inspector::start_on_demand_scan(inspector_client, &scan.ami_id, &token).await? {
            OnDemandStart::Started(id) => (id, false),
            OnDemandStart::Conflict(message) => {
                match inspector::running_on_demand_scan(inspector_client, &scan.ami_id).await? {
                    Some(running) => (running.scan_id, true),
                    // It ended between the two calls: the next try starts one.
                    None => {
                        return Err(Error::Aws {
                            operation: "StartOnDemandScan",
                            code: "ConflictException".into(),
                            message: format!(
                                "{message}; but no scan of {} is running now",
                                scan.ami_id
                            ),
                            transient: true,
                        })
                    }
                }
            }
        };
    let staging = Staging::of(&inspector_scan_id)
        .map_err(|e| Error::Internal(format!("Inspector answered with scan id {e}")))?;
    // A new start after INTERNAL_ERROR: the attempt before it ends here.
    if let Some(previous) = scan
        .inspector_scan_id
        .as_deref()
        .filter(|p| *p != inspector_scan_id)
    {
        discard_attempt(s3_client, settings, previous).await?;
    }
    let minutes = u64::from(settings.scan_timeout_minutes.0);
    scan.inspector_scan_id = Some(inspector_scan_id.clone());
    scan.snapshot_attempt = Some(attempt);
    scan.wait_seconds = Some(minutes * 60);
    scan.deadline_at = Some(now + Duration::minutes(minutes as i64));
    let marker = SnapshotMarker {
        scan: scan.clone(),
        attached,
        recorded_at: now,
    };
    let body = serde_json::to_vec(&marker)
        .map_err(|e| Error::Internal(format!("encoding the marker: {e}")))?;
    s3::put_small(
        s3_client,
        &settings.report_bucket.0,
        &settings.report_kms_key_arn.0,
        &staging.marker(),
        body,
    )
    .await?;
    info!(
        scan_id = %scan.scan_id,
        ami_id = %scan.ami_id,
        inspector_scan_id = %inspector_scan_id,
        attached,
        attempt,
        "snapshot scan started"
    );
    Ok(scan)
}

/// Deletes what the scan's snapshot attempt staged (its marker, waiter,
/// completion and findings) when it ends without a report: the fall-back to
/// an instance scan, an AMI that went away, a timeout. After this the
/// collector treats the attempt's late events as not amiscan's. Returns how
/// many objects were deleted.
pub async fn discard(
    s3_client: &s3::Client,
    settings: &StartSettings,
    scan: &ScanContext,
) -> Result<u64> {
    match scan.inspector_scan_id.as_deref() {
        Some(id) => discard_attempt(s3_client, settings, id).await,
        None => Ok(0),
    }
}

async fn discard_attempt(
    s3_client: &s3::Client,
    settings: &StartSettings,
    inspector_scan_id: &str,
) -> Result<u64> {
    let staging =
        Staging::of(inspector_scan_id).map_err(|e| Error::invalid("inspector_scan_id", e))?;
    let deleted = s3::delete_under(s3_client, &settings.report_bucket.0, staging.prefix()).await?;
    info!(
        inspector_scan_id,
        deleted, "staged records of an attempt without a report deleted"
    );
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::inspector::operation::list_on_demand_scans::ListOnDemandScansOutput;
    use crate::aws::inspector::operation::start_on_demand_scan::{
        StartOnDemandScanError, StartOnDemandScanOutput,
    };
    use crate::aws::inspector::types::{
        error::ConflictException, OnDemandResourceType, OnDemandScan, OnDemandScanStatus,
    };
    use crate::aws::s3::operation::put_object::PutObjectOutput;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn settings() -> StartSettings {
        StartSettings {
            report_bucket: "amiscan-reports".parse().unwrap(),
            report_kms_key_arn: "arn:aws:kms:us-east-1:123456789012:key/k".parse().unwrap(),
            scan_timeout_minutes: "90".parse().unwrap(),
            home: crate::settings::Home::for_tests(),
        }
    }

    fn scan() -> ScanContext {
        ScanContext::new(
            "ami-0123456789abcdef0-20261123".parse().unwrap(),
            "ami-0123456789abcdef0".parse().unwrap(),
        )
    }

    /// Runs start-scan with S3 accepting only the mark of `inspector_scan_id`;
    /// the output and how many marks were written.
    async fn run_marking(
        inspector_client: &inspector::Client,
        inspector_scan_id: &str,
    ) -> (ScanContext, usize) {
        let key = format!("staging/ondemand/{inspector_scan_id}/scan.json");
        let put = mock!(s3::Client::put_object)
            .match_requests(move |r| r.key() == Some(key.as_str()))
            .then_output(|| PutObjectOutput::builder().build());
        let s3_client = mock_client!(aws_sdk_s3, [&put]);
        let out = run(
            inspector_client,
            &s3_client,
            &settings(),
            scan(),
            Utc::now(),
        )
        .await
        .unwrap();
        (out, put.num_calls())
    }

    #[tokio::test]
    async fn a_start_is_keyed_by_the_scan_and_recorded_as_amiscans() {
        let start = mock!(inspector::Client::start_on_demand_scan)
            .match_requests(|r| {
                r.client_token() == Some("amiscan-ami-0123456789abcdef0-20261123-0")
                    && r.resource_id() == Some("ami-0123456789abcdef0")
                    && r.resource_type() == Some(&OnDemandResourceType::Ami)
            })
            .then_output(|| {
                StartOnDemandScanOutput::builder()
                    .scan_id("scan-1")
                    .build()
                    .unwrap()
            });
        let inspector_client = mock_client!(aws_sdk_inspector2, [&start]);
        let (out, puts) = run_marking(&inspector_client, "scan-1").await;
        assert_eq!(out.inspector_scan_id.as_deref(), Some("scan-1"));
        assert_eq!(out.wait_seconds, Some(5400));
        assert_eq!((start.num_calls(), puts), (1, 1));
    }

    #[tokio::test]
    async fn a_conflict_attaches_to_the_scan_already_running() {
        let start = mock!(inspector::Client::start_on_demand_scan).then_error(|| {
            StartOnDemandScanError::ConflictException(
                ConflictException::builder()
                    .message("scan in progress")
                    .resource_id("ami-0123456789abcdef0")
                    .resource_type("AMI")
                    .build()
                    .unwrap(),
            )
        });
        let list = mock!(inspector::Client::list_on_demand_scans).then_output(|| {
            ListOnDemandScansOutput::builder()
                .items(
                    OnDemandScan::builder()
                        .scan_id("theirs")
                        .resource_id("ami-0123456789abcdef0")
                        .resource_type(OnDemandResourceType::Ami)
                        .scan_status(OnDemandScanStatus::InProgress)
                        .started_at(aws_smithy_types::DateTime::from_secs(1_763_900_000))
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap()
        });
        let inspector_client =
            mock_client!(aws_sdk_inspector2, RuleMode::MatchAny, [&start, &list]);
        let (out, puts) = run_marking(&inspector_client, "theirs").await;
        assert_eq!(out.inspector_scan_id.as_deref(), Some("theirs"));
        assert_eq!(puts, 1);
    }
}

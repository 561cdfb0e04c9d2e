//! Starting one launch execution per chosen AMI.

#[allow(unused_imports)]
use super::*;

pub(crate) enum StartOutcome {
    Started(StartedScan),
    AlreadyRunning(StartedScan),
    Failed(Skipped),
}

pub(crate) fn started_scan(
    ami: &AmiCandidate,
    scan_id: ScanId,
    execution_arn: Option<String>,
    now: DateTime<Utc>,
) -> StartedScan {
    StartedScan {
        ami_id: ami.ami_id.clone(),
        place: ami.place.clone(),
        scan_id,
        execution_arn,
        last_scanned: ami.last_scanned,
        scan_age_days: ami.scan_age_days(now),
    }
}

pub(crate) async fn start_one(
    client: &sfn::Client,
    machine_arn: &str,
    ami: AmiCandidate,
    now: DateTime<Utc>,
    force: bool,
    mode: ScanMode,
    no_instance_scan: Option<String>,
) -> StartOutcome {
    let scan_id = ScanId::new(&ami.ami_id, now, force);
    let mut context = ScanContext::new(scan_id.clone(), ami.ami_id.clone());
    context.account_id = Some(ami.place.account_id.clone());
    context.region = Some(ami.place.region.clone());
    context.scan_mode = Some(mode);
    context.no_instance_scan = no_instance_scan;
    context.ami_name = ami.name.clone();
    context.platform = Some(ami.platform.clone());
    context.requested_at = Some(now);
    let failed = |reason: String| {
        StartOutcome::Failed(Skipped {
            ami_id: ami.ami_id.to_string(),
            reason,
        })
    };
    let input = match serde_json::to_string(&json!({ "scan": context })) {
        Ok(input) => input,
        Err(e) => return failed(format!("encoding the execution input: {e}")),
    };
    let name = naming::execution_name(&scan_id);
    match sfn::start_execution(client, machine_arn, &name, input).await {
        Ok(Started::New(arn)) => {
            info!(ami_id = %ami.ami_id, scan_id = %scan_id, "scan started");
            StartOutcome::Started(started_scan(&ami, scan_id, Some(arn), now))
        }
        Ok(Started::AlreadyExists) => {
            info!(ami_id = %ami.ami_id, scan_id = %scan_id, "scan already started today");
            StartOutcome::AlreadyRunning(started_scan(&ami, scan_id, None, now))
        }
        Err(err) => {
            warn!(ami_id = %ami.ami_id, error = %err, "could not start the scan");
            failed(err.to_string())
        }
    }
}

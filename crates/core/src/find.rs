//! find-amis: choose the AMIs to scan and start one launch execution each.
//! The choice is pure (`plan_scans`); listing AMIs and starting executions
//! are thin calls around it.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::aws::{ec2, sfn, sns};
use crate::error::{Error, Result};
use crate::model::{parse_event, ScanContext};
use crate::naming::{self, TagPrefix};
use crate::notify::{self, EventType, Notification};
use crate::settings::FindSettings;

/// StartExecution calls in flight at once.
const START_CONCURRENCY: usize = 8;
/// EC2 accepts at most 200 values in one filter.
const FILTER_VALUES_MAX: usize = 200;
/// Skip reasons for named AMIs (launch-instance maps them to its errors).
pub const NOT_FOUND: &str = "not found";
pub const NOT_OWNED: &str = "not owned by this account";
/// The most AMIs one manual request may name.
pub const REQUEST_AMIS_MAX: usize = 1000;

/// What started this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindRequest {
    /// The schedule, an EventBridge rule or `{}`: every tagged AMI.
    Tagged { force: bool },
    /// Named AMIs, tagged or not.
    Requested { ami_ids: Vec<String>, force: bool },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManualRequest {
    #[serde(default)]
    ami_ids: Option<Vec<String>>,
    /// Scan again even when today's scan of the AMI already ran.
    #[serde(default)]
    force: bool,
}

/// Parses the event: a scheduled EventBridge event, `{}`, or a manual request.
pub fn parse_request(payload: Value) -> Result<FindRequest> {
    if payload.get("detail-type").is_some() {
        let _event: aws_lambda_events::eventbridge::EventBridgeEvent = parse_event(payload)?;
        return Ok(FindRequest::Tagged { force: false });
    }
    let request: ManualRequest = parse_event(payload)?;
    let Some(ids) = request.ami_ids else {
        return Ok(FindRequest::Tagged {
            force: request.force,
        });
    };
    if ids.is_empty() {
        return Err(Error::invalid(
            "ami_ids",
            "is empty; omit it to scan every tagged AMI",
        ));
    }
    if ids.len() > REQUEST_AMIS_MAX {
        return Err(Error::invalid(
            "ami_ids",
            format!(
                "names {} AMIs; at most {REQUEST_AMIS_MAX} per request",
                ids.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut ami_ids = Vec::new();
    for (i, id) in ids.into_iter().enumerate() {
        naming::require_ami_id(&format!("ami_ids[{i}]"), &id)?;
        if seen.insert(id.clone()) {
            ami_ids.push(id);
        }
    }
    Ok(FindRequest::Requested {
        ami_ids,
        force: request.force,
    })
}

/// An AMI that may be scanned, as DescribeImages reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmiCandidate {
    pub ami_id: String,
    pub name: Option<String>,
    pub platform: String,
    pub state: String,
    /// When amiscan last completed a scan of it, from its tags.
    pub last_scanned: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub ami_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartedScan {
    pub ami_id: String,
    pub scan_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
}

/// find-amis' result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindOutput {
    pub found: usize,
    pub started: Vec<StartedScan>,
    pub already_running: Vec<StartedScan>,
    pub skipped: Vec<Skipped>,
    /// Executions that could not be started; the run fails so it is retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<Skipped>,
}

/// The AMIs to start, in order, and why every other one is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub to_start: Vec<AmiCandidate>,
    pub skipped: Vec<Skipped>,
}

/// Decides which AMIs to scan. `scanning` maps an AMI to a live scanner
/// instance already scanning it; the `in_flight` live scanner instances count
/// against `cap`. The
/// AMIs scanned longest ago (or never) go first, so a cap below the number of
/// tagged AMIs still reaches every AMI over successive runs.
pub fn plan_scans(
    mut candidates: Vec<AmiCandidate>,
    not_scannable: Vec<Skipped>,
    scanning: &HashMap<String, String>,
    in_flight: usize,
    cap: u32,
) -> Plan {
    let mut skipped = not_scannable;
    candidates.sort_by(|a, b| {
        a.last_scanned
            .cmp(&b.last_scanned)
            .then_with(|| a.ami_id.cmp(&b.ami_id))
    });
    let mut budget = (cap as usize).saturating_sub(in_flight);
    let mut to_start = Vec::new();
    for ami in candidates {
        let reason = if ami.state != "available" {
            Some(format!("state is {} (not available)", ami.state))
        } else if let Some(instance) = scanning.get(&ami.ami_id) {
            Some(format!("already being scanned by instance {instance}"))
        } else if budget == 0 {
            Some(format!(
                "concurrent-scan cap of {cap} reached; first in line next run"
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => skipped.push(Skipped {
                ami_id: ami.ami_id,
                reason,
            }),
            None => {
                budget -= 1;
                to_start.push(ami);
            }
        }
    }
    Plan { to_start, skipped }
}

fn candidate(image: &ec2::types::Image, prefix: &TagPrefix) -> Option<AmiCandidate> {
    let last_key = prefix.key(crate::tagging::LAST_SCAN);
    Some(AmiCandidate {
        ami_id: image.image_id()?.to_string(),
        name: image.name().map(str::to_string),
        platform: image.platform_details().unwrap_or("Linux/UNIX").to_string(),
        state: image
            .state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|| "unknown".into()),
        last_scanned: image
            .tags()
            .iter()
            .find(|t| t.key() == Some(last_key.as_str()))
            .and_then(|t| t.value())
            .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
            .map(|t| t.with_timezone(&Utc)),
    })
}

pub(crate) fn filter(
    name: &str,
    values: impl IntoIterator<Item = impl Into<String>>,
) -> ec2::types::Filter {
    values
        .into_iter()
        .fold(ec2::types::Filter::builder().name(name), |b, v| b.values(v))
        .build()
}

async fn describe_images(
    client: &ec2::Client,
    owned_only: bool,
    filters: Vec<ec2::types::Filter>,
) -> Result<Vec<ec2::types::Image>> {
    let mut request = client.describe_images().set_filters(Some(filters));
    if owned_only {
        request = request.owners("self");
    }
    let pages: Vec<_> = request.into_paginator().send().collect::<Vec<_>>().await;
    let mut images = Vec::new();
    for page in pages {
        let page = page.map_err(|e| Error::from_sdk("DescribeImages", e))?;
        images.extend(page.images.unwrap_or_default());
    }
    Ok(images)
}

/// The account's own AMIs that carry the selection tag, every page.
pub async fn list_tagged_amis(
    client: &ec2::Client,
    tag_key: &str,
    tag_value: &str,
) -> Result<Vec<ec2::types::Image>> {
    describe_images(
        client,
        true,
        vec![filter(&format!("tag:{tag_key}"), [tag_value])],
    )
    .await
}

/// Looks up named AMIs: the owned images, and a skip for each one that does
/// not exist or belongs to another account.
pub async fn lookup_amis(
    client: &ec2::Client,
    ami_ids: &[String],
) -> Result<(Vec<ec2::types::Image>, Vec<Skipped>)> {
    let mut owned = Vec::new();
    let mut visible = BTreeSet::new();
    for chunk in ami_ids.chunks(FILTER_VALUES_MAX) {
        // Filtering by image-id, unlike ImageIds, does not fail the whole call
        // on one missing id.
        for image in describe_images(client, false, vec![filter("image-id", chunk)]).await? {
            visible.extend(image.image_id().map(str::to_string));
        }
        owned.extend(describe_images(client, true, vec![filter("image-id", chunk)]).await?);
    }
    let owned_ids: BTreeSet<&str> = owned.iter().filter_map(|i| i.image_id()).collect();
    let skipped = ami_ids
        .iter()
        .filter(|id| !owned_ids.contains(id.as_str()))
        .map(|id| Skipped {
            ami_id: id.clone(),
            reason: if visible.contains(id) {
                NOT_OWNED.into()
            } else {
                NOT_FOUND.into()
            },
        })
        .collect();
    Ok((owned, skipped))
}

/// A live instance that amiscan launched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannerInstance {
    pub instance_id: String,
    pub ami_id: Option<String>,
    pub scan_id: Option<String>,
    pub state: String,
    pub launch_time: Option<DateTime<Utc>>,
}

/// Instance states in which a scan instance still costs money.
pub const LIVE_STATES: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// Describes instances by filter, every page. Filtering by `instance-id`
/// rather than passing ids leaves missing ids out instead of failing the call.
pub(crate) async fn describe_instances(
    client: &ec2::Client,
    filters: Vec<ec2::types::Filter>,
) -> Result<Vec<ec2::types::Instance>> {
    let pages: Vec<_> = client
        .describe_instances()
        .set_filters(Some(filters))
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await;
    let mut out = Vec::new();
    for page in pages {
        let page = page.map_err(|e| Error::from_sdk("DescribeInstances", e))?;
        out.extend(
            page.reservations
                .unwrap_or_default()
                .into_iter()
                .flat_map(|r| r.instances.unwrap_or_default()),
        );
    }
    Ok(out)
}

/// Every scanner-managed instance that is not terminated or terminating.
pub async fn live_scanner_instances(client: &ec2::Client) -> Result<Vec<ScannerInstance>> {
    let instances = describe_instances(
        client,
        vec![
            filter(
                &format!("tag:{}", naming::MANAGED_TAG),
                [naming::MANAGED_VALUE],
            ),
            filter("instance-state-name", LIVE_STATES),
        ],
    )
    .await?;
    Ok(instances.iter().filter_map(scanner_instance).collect())
}

pub(crate) fn scanner_instance(instance: &ec2::types::Instance) -> Option<ScannerInstance> {
    let tag = |key: &str| {
        instance
            .tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    Some(ScannerInstance {
        instance_id: instance.instance_id()?.to_string(),
        ami_id: tag(naming::AMI_ID_TAG),
        scan_id: tag(naming::SCAN_ID_TAG),
        state: instance
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        launch_time: instance
            .launch_time()
            .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
    })
}

enum StartOutcome {
    Started(StartedScan),
    AlreadyRunning(StartedScan),
    Failed(Skipped),
}

async fn start_one(
    client: &sfn::Client,
    machine_arn: &str,
    ami: AmiCandidate,
    now: DateTime<Utc>,
    force: bool,
) -> StartOutcome {
    let scan_id = naming::scan_id(&ami.ami_id, now, force);
    let context = ScanContext {
        scan_id: scan_id.clone(),
        ami_id: ami.ami_id.clone(),
        ami_name: ami.name,
        platform: Some(ami.platform),
        requested_at: Some(now),
        instance_id: None,
        instance_type: None,
        launched_at: None,
        deadline_at: None,
        rule_name: None,
    };
    let input = match serde_json::to_string(&serde_json::json!({ "scan": context })) {
        Ok(input) => input,
        Err(e) => {
            return StartOutcome::Failed(Skipped {
                ami_id: ami.ami_id,
                reason: format!("encoding the execution input: {e}"),
            })
        }
    };
    let result = client
        .start_execution()
        .state_machine_arn(machine_arn)
        .name(naming::execution_name(&scan_id))
        .input(input)
        .send()
        .await;
    match result {
        Ok(out) => {
            info!(ami_id = %ami.ami_id, scan_id = %scan_id, "scan started");
            StartOutcome::Started(StartedScan {
                ami_id: ami.ami_id,
                scan_id,
                execution_arn: Some(out.execution_arn),
            })
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_execution_already_exists()) =>
        {
            info!(ami_id = %ami.ami_id, scan_id = %scan_id, "scan already started today");
            StartOutcome::AlreadyRunning(StartedScan {
                ami_id: ami.ami_id,
                scan_id,
                execution_arn: None,
            })
        }
        Err(err) => {
            let err = Error::from_sdk("StartExecution", err);
            warn!(ami_id = %ami.ami_id, error = %err, "could not start the scan");
            StartOutcome::Failed(Skipped {
                ami_id: ami.ami_id,
                reason: err.to_string(),
            })
        }
    }
}

/// The run's summary message.
pub fn summary(
    output: &FindOutput,
    settings: &FindSettings,
    request: &FindRequest,
) -> Notification {
    let selection = match request {
        FindRequest::Tagged { .. } => format!(
            "AMIs tagged {}={}",
            settings.selection_tag_key, settings.selection_tag_value
        ),
        FindRequest::Requested { ami_ids, .. } => format!("{} requested AMIs", ami_ids.len()),
    };
    let (event_type, subject) = if output.found == 0 {
        (
            EventType::NothingToScan,
            format!("amiscan: nothing to scan, no {selection}"),
        )
    } else if output.started.is_empty() {
        (
            EventType::NothingToScan,
            format!(
                "amiscan: no scan started ({} found, {} already running, {} skipped)",
                output.found,
                output.already_running.len(),
                output.skipped.len()
            ),
        )
    } else {
        (
            EventType::ScanBatchStarted,
            format!(
                "amiscan: started {} scans ({} found, {} skipped)",
                output.started.len(),
                output.found,
                output.skipped.len()
            ),
        )
    };
    let severity = if output.failed.is_empty() {
        "INFO"
    } else {
        "ERROR"
    };
    Notification {
        subject,
        event_type,
        severity: severity.into(),
        body: json!({
            "event_type": event_type,
            "selection": selection,
            "found": output.found,
            "counts": {
                "started": output.started.len(),
                "already_running": output.already_running.len(),
                "skipped": output.skipped.len(),
                "failed": output.failed.len(),
            },
            "started": first_listed(&output.started),
            "already_running": first_listed(&output.already_running),
            "skipped": first_listed(&output.skipped),
            "failed": first_listed(&output.failed),
            "not_listed": {
                "started": output.started.len().saturating_sub(LISTED_PER_KIND),
                "already_running": output.already_running.len().saturating_sub(LISTED_PER_KIND),
                "skipped": output.skipped.len().saturating_sub(LISTED_PER_KIND),
                "failed": output.failed.len().saturating_sub(LISTED_PER_KIND),
            },
        }),
    }
}

/// Entries of each kind the run's alert lists. SNS refuses a message over
/// 256 KiB, and a weekly run over thousands of tagged AMIs skips thousands
/// (over the concurrency cap): the alert lists the first ones and counts the
/// rest; the function's own output lists every one.
pub const LISTED_PER_KIND: usize = 50;

fn first_listed<T: serde::Serialize>(entries: &[T]) -> &[T] {
    &entries[..entries.len().min(LISTED_PER_KIND)]
}

/// Lists, plans, starts and reports. Returns an error after publishing the
/// summary when any execution could not be started, so the run is retried;
/// executions already started are then reported as already running.
pub async fn find_and_start(
    ec2_client: &ec2::Client,
    sfn_client: &sfn::Client,
    sns_client: &sns::Client,
    settings: &FindSettings,
    request: &FindRequest,
    now: DateTime<Utc>,
) -> Result<FindOutput> {
    let (images, not_scannable, force) = match request {
        FindRequest::Tagged { force } => (
            list_tagged_amis(
                ec2_client,
                &settings.selection_tag_key,
                &settings.selection_tag_value,
            )
            .await?,
            Vec::new(),
            *force,
        ),
        FindRequest::Requested { ami_ids, force } => {
            let (images, skipped) = lookup_amis(ec2_client, ami_ids).await?;
            (images, skipped, *force)
        }
    };
    let found = images.len() + not_scannable.len();
    let candidates: Vec<_> = images
        .iter()
        .filter_map(|i| candidate(i, &settings.tag_prefix))
        .collect();
    let live = live_scanner_instances(ec2_client).await?;
    let in_flight = live.len();
    let scanning: HashMap<String, String> = live
        .into_iter()
        .filter_map(|i| Some((i.ami_id?, i.instance_id)))
        .collect();
    let plan = plan_scans(
        candidates,
        not_scannable,
        &scanning,
        in_flight,
        settings.max_concurrent_scans,
    );
    for skip in &plan.skipped {
        info!(ami_id = %skip.ami_id, reason = %skip.reason, "skipped");
    }

    let outcomes: Vec<StartOutcome> = stream::iter(plan.to_start)
        .map(|ami| {
            start_one(
                sfn_client,
                &settings.launch_state_machine_arn.0,
                ami,
                now,
                force,
            )
        })
        .buffer_unordered(START_CONCURRENCY)
        .collect()
        .await;
    let mut output = FindOutput {
        found,
        skipped: plan.skipped,
        ..FindOutput::default()
    };
    for outcome in outcomes {
        match outcome {
            StartOutcome::Started(s) => output.started.push(s),
            StartOutcome::AlreadyRunning(s) => output.already_running.push(s),
            StartOutcome::Failed(s) => output.failed.push(s),
        }
    }
    output.started.sort_by(|a, b| a.ami_id.cmp(&b.ami_id));
    output
        .already_running
        .sort_by(|a, b| a.ami_id.cmp(&b.ami_id));

    notify::publish(
        sns_client,
        &settings.topic_arn.0,
        &summary(&output, settings, request),
    )
    .await?;
    if let Some(first) = output.failed.first() {
        return Err(Error::Aws {
            operation: "StartExecution",
            code: "PartialFailure".into(),
            message: format!(
                "{} of {} executions could not be started; first: {}: {}",
                output.failed.len(),
                output.failed.len() + output.started.len() + output.already_running.len(),
                first.ami_id,
                first.reason
            ),
            transient: true,
        });
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use chrono::TimeZone;
    use serde_json::json;

    fn ami(id: &str, state: &str, last: Option<&str>) -> AmiCandidate {
        AmiCandidate {
            ami_id: id.into(),
            name: None,
            platform: "Linux/UNIX".into(),
            state: state.into(),
            last_scanned: last
                .map(|t| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)),
        }
    }

    #[test]
    fn requests_parse_into_tagged_or_named_runs() {
        let scheduled: Value =
            serde_json::from_str(include_str!("../../../events/find-amis/scheduled.json")).unwrap();
        assert_eq!(
            parse_request(scheduled).unwrap(),
            FindRequest::Tagged { force: false }
        );
        assert_eq!(
            parse_request(json!({})).unwrap(),
            FindRequest::Tagged { force: false }
        );
        let manual: Value =
            serde_json::from_str(include_str!("../../../events/find-amis/manual.json")).unwrap();
        assert_eq!(
            parse_request(manual).unwrap(),
            FindRequest::Requested {
                ami_ids: vec![
                    "ami-0123456789abcdef0".into(),
                    "ami-0fedcba9876543210".into()
                ],
                force: false
            }
        );
        let rescan: Value =
            serde_json::from_str(include_str!("../../../events/find-amis/rescan-today.json"))
                .unwrap();
        assert!(matches!(
            parse_request(rescan).unwrap(),
            FindRequest::Requested { force: true, .. }
        ));
        let duplicated =
            parse_request(json!({"ami_ids": ["ami-12345678", "ami-12345678"]})).unwrap();
        assert!(matches!(duplicated, FindRequest::Requested { ami_ids, .. } if ami_ids.len() == 1));
    }

    #[test]
    fn bad_requests_name_their_field() {
        let field_of = |v: Value| match parse_request(v).unwrap_err() {
            Error::InvalidInput { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field_of(json!({"ami_ids": []})), "ami_ids");
        assert_eq!(
            field_of(json!({"ami_ids": ["ami-12345678", "bogus"]})),
            "ami_ids[1]"
        );
        assert_eq!(field_of(json!({"ami_ids": "ami-12345678"})), "ami_ids");
        assert_eq!(field_of(json!({"force": "yes"})), "force");
        assert_eq!(field_of(json!({"subnet_id": "subnet-1"})), "subnet_id");
        assert_eq!(
            field_of(json!({"detail-type": "Scheduled Event"})),
            "source"
        );
    }

    #[test]
    fn the_plan_skips_with_reasons_and_starts_the_least_recently_scanned_first() {
        let candidates = vec![
            ami("ami-00000001", "available", Some("2026-11-20T00:00:00Z")),
            ami("ami-00000002", "pending", None),
            ami("ami-00000003", "available", None),
            ami("ami-00000004", "available", Some("2026-11-01T00:00:00Z")),
            ami("ami-00000005", "available", None),
        ];
        let scanning = HashMap::from([("ami-00000005".to_string(), "i-0000000a".to_string())]);
        let missing = vec![Skipped {
            ami_id: "ami-0000dead".into(),
            reason: "not found".into(),
        }];
        let plan = plan_scans(candidates, missing, &scanning, 1, 3);
        let started: Vec<_> = plan.to_start.iter().map(|a| a.ami_id.as_str()).collect();
        // One slot is taken by the running scan: two start, never-scanned first.
        assert_eq!(started, ["ami-00000003", "ami-00000004"]);
        let reasons: HashMap<_, _> = plan
            .skipped
            .iter()
            .map(|s| (s.ami_id.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(reasons["ami-0000dead"], "not found");
        assert_eq!(reasons["ami-00000002"], "state is pending (not available)");
        assert_eq!(
            reasons["ami-00000005"],
            "already being scanned by instance i-0000000a"
        );
        assert_eq!(
            reasons["ami-00000001"],
            "concurrent-scan cap of 3 reached; first in line next run"
        );
        assert_eq!(plan.to_start.len() + plan.skipped.len(), 6);
    }

    fn image(id: &str) -> ec2::types::Image {
        ec2::types::Image::builder()
            .image_id(id)
            .state(ec2::types::ImageState::Available)
            .build()
    }

    #[tokio::test]
    async fn listing_follows_every_page() {
        let page1 = mock!(ec2::Client::describe_images)
            .match_requests(|r| r.next_token().is_none() && r.owners() == ["self"])
            .then_output(|| {
                ec2::operation::describe_images::DescribeImagesOutput::builder()
                    .images(image("ami-00000001"))
                    .images(image("ami-00000002"))
                    .next_token("page-2")
                    .build()
            });
        let page2 = mock!(ec2::Client::describe_images)
            .match_requests(|r| r.next_token() == Some("page-2"))
            .then_output(|| {
                ec2::operation::describe_images::DescribeImagesOutput::builder()
                    .images(image("ami-00000003"))
                    .build()
            });
        let client = mock_client!(ec2, RuleMode::Sequential, [&page1, &page2]);
        let images = list_tagged_amis(&client, "InspectorScan", "true")
            .await
            .unwrap();
        let ids: Vec<_> = images.iter().filter_map(|i| i.image_id()).collect();
        assert_eq!(ids, ["ami-00000001", "ami-00000002", "ami-00000003"]);
        assert_eq!((page1.num_calls(), page2.num_calls()), (1, 1));
    }

    fn summary_settings() -> FindSettings {
        FindSettings {
            selection_tag_key: "InspectorScan".into(),
            selection_tag_value: "true".into(),
            tag_prefix: "amiscan:".parse().unwrap(),
            max_concurrent_scans: 20,
            launch_state_machine_arn: "arn:aws:states:us-east-1:1:stateMachine:x".parse().unwrap(),
            topic_arn: "arn:aws:sns:us-east-1:1:t".parse().unwrap(),
        }
    }

    #[test]
    fn the_summary_says_nothing_tagged_or_how_many_started() {
        let settings = summary_settings();
        let request = FindRequest::Tagged { force: false };
        let empty = summary(&FindOutput::default(), &settings, &request);
        assert_eq!(empty.event_type, EventType::NothingToScan);
        assert_eq!(
            empty.subject,
            "amiscan: nothing to scan, no AMIs tagged InspectorScan=true"
        );
        let started = FindOutput {
            found: 2,
            started: vec![StartedScan {
                ami_id: "ami-00000001".into(),
                scan_id: naming::scan_id(
                    "ami-00000001",
                    Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0).unwrap(),
                    false,
                ),
                execution_arn: None,
            }],
            skipped: vec![Skipped {
                ami_id: "ami-00000002".into(),
                reason: "x".into(),
            }],
            ..FindOutput::default()
        };
        let note = summary(&started, &settings, &request);
        assert_eq!(note.event_type, EventType::ScanBatchStarted);
        assert_eq!(
            note.subject,
            "amiscan: started 1 scans (2 found, 1 skipped)"
        );
        assert_eq!(note.body["started"][0]["scan_id"], "ami-00000001-20261127");
    }

    #[test]
    fn the_run_alert_stays_under_the_sns_size_limit_over_ten_thousand_amis() {
        let settings = summary_settings();
        let request = FindRequest::Tagged { force: false };
        let output = FindOutput {
            found: 10_000,
            skipped: (0..9_990)
                .map(|n| Skipped {
                    ami_id: format!("ami-{n:017x}"),
                    reason:
                        "the concurrency cap (20 scans at once) is reached; scanned on a later run"
                            .into(),
                })
                .collect(),
            ..FindOutput::default()
        };
        let note = summary(&output, &settings, &request);
        let size = serde_json::to_string(&note.body).unwrap().len();
        assert!(size < 64 * 1024, "{size} bytes");
        assert_eq!(note.body["counts"]["skipped"], 9_990);
        assert_eq!(
            note.body["skipped"].as_array().unwrap().len(),
            LISTED_PER_KIND
        );
        assert_eq!(note.body["not_listed"]["skipped"], 9_990 - LISTED_PER_KIND);
        assert_eq!(note.body["skipped"][0]["ami_id"], "ami-00000000000000000");
    }
}

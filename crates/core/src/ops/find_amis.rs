//! find-amis: choose the AMIs to scan and start one launch execution each.
//! The choice is pure (`plan_scans`); listing AMIs and starting executions
//! are thin calls around it.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::aws::ec2::{self, Images, Instances};
use crate::aws::sfn::{self, Started};
use crate::aws::sns;
use crate::error::{Error, Result};
use crate::model::ScanMode;
use crate::model::{parse_event, AmiId, Input, ScanContext, ScanId};
use crate::naming;
use crate::notify::{self, EventType, Notification};
use crate::settings::{
    vars, EnvReader, FromEnv, MaxConcurrentScans, StateMachineArn, TopicArn,
    MAX_CONCURRENT_INSTANCE_SCANS,
};
use crate::tags::{self, TagPrefix};

/// StartExecution calls in flight at once.
const START_CONCURRENCY: usize = 8;
/// The most AMIs one manual request may name.
pub const REQUEST_AMIS_MAX: usize = 1000;
/// Skip reasons for named AMIs.
pub const NOT_FOUND: &str = "not found";
pub const NOT_OWNED: &str = "not owned by this account";

/// find-amis: which AMIs, how many at once, which machine to start.
#[derive(Debug, Clone)]
pub struct FindSettings {
    pub selection_tag_key: String,
    pub selection_tag_value: String,
    pub tag_prefix: TagPrefix,
    pub max_concurrent_scans: u32,
    pub launch_state_machine_arn: StateMachineArn,
    pub topic_arn: TopicArn,
    pub scan_mode: ScanMode,
}

impl FromEnv for FindSettings {
    fn from_env<F: Fn(&str) -> Option<String>>(mut env: EnvReader<F>) -> Result<Self> {
        let key: Option<String> = env.required(vars::SELECTION_TAG_KEY);
        let value: Option<String> = env.required(vars::SELECTION_TAG_VALUE);
        let prefix: Option<TagPrefix> = env.required(vars::TAG_PREFIX);
        let cap: Option<MaxConcurrentScans> = env.required(vars::MAX_CONCURRENT_SCANS);
        let machine: Option<StateMachineArn> = env.required(vars::LAUNCH_STATE_MACHINE_ARN);
        let topic: Option<TopicArn> = env.required(vars::TOPIC_ARN);
        let mode: Option<ScanMode> = env.optional(vars::SCAN_MODE, ScanMode::Auto);
        let settings = env.finish(|| {
            Some(FindSettings {
                selection_tag_key: key?,
                selection_tag_value: value?,
                tag_prefix: prefix?,
                max_concurrent_scans: cap?.0,
                launch_state_machine_arn: machine?,
                topic_arn: topic?,
                scan_mode: mode?,
            })
        })?;
        if settings.scan_mode.can_launch()
            && settings.max_concurrent_scans > MAX_CONCURRENT_INSTANCE_SCANS
        {
            return Err(Error::Configuration(format!(
                "{}={} is above {MAX_CONCURRENT_INSTANCE_SCANS}, the most a {} stack can run at once (one EventBridge rule per instance scan); only SCAN_MODE=snapshot allows up to 1000",
                vars::MAX_CONCURRENT_SCANS,
                settings.max_concurrent_scans,
                settings.scan_mode
            )));
        }
        Ok(settings)
    }
}

/// What started this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindRequest {
    /// The schedule, an EventBridge rule or `{}`: every tagged AMI.
    Tagged { force: bool },
    /// Named AMIs, tagged or not.
    Requested { ami_ids: Vec<AmiId>, force: bool },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManualRequest {
    #[serde(default)]
    ami_ids: Option<Vec<AmiId>>,
    /// Scan again even when today's scan of the AMI already ran.
    #[serde(default)]
    force: bool,
}

impl Input for ManualRequest {
    fn check(&self) -> Result<()> {
        match &self.ami_ids {
            Some(ids) if ids.is_empty() => Err(Error::invalid(
                "ami_ids",
                "is empty; omit it to scan every tagged AMI",
            )),
            Some(ids) if ids.len() > REQUEST_AMIS_MAX => Err(Error::invalid(
                "ami_ids",
                format!(
                    "names {} AMIs; at most {REQUEST_AMIS_MAX} per request",
                    ids.len()
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// Parses the event: a scheduled EventBridge event, `{}`, or a manual request.
pub fn parse_request(payload: Value) -> Result<FindRequest> {
    if payload.get("detail-type").is_some() {
        let _event: aws_lambda_events::eventbridge::EventBridgeEvent = parse_event(payload)?;
        return Ok(FindRequest::Tagged { force: false });
    }
    let request: ManualRequest = parse_event(payload)?;
    let force = request.force;
    let Some(ids) = request.ami_ids else {
        return Ok(FindRequest::Tagged { force });
    };
    let mut seen = BTreeSet::new();
    let ami_ids = ids
        .into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect();
    Ok(FindRequest::Requested { ami_ids, force })
}

/// An AMI that may be scanned, as DescribeImages reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmiCandidate {
    pub ami_id: AmiId,
    pub name: Option<String>,
    pub platform: String,
    pub state: String,
    /// When amiscan last completed a scan of it, from its tags.
    pub last_scanned: Option<DateTime<Utc>>,
}

impl AmiCandidate {
    fn of(image: &ec2::types::Image, prefix: &TagPrefix) -> Option<AmiCandidate> {
        Some(AmiCandidate {
            ami_id: image.image_id()?.parse().ok()?,
            name: image.name().map(str::to_string),
            platform: image.platform_details().unwrap_or("Linux/UNIX").to_string(),
            state: image
                .state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "unknown".into()),
            last_scanned: ec2::tag(image.tags(), &prefix.key(tags::LAST_SCAN))
                .and_then(crate::model::time::parse),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub ami_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartedScan {
    pub ami_id: AmiId,
    pub scan_id: ScanId,
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
/// against `cap`. The AMIs scanned longest ago (or never) go first, so a cap
/// below the number of tagged AMIs still reaches every AMI over successive
/// runs.
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
        } else if let Some(instance) = scanning.get(ami.ami_id.as_str()) {
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
                ami_id: ami.ami_id.to_string(),
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
    mode: ScanMode,
) -> StartOutcome {
    let scan_id = ScanId::new(&ami.ami_id, now, force);
    let mut context = ScanContext::new(scan_id.clone(), ami.ami_id.clone());
    context.scan_mode = Some(mode);
    context.ami_name = ami.name;
    context.platform = Some(ami.platform);
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
            StartOutcome::Started(StartedScan {
                ami_id: ami.ami_id.clone(),
                scan_id,
                execution_arn: Some(arn),
            })
        }
        Ok(Started::AlreadyExists) => {
            info!(ami_id = %ami.ami_id, scan_id = %scan_id, "scan already started today");
            StartOutcome::AlreadyRunning(StartedScan {
                ami_id: ami.ami_id.clone(),
                scan_id,
                execution_arn: None,
            })
        }
        Err(err) => {
            warn!(ami_id = %ami.ami_id, error = %err, "could not start the scan");
            failed(err.to_string())
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
pub async fn run(
    ec2_client: &ec2::Client,
    sfn_client: &sfn::Client,
    sns_client: &sns::Client,
    settings: &FindSettings,
    request: &FindRequest,
    now: DateTime<Utc>,
) -> Result<FindOutput> {
    let (images, not_scannable, force) = match request {
        FindRequest::Tagged { force } => {
            let images = ec2::describe_images(
                ec2_client,
                Images::OwnedTagged {
                    key: &settings.selection_tag_key,
                    value: &settings.selection_tag_value,
                },
            )
            .await?;
            (images, Vec::new(), *force)
        }
        FindRequest::Requested { ami_ids, force } => {
            let lookup = ec2::lookup_images(ec2_client, ami_ids).await?;
            let skipped = ami_ids
                .iter()
                .filter_map(|id| {
                    let reason = if lookup.foreign.contains(id) {
                        NOT_OWNED
                    } else if lookup.missing.contains(id) {
                        NOT_FOUND
                    } else {
                        return None;
                    };
                    Some(Skipped {
                        ami_id: id.to_string(),
                        reason: reason.into(),
                    })
                })
                .collect();
            (lookup.owned, skipped, *force)
        }
    };
    let found = images.len() + not_scannable.len();
    let candidates: Vec<_> = images
        .iter()
        .filter_map(|i| AmiCandidate::of(i, &settings.tag_prefix))
        .collect();
    drop(images);
    let live = ec2::describe_instances(
        ec2_client,
        Instances::Scanners {
            scan_id: None,
            live_only: true,
        },
    )
    .await?;
    let in_flight = live.len();
    let scanning: HashMap<String, String> = live
        .into_iter()
        .filter_map(|i| Some((i.ami_id?, i.instance_id.to_string())))
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
                settings.scan_mode,
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
    use chrono::TimeZone;

    fn ami(id: &str, state: &str, last: Option<&str>) -> AmiCandidate {
        AmiCandidate {
            ami_id: id.parse().unwrap(),
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
            serde_json::from_str(include_str!("../../../../events/find-amis/scheduled.json"))
                .unwrap();
        assert_eq!(
            parse_request(scheduled).unwrap(),
            FindRequest::Tagged { force: false }
        );
        assert_eq!(
            parse_request(json!({})).unwrap(),
            FindRequest::Tagged { force: false }
        );
        let manual: Value =
            serde_json::from_str(include_str!("../../../../events/find-amis/manual.json")).unwrap();
        assert_eq!(
            parse_request(manual).unwrap(),
            FindRequest::Requested {
                ami_ids: vec![
                    "ami-0123456789abcdef0".parse().unwrap(),
                    "ami-0fedcba9876543210".parse().unwrap()
                ],
                force: false
            }
        );
        let rescan: Value = serde_json::from_str(include_str!(
            "../../../../events/find-amis/rescan-today.json"
        ))
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

    fn summary_settings() -> FindSettings {
        FindSettings {
            selection_tag_key: "InspectorScan".into(),
            selection_tag_value: "true".into(),
            tag_prefix: "amiscan:".parse().unwrap(),
            max_concurrent_scans: 20,
            launch_state_machine_arn: "arn:aws:states:us-east-1:1:stateMachine:x".parse().unwrap(),
            topic_arn: "arn:aws:sns:us-east-1:1:t".parse().unwrap(),
            scan_mode: ScanMode::Auto,
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
                ami_id: "ami-00000001".parse().unwrap(),
                scan_id: ScanId::new(
                    &"ami-00000001".parse().unwrap(),
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

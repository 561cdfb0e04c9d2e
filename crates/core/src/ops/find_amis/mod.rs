//! find-amis: choose the AMIs to scan and start one launch execution each.
//! The choice is pure (`plan_scans`); listing AMIs, counting the scans in
//! flight and starting executions are thin calls around it.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{error, info, warn};

use crate::aws::ec2::{self, Images, Instances};
use crate::aws::sfn::{self, Started};
use crate::aws::{s3, sns};
use crate::error::{Error, Result};
use crate::model::exceptions::{self, AmiMatch, EXCEPTIONS_KEY};
use crate::model::sqs::SqsBatch;
use crate::model::ScanMode;
use crate::model::{parse_event, AmiId, Input, ScanContext, ScanId};
use crate::naming;
use crate::notify::{self, EventType, Notification};
use crate::settings::{
    vars, Bounded, BucketName, EnvReader, FromEnv, MaxConcurrentScans, StateMachineArn, TopicArn,
    MAX_CONCURRENT_INSTANCE_SCANS,
};
use crate::tags::{self, TagPrefix};

mod expiry;
mod output;
mod plan;
mod request;
mod start;
mod summary;
#[cfg(test)]
mod tests;

pub use expiry::*;
pub use output::*;
pub use plan::*;
pub use request::*;
#[allow(unused_imports)]
use start::*;
pub use summary::*;

/// StartExecution calls in flight at once.
const START_CONCURRENCY: usize = 8;
/// The most AMIs one manual request may name.
pub const REQUEST_AMIS_MAX: usize = 1000;
/// Skip reasons for named AMIs.
pub const NOT_FOUND: &str = "not found";
pub const NOT_OWNED: &str = "not owned by this account";
/// EC2's event when an AMI enters a state (Amazon EC2 User Guide, "AMI events").
pub const AMI_STATE_CHANGE: &str = "EC2 AMI State Change";
/// Days since the last completed scan after which an AMI is overdue.
pub type MaxScanAgeDays = Bounded<1, 365>;

/// Which AMIs a creation event scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanOnCreate {
    /// Those carrying the selection tag when they become available.
    Tagged,
    /// Every AMI the account creates.
    All,
    /// None: only the schedule and manual requests scan.
    Off,
}

impl std::str::FromStr for ScanOnCreate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "TAGGED" => Ok(ScanOnCreate::Tagged),
            "ALL" => Ok(ScanOnCreate::All),
            "OFF" => Ok(ScanOnCreate::Off),
            _ => Err("expected TAGGED, ALL or OFF".into()),
        }
    }
}

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
    pub scan_on_create: ScanOnCreate,
    pub max_scan_age_days: u32,
    /// Where `config/exceptions.json` is, to list what expires soon.
    pub report_bucket: BucketName,
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
        let on_create: Option<ScanOnCreate> =
            env.optional(vars::SCAN_ON_CREATE, ScanOnCreate::Tagged);
        let max_age: Option<MaxScanAgeDays> = env.optional(vars::MAX_SCAN_AGE_DAYS, Bounded(7));
        let bucket: Option<BucketName> = env.required(vars::REPORT_BUCKET);
        let settings = env.finish(|| {
            Some(FindSettings {
                selection_tag_key: key?,
                selection_tag_value: value?,
                tag_prefix: prefix?,
                max_concurrent_scans: cap?.0,
                launch_state_machine_arn: machine?,
                topic_arn: topic?,
                scan_mode: mode?,
                scan_on_create: on_create?,
                max_scan_age_days: max_age?.0,
                report_bucket: bucket?,
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

/// The AMIs a request names: the tagged ones, the named ones, and the new
/// ones ScanOnCreate selects, once each; and why the rest cannot be scanned.
async fn gather(
    ec2_client: &ec2::Client,
    settings: &FindSettings,
    request: &FindRequest,
) -> Result<(Vec<ec2::types::Image>, Vec<Skipped>)> {
    let mut images = Vec::new();
    let mut skipped = Vec::new();
    if request.tagged {
        images = ec2::describe_images(
            ec2_client,
            Images::OwnedTagged {
                key: &settings.selection_tag_key,
                value: &settings.selection_tag_value,
            },
        )
        .await?;
    }
    let listed: BTreeSet<String> = images
        .iter()
        .filter_map(|i| i.image_id().map(str::to_string))
        .collect();
    let ids: Vec<AmiId> = request
        .named
        .iter()
        .chain(&request.created)
        .filter(|id| !listed.contains(id.as_str()))
        .cloned()
        .collect();
    if ids.is_empty() {
        return Ok((images, skipped));
    }
    let lookup = ec2::lookup_images(ec2_client, &ids).await?;
    for id in &ids {
        let reason = if lookup.foreign.contains(id) {
            NOT_OWNED
        } else if lookup.missing.contains(id) {
            NOT_FOUND
        } else {
            continue;
        };
        skipped.push(Skipped {
            ami_id: id.to_string(),
            reason: reason.into(),
        });
    }
    for image in lookup.owned {
        let named = request
            .named
            .iter()
            .any(|id| image.image_id() == Some(id.as_str()));
        let selected = match settings.scan_on_create {
            ScanOnCreate::All => true,
            ScanOnCreate::Tagged => {
                ec2::tag(image.tags(), &settings.selection_tag_key)
                    == Some(settings.selection_tag_value.as_str())
            }
            ScanOnCreate::Off => false,
        };
        if named || selected {
            images.push(image);
        } else {
            skipped.push(Skipped {
                ami_id: image.image_id().unwrap_or_default().to_string(),
                reason: not_selected(settings),
            });
        }
    }
    Ok((images, skipped))
}

/// What is scanning now: every running launch execution and every live
/// scanner instance (an instance whose execution ended still holds its
/// rule), as one set of scans, and what scans each AMI.
async fn in_flight(
    ec2_client: &ec2::Client,
    sfn_client: &sfn::Client,
    settings: &FindSettings,
) -> Result<(usize, HashMap<String, Busy>)> {
    let running = sfn::running_executions(sfn_client, &settings.launch_state_machine_arn.0).await?;
    let live = ec2::describe_instances(
        ec2_client,
        Instances::Scanners {
            scan_id: None,
            live_only: true,
        },
    )
    .await?;
    let mut scans = BTreeSet::new();
    let mut busy = HashMap::new();
    for name in running {
        if let Ok(scan) = name.parse::<ScanId>() {
            busy.insert(scan.ami_id().to_string(), Busy::Execution(name.clone()));
        }
        scans.insert(name);
    }
    for instance in live {
        let id = instance.instance_id.to_string();
        scans.insert(instance.scan_id.clone().unwrap_or_else(|| id.clone()));
        if let Some(ami) = instance.ami_id {
            busy.entry(ami).or_insert(Busy::Instance(id));
        }
    }
    Ok((scans.len(), busy))
}

/// Lists, plans, starts and reports. Returns an error after publishing the
/// summary when any execution could not be started, so the run is retried;
/// executions already started are then reported as already running.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    ec2_client: &ec2::Client,
    sfn_client: &sfn::Client,
    sns_client: &sns::Client,
    s3_client: &s3::Client,
    settings: &FindSettings,
    request: &FindRequest,
    now: DateTime<Utc>,
) -> Result<FindOutput> {
    let force = request.force;
    let (images, not_scannable) = gather(ec2_client, settings, request).await?;
    let found = images.len() + not_scannable.len();
    let candidates: Vec<_> = images
        .iter()
        .filter_map(|i| AmiCandidate::of(i, &settings.tag_prefix))
        .collect();
    drop(images);
    let mut overdue = overdue(&candidates, settings.max_scan_age_days, now);
    let (in_flight, busy) = in_flight(ec2_client, sfn_client, settings).await?;
    let (soon, exceptions_error) = exceptions_report(s3_client, settings, now).await?;
    let plan = plan_scans(
        candidates,
        not_scannable,
        &busy,
        in_flight,
        settings.max_concurrent_scans,
        |ami| ScanId::new(ami, now, force),
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
        in_flight,
        ignored: request.ignored.clone(),
        expiring: soon,
        exceptions_error,
        already_running: plan
            .already_running
            .iter()
            .map(|(ami, id)| started_scan(ami, id.clone(), None, now))
            .collect(),
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
    // Scanning: by this run, or by one found running (whose start marked
    // its AMI).
    for entry in &mut overdue {
        entry.scanning = busy.contains_key(entry.ami_id.as_str())
            || output
                .started
                .iter()
                .chain(&output.already_running)
                .any(|s| s.ami_id == entry.ami_id);
    }
    output.not_marked_stale = mark_stale(ec2_client, settings, &mut overdue, now).await;
    output.overdue = overdue;

    if worth_alerting(&output, request) {
        notify::publish(
            sns_client,
            &settings.topic_arn.0,
            &summary(&output, settings, request),
        )
        .await?;
    } else {
        info!(
            skipped = output.skipped.len(),
            "nothing to tell: no new AMI selected"
        );
    }
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

/// Tags `STALE` every overdue AMI whose verdict is `PASS` and which no scan
/// of this run reaches (the concurrent-scan cap, a start that failed): its `PASS` no longer
/// stands until a later run rescans it. (A scan that starts does the same
/// through tag-ami.) The role may write only the verdict and reason keys,
/// and only on an image whose verdict is `PASS`. A failure is reported, not
/// fatal: the scans are already started.
async fn mark_stale(
    client: &ec2::Client,
    settings: &FindSettings,
    overdue: &mut [Overdue],
    now: DateTime<Utc>,
) -> Vec<Skipped> {
    let pass = crate::model::Verdict::Pass.as_str();
    let writes: Vec<_> = overdue
        .iter()
        .enumerate()
        .filter(|(_, o)| {
            !o.scanning && o.last_scanned.is_some() && o.verdict.as_deref() == Some(pass)
        })
        .map(|(i, o)| {
            let mut set = std::collections::BTreeMap::new();
            set.insert(
                settings.tag_prefix.key(tags::VERDICT),
                tags::STALE.to_string(),
            );
            set.insert(
                settings.tag_prefix.key(tags::REASON),
                tags::stale_reason(
                    &o.last_scanned
                        .map(crate::model::time::timestamp)
                        .unwrap_or_default(),
                    settings.max_scan_age_days,
                    &format!(
                        ", and the run of {} started no rescan of it",
                        crate::model::time::timestamp(now)
                    ),
                ),
            );
            (i, o.ami_id.clone(), set)
        })
        .collect();
    let results: Vec<_> = stream::iter(writes)
        .map(|(i, ami, set)| async move {
            let result = ec2::create_tags(client, ami.as_str(), &set).await;
            (i, ami, result)
        })
        .buffer_unordered(START_CONCURRENCY)
        .collect()
        .await;
    let mut failed = Vec::new();
    for (i, ami, result) in results {
        match result {
            Ok(()) => {
                info!(ami_id = %ami, "overdue PASS tagged STALE");
                overdue[i].marked_stale = true;
            }
            Err(e) => {
                warn!(ami_id = %ami, error = %e, "overdue PASS not tagged STALE");
                failed.push(Skipped {
                    ami_id: ami.to_string(),
                    reason: e.to_string(),
                });
            }
        }
    }
    failed.sort_by(|a, b| a.ami_id.cmp(&b.ami_id));
    failed
}

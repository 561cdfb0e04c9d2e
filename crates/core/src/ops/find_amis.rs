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

/// What started this run: the schedule, a person, AMIs that became
/// available, or any mix of them when a queue batch carries several.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindRequest {
    /// Every AMI carrying the selection tag (the schedule, `{}`).
    pub tagged: bool,
    /// AMIs a person named, tagged or not.
    pub named: Vec<AmiId>,
    /// AMIs that became available (EC2 AMI State Change), scanned as
    /// ScanOnCreate says.
    pub created: Vec<AmiId>,
    /// Scan again even when today's scan of the AMI already ran.
    pub force: bool,
    /// Queue messages that are no trigger amiscan knows, by message id.
    pub ignored: Vec<Skipped>,
}

impl FindRequest {
    pub fn tagged(force: bool) -> FindRequest {
        FindRequest {
            tagged: true,
            force,
            ..FindRequest::default()
        }
    }

    /// Only AMIs that became available: a run nobody asked for, so it alerts
    /// only when it starts, fails or defers a scan.
    fn creation_only(&self) -> bool {
        !self.tagged && self.named.is_empty()
    }

    fn merge(&mut self, other: FindRequest) {
        self.tagged |= other.tagged;
        self.force |= other.force;
        self.named.extend(other.named);
        self.created.extend(other.created);
        self.ignored.extend(other.ignored);
    }

    fn dedupe(mut self) -> FindRequest {
        let mut seen = BTreeSet::new();
        self.named.retain(|id| seen.insert(id.clone()));
        self.created.retain(|id| seen.insert(id.clone()));
        self
    }
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

/// The detail of EC2's AMI state change event, as much as amiscan reads.
#[derive(Debug, Deserialize)]
struct AmiStateChange {
    #[serde(rename = "ImageId")]
    image_id: AmiId,
    #[serde(rename = "State")]
    state: String,
}

impl Input for AmiStateChange {}

/// Parses the event: a scheduled EventBridge event, `{}`, a manual request,
/// EC2's AMI state change event, or an SQS batch of any of these (the
/// queue that serialises the runs).
pub fn parse_request(payload: Value) -> Result<FindRequest> {
    if payload.get("Records").is_some() {
        let batch: SqsBatch = parse_event(payload)?;
        let mut request = FindRequest::default();
        for record in batch.records {
            let parsed = serde_json::from_str(&record.body)
                .map_err(|e| Error::invalid("body", format!("is not JSON: {e}")))
                .and_then(parse_trigger);
            match parsed {
                Ok(trigger) => request.merge(trigger),
                Err(err) => {
                    // Only amiscan's rule and schedule send here: a body it
                    // cannot read is a fault to see, not to redeliver (a
                    // failed record would hold up the FIFO group).
                    error!(message_id = %record.message_id, error = %err, "ignored a queue message");
                    request.ignored.push(Skipped {
                        ami_id: format!("(message {})", record.message_id),
                        reason: err.to_string(),
                    });
                }
            }
        }
        return Ok(request.dedupe());
    }
    parse_trigger(payload).map(FindRequest::dedupe)
}

fn parse_trigger(payload: Value) -> Result<FindRequest> {
    if let Some(detail_type) = payload.get("detail-type").cloned() {
        let event: aws_lambda_events::eventbridge::EventBridgeEvent = parse_event(payload)?;
        if detail_type != AMI_STATE_CHANGE {
            return Ok(FindRequest::tagged(false));
        }
        let change: AmiStateChange = parse_event(event.detail).map_err(|e| match e {
            Error::InvalidInput { field, reason } => Error::InvalidInput {
                field: format!("detail.{field}"),
                reason,
            },
            other => other,
        })?;
        // The rule matches `available` only; another state scans nothing.
        let created = if change.state == "available" {
            vec![change.image_id]
        } else {
            Vec::new()
        };
        return Ok(FindRequest {
            created,
            ..FindRequest::default()
        });
    }
    let request: ManualRequest = parse_event(payload)?;
    Ok(match request.ami_ids {
        None => FindRequest::tagged(request.force),
        Some(named) => FindRequest {
            named,
            force: request.force,
            ..FindRequest::default()
        },
    })
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

    /// Whole days since the last completed scan; `None` when never scanned.
    pub fn scan_age_days(&self, now: DateTime<Utc>) -> Option<i64> {
        self.last_scanned.map(|at| (now - at).num_days().max(0))
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
    /// When the AMI's last completed scan was (`null`: never).
    #[serde(default)]
    pub last_scanned: Option<DateTime<Utc>>,
    /// Whole days since then (`null`: never scanned).
    #[serde(default)]
    pub scan_age_days: Option<i64>,
}

/// An AMI whose last completed scan is older than MaxScanAgeDays, or that
/// was never scanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overdue {
    pub ami_id: AmiId,
    pub last_scanned: Option<DateTime<Utc>>,
    pub scan_age_days: Option<i64>,
    /// Whether this run started (or found running) its scan.
    pub scanning: bool,
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
    /// Scans in flight when the run began: running launch executions and
    /// live scanner instances.
    #[serde(default)]
    pub in_flight: usize,
    /// AMIs found whose last completed scan is older than MaxScanAgeDays
    /// (or that were never scanned), oldest first.
    #[serde(default)]
    pub overdue: Vec<Overdue>,
    /// Queue messages that were no trigger amiscan knows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<Skipped>,
    /// Exceptions in force that expire within 14 days, soonest first.
    #[serde(default)]
    pub expiring: Vec<Expiring>,
    /// Why `config/exceptions.json` is invalid (then no exception applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exceptions_error: Option<String>,
}

/// Exceptions expiring within this many days are listed in the run summary.
pub const EXPIRING_WITHIN_DAYS: i64 = 14;

/// An accepted risk that expires soon: renew it, or fix what it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiring {
    pub vulnerability_id: String,
    /// The AMI id or name glob it names; `null`: every AMI.
    pub ami: Option<String>,
    pub package: Option<String>,
    pub expires: String,
    /// Days from today (UTC) to its last day in force.
    pub days_left: i64,
    pub reason: String,
    pub owner: Option<String>,
}

/// The exceptions in force that expire within [`EXPIRING_WITHIN_DAYS`],
/// soonest first, from a parsed file.
pub fn expiring(list: &[exceptions::Exception], now: DateTime<Utc>) -> Vec<Expiring> {
    let today = now.date_naive();
    let mut out: Vec<Expiring> = list
        .iter()
        .map(|e| (e, (e.expires - today).num_days()))
        .filter(|(_, days)| (0..=EXPIRING_WITHIN_DAYS).contains(days))
        .map(|(e, days_left)| Expiring {
            vulnerability_id: e.vulnerability_id.clone(),
            ami: match &e.ami {
                AmiMatch::Every => None,
                AmiMatch::Id(id) => Some(id.to_string()),
                AmiMatch::Name(glob) => Some(glob.clone()),
            },
            package: e.package.clone(),
            expires: e.expires.to_string(),
            days_left,
            reason: e.reason.clone(),
            owner: e.owner.clone(),
        })
        .collect();
    out.sort_by(|a, b| {
        a.expires
            .cmp(&b.expires)
            .then_with(|| a.vulnerability_id.cmp(&b.vulnerability_id))
    });
    out
}

/// What expires soon in the bucket's exceptions file, or why it is invalid.
async fn exceptions_report(
    s3_client: &s3::Client,
    settings: &FindSettings,
    now: DateTime<Utc>,
) -> Result<(Vec<Expiring>, Option<String>)> {
    let bucket = settings.report_bucket.0.as_str();
    let bytes = s3::get_bytes(s3_client, bucket, EXCEPTIONS_KEY).await?;
    Ok(
        match exceptions::read(bucket, bytes.as_deref(), now.date_naive()) {
            Ok(list) => (expiring(&list, now), None),
            Err(invalid) => (Vec::new(), Some(invalid.to_string())),
        },
    )
}

/// What is already scanning an AMI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Busy {
    /// A running launch-scan execution, by name (its scan id).
    Execution(String),
    /// A live scanner instance, by id.
    Instance(String),
}

/// The AMIs to start, in order, and why every other one is skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub to_start: Vec<AmiCandidate>,
    /// AMIs whose scan of the id this run would use is already running.
    pub already_running: Vec<(AmiCandidate, ScanId)>,
    pub skipped: Vec<Skipped>,
}

/// Decides which AMIs to scan. `busy` maps an AMI to what already scans it;
/// the `in_flight` scans count against `cap`. An AMI whose running scan is
/// the one this run would start (`scan_id_of`) is already running, not
/// skipped. The AMIs scanned longest ago (or never) go first, so a cap below
/// the number of tagged AMIs still reaches every AMI over successive runs.
pub fn plan_scans(
    mut candidates: Vec<AmiCandidate>,
    not_scannable: Vec<Skipped>,
    busy: &HashMap<String, Busy>,
    in_flight: usize,
    cap: u32,
    scan_id_of: impl Fn(&AmiId) -> ScanId,
) -> Plan {
    let mut skipped = not_scannable;
    candidates.sort_by(|a, b| {
        a.last_scanned
            .cmp(&b.last_scanned)
            .then_with(|| a.ami_id.cmp(&b.ami_id))
    });
    let mut budget = (cap as usize).saturating_sub(in_flight);
    let mut to_start = Vec::new();
    let mut already_running = Vec::new();
    for ami in candidates {
        let reason = if ami.state != "available" {
            Some(format!("state is {} (not available)", ami.state))
        } else {
            match busy.get(ami.ami_id.as_str()) {
                Some(Busy::Execution(name)) if *name == scan_id_of(&ami.ami_id).as_str() => {
                    let id = scan_id_of(&ami.ami_id);
                    already_running.push((ami, id));
                    continue;
                }
                Some(Busy::Execution(name)) => {
                    Some(format!("already being scanned by execution {name}"))
                }
                Some(Busy::Instance(id)) => Some(format!("already being scanned by instance {id}")),
                None if budget == 0 => Some(format!(
                    "concurrent-scan cap of {cap} reached; first in line next run"
                )),
                None => None,
            }
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
    Plan {
        to_start,
        already_running,
        skipped,
    }
}

/// The AMIs found that are overdue, oldest first (never scanned before any).
pub fn overdue(candidates: &[AmiCandidate], max_age_days: u32, now: DateTime<Utc>) -> Vec<Overdue> {
    let mut out: Vec<Overdue> = candidates
        .iter()
        .filter(|c| {
            c.scan_age_days(now)
                .is_none_or(|d| d > i64::from(max_age_days))
        })
        .map(|c| Overdue {
            ami_id: c.ami_id.clone(),
            last_scanned: c.last_scanned,
            scan_age_days: c.scan_age_days(now),
            scanning: false,
        })
        .collect();
    out.sort_by(|a, b| {
        a.last_scanned
            .cmp(&b.last_scanned)
            .then_with(|| a.ami_id.cmp(&b.ami_id))
    });
    out
}

enum StartOutcome {
    Started(StartedScan),
    AlreadyRunning(StartedScan),
    Failed(Skipped),
}

fn started_scan(
    ami: &AmiCandidate,
    scan_id: ScanId,
    execution_arn: Option<String>,
    now: DateTime<Utc>,
) -> StartedScan {
    StartedScan {
        ami_id: ami.ami_id.clone(),
        scan_id,
        execution_arn,
        last_scanned: ami.last_scanned,
        scan_age_days: ami.scan_age_days(now),
    }
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

/// Whether a skip is the cap's (the AMI waits for the next run).
fn deferred(skip: &Skipped) -> bool {
    skip.reason.starts_with("concurrent-scan cap of")
}

/// Whether the run tells the topic: always, except a creation-only run that
/// started, deferred and failed nothing (an untagged AMI became available).
pub fn worth_alerting(output: &FindOutput, request: &FindRequest) -> bool {
    !request.creation_only()
        || !output.started.is_empty()
        || !output.failed.is_empty()
        || !output.ignored.is_empty()
        || output.skipped.iter().any(deferred)
}

/// The run's summary message.
pub fn summary(
    output: &FindOutput,
    settings: &FindSettings,
    request: &FindRequest,
) -> Notification {
    let mut parts = Vec::new();
    if request.tagged {
        parts.push(format!(
            "AMIs tagged {}={}",
            settings.selection_tag_key, settings.selection_tag_value
        ));
    }
    if !request.named.is_empty() {
        parts.push(format!("{} requested AMIs", request.named.len()));
    }
    if !request.created.is_empty() {
        parts.push(format!("{} new AMIs", request.created.len()));
    }
    let selection = if parts.is_empty() {
        "no AMIs".to_string()
    } else {
        parts.join(" and ")
    };
    let overdue_left = output.overdue.iter().filter(|o| !o.scanning).count();
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
    let severity = if !output.failed.is_empty()
        || !output.ignored.is_empty()
        || output.exceptions_error.is_some()
    {
        "ERROR"
    } else if overdue_left > 0 || !output.expiring.is_empty() {
        "WARNING"
    } else {
        "INFO"
    };
    let text = summary_text(output, settings, &selection);
    Notification {
        subject: subject.clone(),
        event_type,
        severity: severity.into(),
        text: format!("{subject}\n\n{text}"),
        body: json!({
            "event_type": event_type,
            "selection": selection,
            "found": output.found,
            "in_flight": output.in_flight,
            "max_scan_age_days": settings.max_scan_age_days,
            "counts": {
                "started": output.started.len(),
                "already_running": output.already_running.len(),
                "skipped": output.skipped.len(),
                "failed": output.failed.len(),
                "overdue": output.overdue.len(),
                "overdue_not_scanning": overdue_left,
                "ignored": output.ignored.len(),
                "expiring": output.expiring.len(),
            },
            "expiring": first_listed(&output.expiring),
            "exceptions_error": output.exceptions_error,
            "started": first_listed(&output.started),
            "already_running": first_listed(&output.already_running),
            "skipped": first_listed(&output.skipped),
            "failed": first_listed(&output.failed),
            "overdue": first_listed(&output.overdue),
            "ignored": first_listed(&output.ignored),
            "not_listed": {
                "started": output.started.len().saturating_sub(LISTED_PER_KIND),
                "already_running": output.already_running.len().saturating_sub(LISTED_PER_KIND),
                "skipped": output.skipped.len().saturating_sub(LISTED_PER_KIND),
                "failed": output.failed.len().saturating_sub(LISTED_PER_KIND),
                "overdue": output.overdue.len().saturating_sub(LISTED_PER_KIND),
                "ignored": output.ignored.len().saturating_sub(LISTED_PER_KIND),
            },
        }),
    }
}

/// What an email subscriber reads of a run: what it looked at, what it
/// started, deferred and could not start, and what is overdue.
fn summary_text(output: &FindOutput, settings: &FindSettings, selection: &str) -> String {
    let mut lines = vec![format!(
        "Looked at {selection}: {} found, {} scans already in flight.",
        output.found, output.in_flight
    )];
    let list = |ids: Vec<&str>| {
        let shown: Vec<&str> = ids.iter().take(TEXT_LISTED).copied().collect();
        let more = ids.len().saturating_sub(TEXT_LISTED);
        if more > 0 {
            format!("{} and {more} more", shown.join(", "))
        } else {
            shown.join(", ")
        }
    };
    if !output.started.is_empty() {
        lines.push(format!(
            "Started {}: {}",
            output.started.len(),
            list(output.started.iter().map(|s| s.ami_id.as_str()).collect())
        ));
    }
    if !output.already_running.is_empty() {
        lines.push(format!(
            "Already scanned or scanning today: {}",
            output.already_running.len()
        ));
    }
    let capped: Vec<&str> = output
        .skipped
        .iter()
        .filter(|s| deferred(s))
        .map(|s| s.ami_id.as_str())
        .collect();
    if !capped.is_empty() {
        lines.push(format!(
            "Deferred to the next run (concurrent-scan cap of {}): {}",
            settings.max_concurrent_scans,
            list(capped)
        ));
    }
    let other = output.skipped.iter().filter(|s| !deferred(s)).count();
    if other > 0 {
        lines.push(format!(
            "Skipped for another reason: {other} (see the JSON message or find-amis' output)"
        ));
    }
    let late: Vec<&str> = output
        .overdue
        .iter()
        .filter(|o| !o.scanning)
        .map(|o| o.ami_id.as_str())
        .collect();
    if !late.is_empty() {
        lines.push(format!(
            "Overdue (no completed scan in {} days) and not scanned by this run: {}",
            settings.max_scan_age_days,
            list(late)
        ));
    }
    for failed in output.failed.iter().take(TEXT_LISTED) {
        lines.push(format!(
            "Could not start {}: {}",
            failed.ami_id, failed.reason
        ));
    }
    for ignored in &output.ignored {
        lines.push(format!("Ignored {}: {}", ignored.ami_id, ignored.reason));
    }
    if let Some(error) = &output.exceptions_error {
        lines.push(format!(
            "The exceptions file is invalid, so no exception applies: {error}"
        ));
    }
    for e in output.expiring.iter().take(TEXT_LISTED) {
        lines.push(format!(
            "Exception expiring in {} days ({}): {}{} on {}: {}",
            e.days_left,
            e.expires,
            e.vulnerability_id,
            e.package
                .as_ref()
                .map(|p| format!(" in {p}"))
                .unwrap_or_default(),
            e.ami.as_deref().unwrap_or("every AMI"),
            e.reason
        ));
    }
    lines.push(
        "Query: run amiscan-not-scanned-recently in the stack's Athena workgroup for every AMI's last scan."
            .into(),
    );
    lines.join("\n")
}

/// AMIs each line of the email text names.
const TEXT_LISTED: usize = 20;

/// Entries of each kind the run's alert lists. SNS refuses a message over
/// 256 KiB, and a weekly run over thousands of tagged AMIs skips thousands
/// (over the concurrency cap): the alert lists the first ones and counts the
/// rest; the function's own output lists every one.
pub const LISTED_PER_KIND: usize = 50;

fn first_listed<T: serde::Serialize>(entries: &[T]) -> &[T] {
    &entries[..entries.len().min(LISTED_PER_KIND)]
}

/// The skip reason of a new AMI that ScanOnCreate does not select.
pub fn not_selected(settings: &FindSettings) -> String {
    match settings.scan_on_create {
        ScanOnCreate::Off => "ScanOnCreate is OFF; the weekly run scans it when tagged".into(),
        _ => format!(
            "not tagged {}={} (ScanOnCreate=TAGGED); the weekly run scans it once tagged",
            settings.selection_tag_key, settings.selection_tag_value
        ),
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
    for entry in &mut overdue {
        entry.scanning = output
            .started
            .iter()
            .chain(&output.already_running)
            .any(|s| s.ami_id == entry.ami_id);
    }
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

    fn sample(path: &str) -> Value {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
        serde_json::from_str(&std::fs::read_to_string(root.join(path)).unwrap()).unwrap()
    }

    fn named(ids: &[&str], force: bool) -> FindRequest {
        FindRequest {
            named: ids.iter().map(|id| id.parse().unwrap()).collect(),
            force,
            ..FindRequest::default()
        }
    }

    #[test]
    fn requests_parse_into_tagged_named_or_created_runs() {
        assert_eq!(
            parse_request(sample("find-amis/scheduled.json")).unwrap(),
            FindRequest::tagged(false)
        );
        assert_eq!(
            parse_request(json!({})).unwrap(),
            FindRequest::tagged(false)
        );
        assert_eq!(
            parse_request(sample("find-amis/manual.json")).unwrap(),
            named(&["ami-0123456789abcdef0", "ami-0fedcba9876543210"], false)
        );
        assert!(
            parse_request(sample("find-amis/rescan-today.json"))
                .unwrap()
                .force
        );
        let duplicated =
            parse_request(json!({"ami_ids": ["ami-12345678", "ami-12345678"]})).unwrap();
        assert_eq!(duplicated.named.len(), 1);

        let created = parse_request(sample("find-amis/ami-available.json")).unwrap();
        assert_eq!(
            created,
            FindRequest {
                created: vec!["ami-0a1b2c3d4e5f60718".parse().unwrap()],
                ..FindRequest::default()
            }
        );
        assert!(created.creation_only());
        let mut failed = sample("find-amis/ami-available.json");
        failed["detail"]["State"] = json!("failed");
        assert_eq!(parse_request(failed).unwrap(), FindRequest::default());
    }

    #[test]
    fn a_queue_batch_merges_its_triggers_and_reports_what_it_cannot_read() {
        let batch = sample("find-amis/queue-batch.json");
        let bodies = batch["Records"].as_array().unwrap().len();
        let mut with_junk = batch.clone();
        with_junk["Records"]
            .as_array_mut()
            .unwrap()
            .push(json!({"messageId": "m-junk", "body": "{\"detail-type\": \"EC2 AMI State Change\", \"detail\": {}}"}));
        let request = parse_request(with_junk).unwrap();
        assert!(request.tagged, "the batch carries the weekly run");
        // The same AMI twice (EventBridge delivers at least once) is one scan.
        assert_eq!(request.created.len(), bodies - 2);
        assert_eq!(request.ignored.len(), 1);
        assert_eq!(request.ignored[0].ami_id, "(message m-junk)");
        assert!(
            request.ignored[0].reason.contains("source"),
            "{}",
            request.ignored[0].reason
        );
        assert!(!request.creation_only());
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
        let mut event = sample("find-amis/ami-available.json");
        event["detail"]["ImageId"] = json!("snap-0123");
        assert_eq!(field_of(event.clone()), "detail.ImageId");
        event["detail"] = json!({"State": "available"});
        assert_eq!(field_of(event), "detail.ImageId");
        assert_eq!(
            field_of(json!({"Records": [{"body": "{}"}]})),
            "Records[0].messageId"
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
        let busy = HashMap::from([
            (
                "ami-00000005".to_string(),
                Busy::Instance("i-0000000a".into()),
            ),
            (
                "ami-00000006".to_string(),
                Busy::Execution("ami-00000006-20261130".into()),
            ),
            (
                "ami-00000007".to_string(),
                Busy::Execution("ami-00000007-20261201".into()),
            ),
        ]);
        let candidates = candidates
            .into_iter()
            .chain([
                ami("ami-00000006", "available", None),
                ami("ami-00000007", "available", None),
            ])
            .collect();
        let today = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap();
        let missing = vec![Skipped {
            ami_id: "ami-0000dead".into(),
            reason: "not found".into(),
        }];
        let plan = plan_scans(candidates, missing, &busy, 3, 5, |a| {
            ScanId::new(a, today, false)
        });
        let started: Vec<_> = plan.to_start.iter().map(|a| a.ami_id.as_str()).collect();
        // Three slots of five are taken by running scans: two start,
        // never-scanned first.
        assert_eq!(started, ["ami-00000003", "ami-00000004"]);
        // Today's scan of ami-00000007 is the one this run would start.
        let running: Vec<_> = plan
            .already_running
            .iter()
            .map(|(a, id)| (a.ami_id.as_str(), id.as_str()))
            .collect();
        assert_eq!(running, [("ami-00000007", "ami-00000007-20261201")]);
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
            reasons["ami-00000006"],
            "already being scanned by execution ami-00000006-20261130"
        );
        assert_eq!(
            reasons["ami-00000001"],
            "concurrent-scan cap of 5 reached; first in line next run"
        );
        assert_eq!(
            plan.to_start.len() + plan.skipped.len() + plan.already_running.len(),
            8
        );
    }

    #[test]
    fn overdue_amis_are_those_never_scanned_or_scanned_before_the_maximum_age() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap();
        let candidates = vec![
            ami("ami-00000001", "available", Some("2026-11-24T08:00:00Z")),
            ami("ami-00000002", "available", Some("2026-11-23T07:59:59Z")),
            ami("ami-00000003", "available", None),
            ami("ami-00000004", "available", Some("2026-11-30T00:00:00Z")),
            ami("ami-00000005", "available", Some("2026-10-01T00:00:00Z")),
        ];
        assert_eq!(candidates[0].scan_age_days(now), Some(7));
        let late = overdue(&candidates, 7, now);
        let listed: Vec<_> = late
            .iter()
            .map(|o| (o.ami_id.as_str(), o.scan_age_days))
            .collect();
        // Seven days old is not overdue; eight is; never scanned leads.
        assert_eq!(
            listed,
            [
                ("ami-00000003", None),
                ("ami-00000005", Some(61)),
                ("ami-00000002", Some(8))
            ]
        );
        assert!(overdue(&candidates, 365, now).len() == 1);
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
            scan_on_create: ScanOnCreate::Tagged,
            max_scan_age_days: 7,
            report_bucket: "amiscan-reports".parse().unwrap(),
        }
    }

    #[test]
    fn the_summary_says_nothing_tagged_or_how_many_started() {
        let settings = summary_settings();
        let request = FindRequest::tagged(false);
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
                last_scanned: None,
                scan_age_days: None,
            }],
            skipped: vec![Skipped {
                ami_id: "ami-00000002".into(),
                reason: "x".into(),
            }],
            overdue: vec![Overdue {
                ami_id: "ami-00000002".parse().unwrap(),
                last_scanned: None,
                scan_age_days: None,
                scanning: false,
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
        assert_eq!(note.body["started"][0]["scan_age_days"], Value::Null);
        // An overdue AMI this run does not scan makes the summary a warning.
        assert_eq!(note.severity, "WARNING");
        assert_eq!(note.body["counts"]["overdue_not_scanning"], 1);
        assert_eq!(note.body["overdue"][0]["ami_id"], "ami-00000002");
    }

    #[test]
    fn exceptions_expiring_within_fourteen_days_are_listed_soonest_first() {
        let now = Utc.with_ymd_and_hms(2026, 12, 1, 23, 0, 0).unwrap();
        let file = serde_json::json!({"exceptions": [
            {"vulnerability_id": "CVE-far", "reason": "r", "expires": "2026-12-16"},
            {"vulnerability_id": "CVE-edge", "reason": "r", "expires": "2026-12-15", "ami": "golden-*"},
            {"vulnerability_id": "CVE-today", "reason": "r", "expires": "2026-12-01", "package": "openssl"},
            {"vulnerability_id": "CVE-gone", "reason": "r", "expires": "2026-11-30"},
        ]});
        let list = exceptions::parse("f", file.to_string().as_bytes(), now.date_naive()).unwrap();
        let soon = expiring(&list, now);
        let listed: Vec<_> = soon
            .iter()
            .map(|e| (e.vulnerability_id.as_str(), e.days_left))
            .collect();
        assert_eq!(listed, [("CVE-today", 0), ("CVE-edge", 14)]);
        assert_eq!(soon[1].ami.as_deref(), Some("golden-*"));
    }

    #[test]
    fn a_creation_run_alerts_only_when_it_starts_defers_or_fails_a_scan() {
        let settings = summary_settings();
        let created = FindRequest {
            created: vec!["ami-00000001".parse().unwrap()],
            ..FindRequest::default()
        };
        let untagged = FindOutput {
            found: 1,
            skipped: vec![Skipped {
                ami_id: "ami-00000001".into(),
                reason: not_selected(&settings),
            }],
            ..FindOutput::default()
        };
        assert!(!worth_alerting(&untagged, &created));
        // The weekly run always reports, even with nothing to do.
        assert!(worth_alerting(
            &FindOutput::default(),
            &FindRequest::tagged(false)
        ));
        let capped = FindOutput {
            skipped: vec![Skipped {
                ami_id: "ami-00000001".into(),
                reason: "concurrent-scan cap of 5 reached; first in line next run".into(),
            }],
            ..untagged.clone()
        };
        assert!(worth_alerting(&capped, &created));
        let note = summary(&capped, &settings, &created);
        assert_eq!(note.body["selection"], "1 new AMIs");
        assert_eq!(
            not_selected(&settings),
            "not tagged InspectorScan=true (ScanOnCreate=TAGGED); the weekly run scans it once tagged"
        );
    }

    #[test]
    fn scan_on_create_and_the_maximum_age_come_from_the_environment() {
        let base = [
            ("SELECTION_TAG_KEY", "InspectorScan"),
            ("SELECTION_TAG_VALUE", "true"),
            ("TAG_PREFIX", "amiscan:"),
            ("MAX_CONCURRENT_SCANS", "20"),
            (
                "LAUNCH_STATE_MACHINE_ARN",
                "arn:aws:states:us-east-1:123456789012:stateMachine:x",
            ),
            ("TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:t"),
            ("REPORT_BUCKET", "amiscan-reports"),
        ];
        let read = |extra: &[(&'static str, &'static str)]| {
            let pairs: Vec<_> = base.iter().chain(extra).copied().collect();
            FindSettings::from_env(crate::settings::tests::env(&pairs))
        };
        let defaults = read(&[]).unwrap();
        assert_eq!(defaults.scan_on_create, ScanOnCreate::Tagged);
        assert_eq!(defaults.max_scan_age_days, 7);
        let all = read(&[("SCAN_ON_CREATE", "ALL"), ("MAX_SCAN_AGE_DAYS", "30")]).unwrap();
        assert_eq!(
            (all.scan_on_create, all.max_scan_age_days),
            (ScanOnCreate::All, 30)
        );
        for (var, value) in [("SCAN_ON_CREATE", "SOMETIMES"), ("MAX_SCAN_AGE_DAYS", "0")] {
            let err = read(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{err}");
        }
    }

    #[test]
    fn the_run_alert_stays_under_the_sns_size_limit_over_ten_thousand_amis() {
        let settings = summary_settings();
        let request = FindRequest::tagged(false);
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

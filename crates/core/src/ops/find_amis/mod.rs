//! find-amis: choose the AMIs to scan and start one launch execution each.
//! The choice is pure (`plan_scans`); listing AMIs, counting the scans in
//! flight and starting executions are thin calls around it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{error, info, warn};

use crate::aws::ec2::{self, Images, Instances};
use crate::aws::organizations;
use crate::aws::places::Places;
use crate::aws::sfn::{self, Started};
use crate::aws::{s3, sns};
use crate::error::{Error, Result};
use crate::model::exceptions::{self, AmiMatch, EXCEPTIONS_KEY};
use crate::model::sqs::SqsBatch;
use crate::model::ScanMode;
use crate::model::{parse_event, AccountId, AmiId, Input, Place, RegionName, ScanContext, ScanId};
use crate::naming;
use crate::notify::{self, EventType, Notification};
use crate::settings::{
    vars, AccountList, Bounded, BucketName, EnvReader, FromEnv, Home, MaxConcurrentScans, OuId,
    OuList, RegionList, StateMachineArn, TopicArn, MAX_CONCURRENT_INSTANCE_SCANS,
};
use crate::tags::{self, TagPrefix};

mod expiry;
mod output;
mod places;
mod plan;
mod request;
mod start;
mod summary;
#[cfg(test)]
mod tests;

pub use expiry::*;
pub use output::*;
pub use places::*;
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
    /// The functions' account and the member role's name.
    pub home: Home,
    /// The member accounts scanned besides this one (`MemberAccounts`).
    pub member_accounts: Vec<AccountId>,
    /// The Regions scanned in each member account; empty, home's only.
    pub scan_regions: Vec<RegionName>,
    /// Organizational units whose accounts are members too
    /// (`MemberOrganizationalUnits`), listed at each run.
    pub member_ous: Vec<OuId>,
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
        let home = Home::read(&mut env);
        let members: Option<AccountList> =
            env.optional(vars::MEMBER_ACCOUNTS, AccountList::default());
        let regions: Option<RegionList> = env.optional(vars::SCAN_REGIONS, RegionList::default());
        let ous: Option<OuList> = env.optional(vars::MEMBER_OUS, OuList::default());
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
                home: home?,
                member_accounts: members?.0,
                scan_regions: regions?.0,
                member_ous: ous?.0,
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

/// What one place holds for a request: its tagged AMIs, the named ones it
/// owns and its new ones that ScanOnCreate selects; why its other new ones
/// are skipped; and which named AMIs it sees as another's.
#[derive(Default)]
struct Gathered {
    images: Vec<ec2::types::Image>,
    skipped: Vec<Skipped>,
    foreign_named: BTreeSet<String>,
    /// Away from home: member.yaml gave this place a scanner subnet.
    scans_instances: bool,
}

/// Whether a new AMI's event came from `place` (no place: home).
fn created_at(request: &FindRequest, id: &AmiId, place: &Place, home: &Place) -> bool {
    request.created_in.get(id.as_str()).unwrap_or(home) == place
}

async fn gather(
    ec2_client: &ec2::Client,
    settings: &FindSettings,
    request: &FindRequest,
    place: &Place,
    home: &Place,
) -> Result<Gathered> {
    let mut out = Gathered::default();
    if request.tagged {
        out.images = ec2::describe_images(
            ec2_client,
            Images::OwnedTagged {
                key: &settings.selection_tag_key,
                value: &settings.selection_tag_value,
            },
        )
        .await?;
    }
    let listed: BTreeSet<String> = out
        .images
        .iter()
        .filter_map(|i| i.image_id().map(str::to_string))
        .collect();
    let created_here: Vec<&AmiId> = request
        .created
        .iter()
        .filter(|id| created_at(request, id, place, home))
        .collect();
    let ids: Vec<AmiId> = request
        .named
        .iter()
        .chain(created_here.iter().copied())
        .filter(|id| !listed.contains(id.as_str()))
        .cloned()
        .collect();
    if ids.is_empty() {
        return Ok(out);
    }
    let lookup = ec2::lookup_images(ec2_client, &ids).await?;
    for id in &created_here {
        let reason = if lookup.foreign.contains(id) {
            NOT_OWNED
        } else if lookup.missing.contains(id) {
            NOT_FOUND
        } else {
            continue;
        };
        out.skipped.push(Skipped {
            ami_id: id.to_string(),
            reason: reason.into(),
        });
    }
    out.foreign_named = lookup.foreign.iter().map(|id| id.to_string()).collect();
    for image in lookup.owned {
        let id = image.image_id().unwrap_or_default().to_string();
        let named = request.named.iter().any(|n| *n == id);
        let selected = match settings.scan_on_create {
            ScanOnCreate::All => true,
            ScanOnCreate::Tagged => {
                ec2::tag(image.tags(), &settings.selection_tag_key)
                    == Some(settings.selection_tag_value.as_str())
            }
            ScanOnCreate::Off => false,
        };
        if named || selected {
            out.images.push(image);
        } else {
            out.skipped.push(Skipped {
                ami_id: id,
                reason: not_selected(settings),
            });
        }
    }
    Ok(out)
}

async fn gather_at(
    client: &ec2::Client,
    settings: &FindSettings,
    request: &FindRequest,
    place: &Place,
    home: &Place,
) -> (Place, Result<Gathered>) {
    let mut gathered = gather(client, settings, request, place, home).await;
    if let Ok(g) = &mut gathered {
        g.scans_instances =
            scans_instances(client, settings, !g.images.is_empty(), place, home).await;
    }
    (place.clone(), gathered)
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
    places: &Places,
    org_client: &organizations::Client,
    sfn_client: &sfn::Client,
    sns_client: &sns::Client,
    s3_client: &s3::Client,
    settings: &FindSettings,
    request: &FindRequest,
    now: DateTime<Utc>,
) -> Result<FindOutput> {
    let force = request.force;
    let home = places.home()?.clone();
    let (members, ous_not_listed) = members_of(org_client, settings).await;
    let targets = places_of(&members, &settings.scan_regions, &home);
    let reach = reach(places, &targets).await;
    let listings: Vec<_> = reach
        .clients
        .iter()
        .map(|(place, client)| gather_at(client, settings, request, place, &home))
        .collect();
    let listed: Vec<(Place, Result<Gathered>)> = stream::iter(listings)
        .buffer_unordered(PLACE_CONCURRENCY)
        .collect()
        .await;
    let mut not_reached = reach.not_reached;
    let mut listed_places = Vec::new();
    let mut first_error = None;
    let mut candidates: Vec<AmiCandidate> = Vec::new();
    let mut not_scannable = Vec::new();
    let mut found = 0;
    let mut foreign_named = BTreeSet::new();
    let mut scanning = BTreeSet::new();
    for (place, result) in listed {
        match result {
            Ok(g) => {
                if g.scans_instances {
                    scanning.insert(place.clone());
                }
                found += g.images.len() + g.skipped.len();
                candidates.extend(
                    g.images
                        .iter()
                        .filter_map(|i| AmiCandidate::of(i, &settings.tag_prefix, &place)),
                );
                not_scannable.extend(g.skipped);
                foreign_named.extend(g.foreign_named);
                listed_places.push(place);
            }
            Err(err) => {
                warn!(place = %place, error = %err, "AMIs not listed");
                not_reached.push(NotReached {
                    account_id: place.account_id.clone(),
                    region: place.region.clone(),
                    reason: err.to_string(),
                });
                first_error.get_or_insert(err);
            }
        }
    }
    // Nothing listed anywhere: fail, so the run is retried.
    if listed_places.is_empty() {
        if let Some(err) = first_error {
            return Err(err);
        }
    }
    listed_places.sort();
    // A named AMI owned anywhere is a candidate; the rest are another
    // account's (seen somewhere) or nowhere.
    let owned: BTreeSet<String> = candidates.iter().map(|c| c.ami_id.to_string()).collect();
    for id in &request.named {
        if owned.contains(id.as_str()) {
            continue;
        }
        let reason = if foreign_named.contains(id.as_str()) {
            NOT_OWNED
        } else {
            NOT_FOUND
        };
        found += 1;
        not_scannable.push(Skipped {
            ami_id: id.to_string(),
            reason: reason.into(),
        });
    }
    for id in &request.created {
        let place = request.created_in.get(id.as_str()).unwrap_or(&home);
        if let Some(why) = uncovered(place, &targets) {
            found += 1;
            not_scannable.push(Skipped {
                ami_id: id.to_string(),
                reason: format!(
                    "its creation event came from {place}, which this hub does not scan: {why}"
                ),
            });
        }
    }
    // Instance scans run at home and where member.yaml gave a subnet:
    // elsewhere `instance` cannot scan.
    let mode_of =
        |place: &Place| mode_at(settings.scan_mode, place, &home, scanning.contains(place));
    candidates.retain(|c| match mode_of(&c.place) {
        Ok(_) => true,
        Err(why) => {
            not_scannable.push(Skipped {
                ami_id: c.ami_id.to_string(),
                reason: why,
            });
            false
        }
    });
    let mut overdue = overdue(&candidates, settings.max_scan_age_days, now);
    let home_ec2 = reach
        .clients
        .get(&home)
        .ok_or_else(|| Error::Internal("the home Region has no client".into()))?;
    let (in_flight, busy) = in_flight(home_ec2, sfn_client, settings).await?;
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
            let mode = mode_of(&ami.place).unwrap_or(ScanMode::Snapshot);
            // `auto` made snapshot-only without a subnet: a NOT_SCANNABLE says why.
            let no_instance = (mode != settings.scan_mode).then(|| ami.place.no_subnet());
            start_one(
                sfn_client,
                &settings.launch_state_machine_arn.0,
                ami,
                now,
                force,
                mode,
                no_instance,
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
        places: listed_places,
        ous_not_listed,
        not_onboarded: reach.not_onboarded,
        not_reached,
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
    output.not_marked_stale = mark_stale(&reach.clients, settings, &mut overdue, now).await;
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
    clients: &BTreeMap<Place, ec2::Client>,
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
            (i, o.ami_id.clone(), o.place.clone(), set)
        })
        .collect();
    let results: Vec<_> = stream::iter(writes)
        .map(|(i, ami, place, set)| async move {
            let result = match clients.get(&place) {
                Some(client) => ec2::create_tags(client, ami.as_str(), &set).await,
                None => Err(Error::Internal(format!("no client for {place}"))),
            };
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

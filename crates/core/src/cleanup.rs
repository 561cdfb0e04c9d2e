//! cleanup: remove what a scan created. Targeted mode removes one scan's
//! instance and rule; sweep mode finds what a lost execution left behind.
//! Both refuse to touch anything that does not carry the scanner tag, and
//! count "already gone" as success.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use crate::aws::{ec2, eventbridge};
use crate::error::{Error, Result};
use crate::find::{
    describe_instances, filter, live_scanner_instances, ScannerInstance, LIVE_STATES,
};
use crate::model::{parse_event, ScanContext};
use crate::naming;
use crate::settings::CleanupSettings;

/// What to clean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanupRequest {
    /// One scan: instances tagged with the scan id, the named instance, the
    /// named rule, and the rule of every instance found.
    Targeted {
        scan_id: Option<String>,
        instance_id: Option<String>,
        rule_name: Option<String>,
    },
    /// Everything orphaned.
    Sweep,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CleanupEvent {
    #[serde(default)]
    sweep: bool,
    /// The whole scan context, as the state machines pass it.
    #[serde(default)]
    scan: Option<ScanContext>,
    #[serde(default)]
    scan_id: Option<String>,
    #[serde(default)]
    instance_id: Option<String>,
    #[serde(default)]
    rule_name: Option<String>,
}

/// Parses a scheduled event (sweep), `{"sweep": true}`, or a targeted request
/// given as ids or as `{"scan": {…}}`.
pub fn parse_request(payload: Value) -> Result<CleanupRequest> {
    if payload.get("detail-type").is_some() {
        let _event: aws_lambda_events::eventbridge::EventBridgeEvent = parse_event(payload)?;
        return Ok(CleanupRequest::Sweep);
    }
    let event: CleanupEvent = parse_event(payload)?;
    let targeted = event.scan.is_some()
        || event.scan_id.is_some()
        || event.instance_id.is_some()
        || event.rule_name.is_some();
    match (event.sweep, targeted) {
        (true, true) => {
            return Err(Error::invalid(
                "sweep",
                "cannot be combined with scan, scan_id, instance_id or rule_name",
            ))
        }
        (true, false) => return Ok(CleanupRequest::Sweep),
        (false, false) => {
            return Err(Error::invalid(
                "scan_id",
                "missing: give scan, scan_id, instance_id or rule_name, or \"sweep\": true",
            ))
        }
        (false, true) => {}
    }
    if let Some(scan) = &event.scan {
        scan.validate("scan")?;
    }
    let (mut scan_id, mut instance_id, mut rule_name) =
        (event.scan_id, event.instance_id, event.rule_name);
    if let Some(scan) = event.scan {
        scan_id = scan_id.or(Some(scan.scan_id));
        instance_id = instance_id.or(scan.instance_id);
        rule_name = rule_name.or(scan.rule_name);
    }
    if let Some(id) = &scan_id {
        naming::require_scan_id("scan_id", id)?;
    }
    if let Some(id) = &instance_id {
        naming::require_instance_id("instance_id", id)?;
    }
    if let Some(name) = &rule_name {
        if !name.starts_with(naming::RULE_NAME_PREFIX) || name.len() > 64 {
            return Err(Error::invalid(
                "rule_name",
                format!(
                    "{name:?} is not an amiscan rule ({}…)",
                    naming::RULE_NAME_PREFIX
                ),
            ));
        }
    }
    Ok(CleanupRequest::Targeted {
        scan_id,
        instance_id,
        rule_name,
    })
}

/// What was removed, and what was already gone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupReport {
    pub terminated: Vec<String>,
    pub instances_already_gone: Vec<String>,
    pub rules_deleted: Vec<String>,
    pub rules_already_gone: Vec<String>,
}

fn is_managed(instance: &ec2::types::Instance) -> bool {
    instance
        .tags()
        .iter()
        .any(|t| t.key() == Some(naming::MANAGED_TAG) && t.value() == Some(naming::MANAGED_VALUE))
}

fn is_live(instance: &ec2::types::Instance) -> bool {
    instance
        .state()
        .and_then(|s| s.name())
        .is_some_and(|n| LIVE_STATES.contains(&n.as_str()))
}

async fn terminate(client: &ec2::Client, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    client
        .terminate_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| Error::from_sdk("TerminateInstances", e))?;
    Ok(())
}

fn is_rule_gone(err: &Error) -> bool {
    err.aws_code() == Some("ResourceNotFoundException")
}

/// Removes the rule's targets, then the rule. `false` when it was already gone.
pub async fn delete_rule(client: &eventbridge::Client, name: &str) -> Result<bool> {
    let targets = match client.list_targets_by_rule().rule(name).send().await {
        Ok(out) => out.targets.unwrap_or_default(),
        Err(e) => {
            let err = Error::from_sdk("ListTargetsByRule", e);
            if is_rule_gone(&err) {
                return Ok(false);
            }
            return Err(err);
        }
    };
    let ids: Vec<String> = targets.iter().map(|t| t.id().to_string()).collect();
    if !ids.is_empty() {
        if let Err(e) = client
            .remove_targets()
            .rule(name)
            .set_ids(Some(ids))
            .send()
            .await
        {
            let err = Error::from_sdk("RemoveTargets", e);
            if !is_rule_gone(&err) {
                return Err(err);
            }
        }
    }
    match client.delete_rule().name(name).send().await {
        Ok(_) => Ok(true),
        Err(e) => {
            let err = Error::from_sdk("DeleteRule", e);
            if is_rule_gone(&err) {
                Ok(false)
            } else {
                Err(err)
            }
        }
    }
}

async fn delete_rules(
    client: &eventbridge::Client,
    names: BTreeSet<String>,
    report: &mut CleanupReport,
) -> Result<()> {
    for name in names {
        if delete_rule(client, &name).await? {
            info!(rule_name = %name, "rule deleted");
            report.rules_deleted.push(name);
        } else {
            report.rules_already_gone.push(name);
        }
    }
    Ok(())
}

/// Targeted cleanup of one scan. Every instance is checked for the scanner
/// tag before anything is changed.
pub async fn cleanup_scan(
    ec2_client: &ec2::Client,
    events: &eventbridge::Client,
    scan_id: Option<&str>,
    instance_id: Option<&str>,
    rule_name: Option<&str>,
) -> Result<CleanupReport> {
    let mut report = CleanupReport::default();
    let mut live: BTreeSet<String> = BTreeSet::new();
    let mut rules: BTreeSet<String> = rule_name.map(str::to_string).into_iter().collect();

    if let Some(id) = instance_id {
        let found = describe_instances(ec2_client, vec![filter("instance-id", [id])]).await?;
        match found.iter().find(|i| i.instance_id() == Some(id)) {
            Some(instance) if !is_managed(instance) => {
                return Err(Error::NotScannerManaged {
                    kind: "instance",
                    id: id.to_string(),
                    tag: naming::MANAGED_TAG.into(),
                })
            }
            Some(instance) if is_live(instance) => {
                live.insert(id.to_string());
            }
            _ => report.instances_already_gone.push(id.to_string()),
        }
        rules.insert(naming::rule_name(id));
    }
    if let Some(scan_id) = scan_id {
        // Finds an instance whose launch response was lost, too.
        let tagged = describe_instances(
            ec2_client,
            vec![
                filter(&format!("tag:{}", naming::SCAN_ID_TAG), [scan_id]),
                filter(
                    &format!("tag:{}", naming::MANAGED_TAG),
                    [naming::MANAGED_VALUE],
                ),
            ],
        )
        .await?;
        for instance in tagged {
            if let Some(id) = instance.instance_id() {
                rules.insert(naming::rule_name(id));
                if is_live(&instance) {
                    live.insert(id.to_string());
                }
            }
        }
    }
    let live: Vec<String> = live.into_iter().collect();
    terminate(ec2_client, &live).await?;
    for id in &live {
        info!(instance_id = %id, "instance terminated");
    }
    report.terminated = live;
    delete_rules(events, rules, &mut report).await?;
    Ok(report)
}

/// Whether a scanner instance has outlived any scan's deadline.
pub fn is_orphaned(
    instance: &ScannerInstance,
    now: DateTime<Utc>,
    settings: &CleanupSettings,
) -> bool {
    let limit = Duration::minutes(i64::from(
        settings.scan_timeout_minutes + settings.sweep_margin_minutes,
    ));
    instance.launch_time.is_some_and(|t| now - t > limit)
}

async fn scanner_rules(client: &eventbridge::Client) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let out = client
            .list_rules()
            .name_prefix(naming::RULE_NAME_PREFIX)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| Error::from_sdk("ListRules", e))?;
        names.extend(
            out.rules()
                .iter()
                .filter_map(|r| r.name())
                .map(str::to_string),
        );
        token = out.next_token.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(names);
        }
    }
}

/// Sweep: terminate scanner instances past the deadline plus the margin, and
/// delete scanner rules whose instance is no longer live.
pub async fn sweep(
    ec2_client: &ec2::Client,
    events: &eventbridge::Client,
    settings: &CleanupSettings,
    now: DateTime<Utc>,
) -> Result<CleanupReport> {
    let mut report = CleanupReport::default();
    let instances = live_scanner_instances(ec2_client).await?;
    let (orphans, running): (Vec<_>, Vec<_>) = instances
        .into_iter()
        .partition(|i| is_orphaned(i, now, settings));
    let orphan_ids: Vec<String> = orphans.iter().map(|i| i.instance_id.clone()).collect();
    for orphan in &orphans {
        warn!(instance_id = %orphan.instance_id, scan_id = orphan.scan_id.as_deref().unwrap_or_default(), "terminating an orphaned scan instance");
    }
    terminate(ec2_client, &orphan_ids).await?;
    report.terminated = orphan_ids;

    let still_live: BTreeSet<String> = running.into_iter().map(|i| i.instance_id).collect();
    let mut stale = BTreeSet::new();
    for name in scanner_rules(events).await? {
        match naming::instance_of_rule(&name) {
            Some(id) if still_live.contains(id) => {}
            Some(_) => {
                stale.insert(name);
            }
            None => {
                warn!(rule_name = %name, "rule has the scanner prefix but no instance id; left alone")
            }
        }
    }
    delete_rules(events, stale, &mut report).await?;
    report.rules_already_gone.clear();
    info!(
        terminated = report.terminated.len(),
        rules_deleted = report.rules_deleted.len(),
        "sweep done"
    );
    Ok(report)
}

/// Runs a parsed request.
pub async fn cleanup(
    ec2_client: &ec2::Client,
    events: &eventbridge::Client,
    settings: &CleanupSettings,
    request: &CleanupRequest,
    now: DateTime<Utc>,
) -> Result<CleanupReport> {
    match request {
        CleanupRequest::Sweep => sweep(ec2_client, events, settings, now).await,
        CleanupRequest::Targeted {
            scan_id,
            instance_id,
            rule_name,
        } => {
            cleanup_scan(
                ec2_client,
                events,
                scan_id.as_deref(),
                instance_id.as_deref(),
                rule_name.as_deref(),
            )
            .await
        }
    }
}

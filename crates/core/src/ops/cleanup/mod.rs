//! cleanup: remove what a scan created. Targeted mode removes one scan's
//! instance and rule; sweep mode finds what a lost execution left behind.
//! Both refuse to touch anything that does not carry the scanner tag, and
//! count "already gone" as success.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{info, warn};

use crate::aws::ec2::{self, Instances, ScannerInstance};
use crate::aws::events;
use crate::aws::places::Places;
use crate::error::{Error, Result};
use crate::model::{
    parse_event, AccountId, Input, InstanceId, Place, RegionName, RuleName, ScanContext, ScanId,
    RULE_NAME_PREFIX,
};
use crate::naming;
use crate::settings::{
    vars, Bounded, BusName, EnvReader, FromEnv, Home, InstanceProfile, ScanTimeoutMinutes,
};
use crate::tags;

mod sweep;
pub use sweep::*;

/// cleanup: what a scanner instance is, and when it counts as orphaned.
#[derive(Debug, Clone)]
pub struct CleanupSettings {
    /// The scanner's instance profile: an instance is amiscan's only when it
    /// carries the scanner tag *and* runs with this profile, so tagging an
    /// instance is not enough to get it terminated.
    pub instance_profile: InstanceProfile,
    pub scan_timeout_minutes: u32,
    pub sweep_margin_minutes: u32,
    pub home: Home,
    /// The hub's bus, where the rule of a member's scan carries its token.
    pub hub_bus: Option<BusName>,
}

impl FromEnv for CleanupSettings {
    fn from_env<F: Fn(&str) -> Option<String>>(mut env: EnvReader<F>) -> Result<Self> {
        let profile: Option<InstanceProfile> = env.required(vars::INSTANCE_PROFILE);
        let timeout: Option<ScanTimeoutMinutes> = env.required(vars::SCAN_TIMEOUT_MINUTES);
        let margin: Option<Bounded<0, 1440>> =
            env.optional(vars::SWEEP_MARGIN_MINUTES, Bounded(30));
        let home = Home::read(&mut env);
        let bus: Option<Option<BusName>> = env.maybe(vars::HUB_EVENT_BUS_NAME);
        env.finish(|| {
            Some(CleanupSettings {
                instance_profile: profile?,
                scan_timeout_minutes: timeout?.0,
                sweep_margin_minutes: margin?.0,
                home: home?,
                hub_bus: bus?,
            })
        })
    }
}

/// What to clean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanupRequest {
    /// One scan: instances tagged with the scan id, the named instance, the
    /// named rule, and the rule of every instance found.
    Targeted {
        scan_id: Option<ScanId>,
        instance_id: Option<InstanceId>,
        rule_name: Option<RuleName>,
        /// Where the scan ran (a scan context's `account_id` and `region`;
        /// each absent one the functions' own).
        account_id: Option<AccountId>,
        region: Option<RegionName>,
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
    scan_id: Option<ScanId>,
    #[serde(default)]
    instance_id: Option<InstanceId>,
    #[serde(default)]
    rule_name: Option<RuleName>,
}

impl Input for CleanupEvent {
    fn check(&self) -> Result<()> {
        if let Some(scan) = &self.scan {
            scan.check_at("scan")?;
        }
        let targeted = self.scan.is_some()
            || self.scan_id.is_some()
            || self.instance_id.is_some()
            || self.rule_name.is_some();
        match (self.sweep, targeted) {
            (true, true) => Err(Error::invalid(
                "sweep",
                "cannot be combined with scan, scan_id, instance_id or rule_name",
            )),
            (false, false) => Err(Error::invalid(
                "scan_id",
                "missing: give scan, scan_id, instance_id or rule_name, or \"sweep\": true",
            )),
            _ => Ok(()),
        }
    }
}

/// Parses a scheduled event (sweep), `{"sweep": true}`, or a targeted request
/// given as ids or as `{"scan": {…}}`.
pub fn parse_request(payload: Value) -> Result<CleanupRequest> {
    if payload.get("detail-type").is_some() {
        let _event: aws_lambda_events::eventbridge::EventBridgeEvent = parse_event(payload)?;
        return Ok(CleanupRequest::Sweep);
    }
    let event: CleanupEvent = parse_event(payload)?;
    if event.sweep {
        return Ok(CleanupRequest::Sweep);
    }
    let (mut scan_id, mut instance_id, mut rule_name) =
        (event.scan_id, event.instance_id, event.rule_name);
    let (mut account_id, mut region) = (None, None);
    if let Some(scan) = event.scan {
        scan_id = scan_id.or(Some(scan.scan_id));
        instance_id = instance_id.or(scan.instance_id);
        rule_name = rule_name.or(scan.rule_name);
        (account_id, region) = (scan.account_id, scan.region);
    }
    Ok(CleanupRequest::Targeted {
        scan_id,
        instance_id,
        rule_name,
        account_id,
        region,
    })
}

impl CleanupRequest {
    /// Where a targeted request acts (`home` for a sweep, and for what the
    /// request leaves out).
    pub fn place(&self, home: &Place) -> Place {
        match self {
            CleanupRequest::Sweep => home.clone(),
            CleanupRequest::Targeted {
                account_id, region, ..
            } => Place {
                account_id: account_id
                    .clone()
                    .unwrap_or_else(|| home.account_id.clone()),
                region: region.clone().unwrap_or_else(|| home.region.clone()),
            },
        }
    }

    /// The session name for acting where the scan ran.
    pub fn session(&self) -> &str {
        match self {
            CleanupRequest::Targeted {
                scan_id: Some(id), ..
            } => id.as_str(),
            _ => "amiscan-cleanup",
        }
    }
}

/// What was removed, and what was already gone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupReport {
    pub terminated: Vec<InstanceId>,
    pub instances_already_gone: Vec<InstanceId>,
    pub rules_deleted: Vec<RuleName>,
    pub rules_already_gone: Vec<RuleName>,
}

async fn delete_rules(
    client: &events::Client,
    bus: Option<&str>,
    names: BTreeSet<RuleName>,
    report: &mut CleanupReport,
) -> Result<()> {
    for name in names {
        if events::delete_rule(
            client,
            bus,
            name.as_str(),
            &[naming::RULE_TARGET_ID, naming::EARLIER_RULE_TARGET_ID],
        )
        .await?
        {
            info!(rule_name = %name, bus = bus.unwrap_or("default"), "rule deleted");
            report.rules_deleted.push(name);
        } else {
            report.rules_already_gone.push(name);
        }
    }
    Ok(())
}

/// Why an instance is not one of amiscan's scanners, if it is not.
pub fn not_a_scanner(instance: &ScannerInstance, profile: &InstanceProfile) -> Option<String> {
    if !instance.managed {
        return Some(format!(
            "missing tag {}={}",
            tags::MANAGED_TAG,
            tags::MANAGED_VALUE
        ));
    }
    match instance.profile_arn.as_deref() {
        Some(arn) if profile.is(arn) => None,
        Some(arn) => Some(format!(
            "runs with instance profile {arn}, not the scanner's"
        )),
        None => Some("runs with no instance profile, not the scanner's".into()),
    }
}

/// An instance by id: from what was read already, else read by id when
/// `read` (a missing id is `None`).
async fn instance_of(
    client: &ec2::Client,
    found: &[ScannerInstance],
    id: &InstanceId,
    read: bool,
) -> Result<Option<ScannerInstance>> {
    if let Some(instance) = found.iter().find(|i| &i.instance_id == id) {
        return Ok(Some(instance.clone()));
    }
    if !read {
        return Ok(None);
    }
    Ok(ec2::describe_instances(client, Instances::ById(id))
        .await?
        .into_iter()
        .next())
}

/// Why a live instance is not a scanner. A terminated instance loses its
/// profile; only a live one can be harmed, so only a live one must prove it
/// is a scanner.
fn live_impostor(instance: Option<&ScannerInstance>, profile: &InstanceProfile) -> Option<String> {
    instance
        .filter(|i| i.is_live())
        .and_then(|i| not_a_scanner(i, profile))
}

/// Where a member's scan keeps its rule with the token: the hub's bus, in
/// the functions' own account and Region.
pub struct HubRules<'a> {
    pub client: &'a events::Client,
    pub bus: &'a BusName,
}

/// Targeted cleanup of one scan. The scan's instances are read once, and
/// every instance is checked for the scanner tag and profile before anything
/// changes: a named instance that fails the check is refused, a tagged one
/// found by the scan id is left alone. `ec2_client` and `events_client` act
/// where the scan ran; for a scan away from home, `hub` deletes the rules of
/// the same names on the hub's bus too.
#[allow(clippy::too_many_arguments)]
pub async fn cleanup_scan(
    ec2_client: &ec2::Client,
    events_client: &events::Client,
    hub: Option<HubRules<'_>>,
    profile: &InstanceProfile,
    scan_id: Option<&ScanId>,
    instance_id: Option<&InstanceId>,
    rule_name: Option<&RuleName>,
) -> Result<CleanupReport> {
    let mut report = CleanupReport::default();
    let mut rules: BTreeSet<RuleName> = rule_name.cloned().into_iter().collect();
    // By scan id when there is one: that also finds an instance whose
    // launch response was lost.
    let found = match (scan_id, instance_id) {
        (Some(scan_id), _) => {
            ec2::describe_instances(
                ec2_client,
                Instances::Scanners {
                    scan_id: Some(scan_id),
                    live_only: false,
                },
            )
            .await?
        }
        (None, Some(id)) => ec2::describe_instances(ec2_client, Instances::ById(id)).await?,
        (None, None) => Vec::new(),
    };
    let mut live: BTreeSet<InstanceId> = BTreeSet::new();
    if let Some(id) = instance_id {
        let named = instance_of(ec2_client, &found, id, scan_id.is_some()).await?;
        if let Some(why) = live_impostor(named.as_ref(), profile) {
            return Err(Error::NotScannerManaged {
                kind: "instance",
                id: id.to_string(),
                why,
            });
        }
        match named {
            Some(instance) if instance.is_live() => {
                live.insert(id.clone());
            }
            _ => report.instances_already_gone.push(id.clone()),
        }
        rules.insert(RuleName::for_instance(id));
    }
    // A named rule is deleted only when it is a scanner instance's: its
    // instance is gone, or runs as a scanner.
    if let Some(rule) = rule_name {
        let Some(owner) = rule.instance() else {
            return Err(Error::NotScannerManaged {
                kind: "rule",
                id: rule.to_string(),
                why: "its name names no instance".into(),
            });
        };
        if instance_id != Some(&owner) {
            let instance = instance_of(ec2_client, &found, &owner, true).await?;
            if let Some(why) = live_impostor(instance.as_ref(), profile) {
                return Err(Error::NotScannerManaged {
                    kind: "rule",
                    id: rule.to_string(),
                    why: format!("its instance {owner} is not a scanner: {why}"),
                });
            }
        }
    }
    for instance in found.iter().filter(|i| i.managed) {
        if let Some(why) = live_impostor(Some(instance), profile) {
            warn!(instance_id = %instance.instance_id, why = %why, "carries the scan's tag but is not a scanner; left alone");
            continue;
        }
        rules.insert(RuleName::for_instance(&instance.instance_id));
        if instance.is_live() {
            live.insert(instance.instance_id.clone());
        }
    }
    let live: Vec<InstanceId> = live.into_iter().collect();
    ec2::terminate_instances(ec2_client, &live).await?;
    for id in &live {
        info!(instance_id = %id, "instance terminated");
    }
    report.terminated = live;
    if let Some(hub) = hub {
        delete_rules(hub.client, Some(&hub.bus.0), rules.clone(), &mut report).await?;
    }
    delete_rules(events_client, None, rules, &mut report).await?;
    Ok(report)
}

/// Runs a parsed request. `ec2_client` and `events_client` act where the
/// request does (a targeted request's place; home for a sweep); `own` acts
/// at home, for the rules a member's scan keeps on the hub's bus; `places`
/// reaches the member accounts the sweep finds there.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    ec2_client: &ec2::Client,
    events_client: &events::Client,
    own: &events::Client,
    places: &Places,
    settings: &CleanupSettings,
    request: &CleanupRequest,
    now: DateTime<Utc>,
) -> Result<CleanupReport> {
    let home = places.home()?;
    match request {
        CleanupRequest::Sweep => {
            let mut report = sweep(ec2_client, events_client, settings, now).await?;
            sweep_members(own, places, settings, now, &mut report).await?;
            Ok(report)
        }
        CleanupRequest::Targeted {
            scan_id,
            instance_id,
            rule_name,
            ..
        } => {
            let place = request.place(home);
            let (hub, profile) = if &place == home {
                (None, settings.instance_profile.clone())
            } else {
                let bus = settings.hub_bus.as_ref().ok_or_else(|| {
                    Error::Configuration(format!(
                        "{} is not set: a scan in {place} keeps its rule on the hub's bus",
                        vars::HUB_EVENT_BUS_NAME
                    ))
                })?;
                (
                    Some(HubRules { client: own, bus }),
                    InstanceProfile::of_member(&place),
                )
            };
            cleanup_scan(
                ec2_client,
                events_client,
                hub,
                &profile,
                scan_id.as_ref(),
                instance_id.as_ref(),
                rule_name.as_ref(),
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::tests::env;
    use serde_json::json;

    #[test]
    fn requests_name_the_field_that_is_wrong() {
        let field = |v: Value| match parse_request(v).unwrap_err() {
            Error::InvalidInput { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(json!({})), "scan_id");
        assert_eq!(
            field(json!({"rule_name": "someone-elses-rule"})),
            "rule_name"
        );
        assert_eq!(field(json!({"instance_id": "i-zz"})), "instance_id");
        assert_eq!(
            field(json!({"sweep": true, "scan_id": "ami-12345678-20261123"})),
            "sweep"
        );
        assert_eq!(
            parse_request(json!({"sweep": true})).unwrap(),
            CleanupRequest::Sweep
        );
    }

    #[test]
    fn a_hub_bus_rule_names_where_its_instance_runs() {
        // create-scan-rule's pattern for a member's instance.
        let pattern = r#"{"source":["aws.inspector2"],"detail-type":["Inspector2 Scan"],"account":["111111111111"],"region":["eu-west-1"],"detail":{"scan-status":["INITIAL_SCAN_COMPLETE"],"instance-id":["i-0123456789abcdef0"]}}"#;
        let place = place_of_pattern(Some(pattern)).unwrap();
        assert_eq!(place.to_string(), "111111111111/eu-west-1");
        // A pattern without both, or not JSON: no place (the rule is left alone).
        for other in [
            r#"{"source":["aws.inspector2"],"account":["111111111111"]}"#,
            r#"{"account":["not-an-account"],"region":["eu-west-1"]}"#,
            "not json",
        ] {
            assert_eq!(place_of_pattern(Some(other)), None, "{other}");
        }
        assert_eq!(place_of_pattern(None), None);
    }

    #[test]
    fn the_sweep_margin_defaults_and_the_timeout_is_range_checked() {
        let err = CleanupSettings::from_env(env(&[
            ("ACCOUNT_ID", "123456789012"),
            ("INSTANCE_PROFILE", "scanner"),
            ("SCAN_TIMEOUT_MINUTES", "0"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains(
            "SCAN_TIMEOUT_MINUTES=\"0\" is malformed: expected a whole number from 1 to 1440"
        ));
        let ok = CleanupSettings::from_env(env(&[
            ("ACCOUNT_ID", "123456789012"),
            ("INSTANCE_PROFILE", "scanner"),
            ("SCAN_TIMEOUT_MINUTES", "120"),
        ]))
        .unwrap();
        assert_eq!(
            (ok.scan_timeout_minutes, ok.sweep_margin_minutes),
            (120, 30)
        );
    }
}

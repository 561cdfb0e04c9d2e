//! create-scan-rule: the per-instance EventBridge rule that delivers
//! Inspector's "scan complete" event for the scan's instance into
//! collect-findings' queue, with the token of launch-scan's waiting task, so
//! the collector wakes that execution. launch-scan calls it from its wait
//! (`lambda:invoke.waitForTaskToken`): the rule exists only once the
//! execution waits, and carries the token of that very wait.
//!
//! An instance in a member account (or another Region) is scanned there, and
//! Inspector's event reaches only that account's default bus in that Region:
//! a rule there forwards it to the hub's bus (member.yaml's forwarder role),
//! and the rule with the token is on the hub's bus, so the token never
//! leaves the hub's account.

use serde_json::json;
use tracing::info;

use crate::aws::events::types::{InputTransformer, Target};
use crate::aws::events::{self, Rule};
use crate::error::{Error, Result};
use crate::model::instance_wait::{
    INITIAL_SCAN_COMPLETE, INSTANCE_SCAN_DETAIL_TYPE, INSTANCE_SCAN_SOURCE,
};
use crate::model::{InstanceId, InstanceWaiter, Place, RuleName, RuleRequest, ScanContext};
use crate::naming;
use crate::settings::{vars, BusName, EnvReader, FromEnv, Home, QueueArn};
use crate::tags;

/// create-scan-rule: where the rule delivers.
#[derive(Debug, Clone)]
pub struct RuleSettings {
    pub findings_queue_arn: QueueArn,
    pub home: Home,
    /// The hub's bus, where member accounts' events arrive (only a hub,
    /// deployed with OrganizationId, has one).
    pub hub_bus: Option<BusName>,
}

impl FromEnv for RuleSettings {
    fn from_env<F: Fn(&str) -> Option<String>>(mut env: EnvReader<F>) -> Result<Self> {
        let queue: Option<QueueArn> = env.required(vars::FINDINGS_QUEUE_ARN);
        let home = Home::read(&mut env);
        let bus: Option<Option<BusName>> = env.maybe(vars::HUB_EVENT_BUS_NAME);
        env.finish(|| {
            Some(RuleSettings {
                findings_queue_arn: queue?,
                home: home?,
                hub_bus: bus?,
            })
        })
    }
}

/// The pattern of Inspector's "scan complete" event for one instance; away
/// from home, only from the instance's own account and Region.
pub fn event_pattern(instance_id: &InstanceId, away: Option<&Place>) -> String {
    let mut pattern = json!({
        "source": [INSTANCE_SCAN_SOURCE],
        "detail-type": [INSTANCE_SCAN_DETAIL_TYPE],
        "detail": {
            "scan-status": [INITIAL_SCAN_COMPLETE],
            "instance-id": [instance_id],
        }
    });
    if let Some(place) = away {
        pattern["account"] = json!([place.account_id]);
        pattern["region"] = json!([place.region]);
    }
    pattern.to_string()
}

/// The hub's bus, by ARN (a member's rule targets it).
pub fn hub_bus_arn(home: &Place, bus: &BusName) -> String {
    format!(
        "arn:{}:events:{}:{}:event-bus/{}",
        home.region.partition(),
        home.region,
        home.account_id,
        bus.0
    )
}

/// member.yaml's forwarder role in a member account: EventBridge assumes it
/// to put that account's events on the hub's bus.
pub fn forwarder_role_arn(place: &Place, home: &Home) -> String {
    format!(
        "arn:{}:iam::{}:role/{}-forwarder",
        place.region.partition(),
        place.account_id,
        home.member_role.0
    )
}

/// EventBridge's reserved variable for the whole event, as JSON.
pub const WHOLE_EVENT: &str = "<aws.events.event.json>";

/// The queue message: the waiter as a literal and Inspector's event (away
/// from home, the waiter names the account the event must be of).
pub fn input_transformer(
    scan: &ScanContext,
    task_token: &str,
    away: Option<&Place>,
) -> Result<InputTransformer> {
    let instance_id = scan.require_instance("scan")?.clone();
    let waiter = InstanceWaiter {
        scan_id: scan.scan_id.clone(),
        instance_id,
        task_token: task_token.to_string(),
        account_id: away.map(|p| p.account_id.clone()),
    };
    // A placeholder string, replaced by the bare variable: EventBridge puts
    // the event's JSON there, unquoted.
    let template = json!({"amiscan_instance_scan": waiter, "event": "EVENT"}).to_string();
    let template = template.replacen("\"EVENT\"", WHOLE_EVENT, 1);
    InputTransformer::builder()
        .input_template(template)
        .build()
        .map_err(|e| Error::Internal(format!("input transformer: {e}")))
}

/// Creates (or re-creates with the current token) the rule and its single
/// target; returns the rule's name. `own` acts in the functions' own account
/// and Region (`home`); `away` is the scan's account and Region when they
/// are not home's, with a client acting there. Away, the rule with the
/// token is made on the hub's bus first, then the forwarding rule where the
/// instance runs, so no forwarded event finds the hub without its rule.
pub async fn run(
    own: &events::Client,
    away: Option<(&events::Client, &Place)>,
    settings: &RuleSettings,
    request: RuleRequest,
    home: &Place,
) -> Result<RuleName> {
    let scan = &request.scan;
    let instance_id = scan.require_instance("scan")?.clone();
    let name = RuleName::for_instance(&instance_id);
    let bus = match away {
        None => None,
        Some((_, place)) => Some(settings.hub_bus.as_ref().ok_or_else(|| {
            Error::Configuration(format!(
                "{} is not set: a scan in {place} needs the hub's bus (deploy the hub with OrganizationId)",
                vars::HUB_EVENT_BUS_NAME
            ))
        })?),
    };
    let place = away.map(|(_, place)| place);
    let rule = |description: String| Rule {
        bus: None,
        name: name.as_str(),
        description: naming::truncate(&description, 512),
        event_pattern: event_pattern(&instance_id, place),
        tags: tags::scanner_tags(&scan.ami_id, &scan.scan_id),
    };
    let rule_arn = events::put_rule(
        own,
        Rule {
            bus: bus.map(|b| b.0.as_str()),
            ..rule(format!(
                "amiscan: wake scan {} once Inspector has scanned {instance_id}",
                scan.scan_id
            ))
        },
    )
    .await?;
    let target = Target::builder()
        .id(naming::RULE_TARGET_ID)
        .arn(&settings.findings_queue_arn.0)
        .input_transformer(input_transformer(scan, &request.task_token, place)?)
        .build()
        .map_err(|e| Error::Internal(format!("rule target: {e}")))?;
    events::put_target(own, bus.map(|b| b.0.as_str()), name.as_str(), target).await?;
    info!(rule_name = %name, rule_arn = %rule_arn, instance_id = %instance_id, "scan rule ready");
    if let (Some((client, place)), Some(bus)) = (away, bus) {
        let hub = hub_bus_arn(home, bus);
        let forward_arn = events::put_rule(
            client,
            rule(format!(
                "amiscan: forward Inspector's scan of {instance_id} (scan {}) to the hub's bus",
                scan.scan_id
            )),
        )
        .await?;
        let forward = Target::builder()
            .id(naming::RULE_TARGET_ID)
            .arn(&hub)
            .role_arn(forwarder_role_arn(place, &settings.home))
            .build()
            .map_err(|e| Error::Internal(format!("rule target: {e}")))?;
        events::put_target(client, None, name.as_str(), forward).await?;
        info!(rule_name = %name, rule_arn = %forward_arn, place = %place, hub_bus = %hub, "forwarding rule ready");
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse_event, InstanceScanMessage};

    fn request() -> RuleRequest {
        let mut request: RuleRequest = parse_event(
            serde_json::from_str(include_str!(
                "../../../../events/create-scan-rule/request.json"
            ))
            .unwrap(),
        )
        .unwrap();
        request.scan.ami_name = Some("golden \"base\"".into());
        request
    }

    #[test]
    fn the_pattern_matches_only_this_instances_completed_scan() {
        let instance = request().scan.instance_id.unwrap();
        let pattern: serde_json::Value =
            serde_json::from_str(&event_pattern(&instance, None)).unwrap();
        assert_eq!(pattern["source"], json!(["aws.inspector2"]));
        assert_eq!(pattern["detail-type"], json!(["Inspector2 Scan"]));
        assert_eq!(pattern["detail"]["instance-id"], json!([instance]));
        assert_eq!(
            pattern["detail"]["scan-status"],
            json!(["INITIAL_SCAN_COMPLETE"])
        );
        assert!(pattern.get("account").is_none());
        // Away from home: that account's and Region's event only.
        let place = Place {
            account_id: "111111111111".parse().unwrap(),
            region: "eu-west-1".parse().unwrap(),
        };
        let pattern: serde_json::Value =
            serde_json::from_str(&event_pattern(&instance, Some(&place))).unwrap();
        assert_eq!(pattern["account"], json!(["111111111111"]));
        assert_eq!(pattern["region"], json!(["eu-west-1"]));
        assert_eq!(pattern["detail"]["instance-id"], json!([instance]));
    }

    #[test]
    fn the_delivery_is_the_waiter_and_inspectors_event() {
        let request = request();
        let transformer = input_transformer(&request.scan, "token \"1\"", None).unwrap();
        let event = include_str!("../../../../events/create-scan-rule/inspector-scan-event.json");
        // What EventBridge does with the template for a sample event.
        let rendered = transformer.input_template().replace(WHOLE_EVENT, event);
        let message: InstanceScanMessage =
            parse_event(serde_json::from_str(&rendered).unwrap()).unwrap();
        assert_eq!(message.amiscan_instance_scan.task_token, "token \"1\"");
        assert_eq!(message.amiscan_instance_scan.scan_id, request.scan.scan_id);
        assert_eq!(
            Some(&message.amiscan_instance_scan.instance_id),
            request.scan.instance_id.as_ref()
        );
        assert_eq!(
            message.event_time().as_deref(),
            Some("2026-11-27T13:41:10Z")
        );
        assert!(transformer.input_paths_map().is_none());
    }

    #[test]
    fn a_request_without_an_instance_or_token_is_refused_by_field() {
        let mut value: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../events/create-scan-rule/request.json"
        ))
        .unwrap();
        value["task_token"] = "".into();
        let err = parse_event::<RuleRequest>(value.clone()).unwrap_err();
        assert!(err.to_string().contains("task_token"), "{err}");
        value["task_token"] = "t".into();
        value["scan"].as_object_mut().unwrap().remove("instance_id");
        let err = parse_event::<RuleRequest>(value).unwrap_err();
        assert!(err.to_string().contains("scan.instance_id"), "{err}");
    }
}

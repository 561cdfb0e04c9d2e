//! create-scan-rule: the per-instance EventBridge rule that starts the report
//! machine when Inspector's first scan of the instance completes.

use serde_json::json;
use tracing::info;

use crate::aws::events::types::{InputTransformer, Target};
use crate::aws::events::{self, Rule};
use crate::error::{Error, Result};
use crate::model::{scan, InstanceId, ReportInput, RuleName, ScanContext};
use crate::naming;
use crate::settings::{vars, EnvReader, FromEnv, RoleArn, StateMachineArn};
use crate::tags;

/// create-scan-rule: what the per-instance rule starts.
#[derive(Debug, Clone)]
pub struct RuleSettings {
    pub report_state_machine_arn: StateMachineArn,
    pub events_role_arn: RoleArn,
}

impl FromEnv for RuleSettings {
    fn from_env<F: Fn(&str) -> Option<String>>(mut env: EnvReader<F>) -> Result<Self> {
        let machine: Option<StateMachineArn> = env.required(vars::REPORT_STATE_MACHINE_ARN);
        let role: Option<RoleArn> = env.required(vars::EVENTS_ROLE_ARN);
        env.finish(|| {
            Some(RuleSettings {
                report_state_machine_arn: machine?,
                events_role_arn: role?,
            })
        })
    }
}

/// The pattern of Inspector's "scan complete" event for one instance.
pub fn event_pattern(instance_id: &InstanceId) -> String {
    json!({
        "source": ["aws.inspector2"],
        "detail-type": ["Inspector2 Scan"],
        "detail": {
            "scan-status": ["INITIAL_SCAN_COMPLETE"],
            "instance-id": [instance_id],
        }
    })
    .to_string()
}

/// EventBridge's placeholder for the event's time in the input template.
const EVENT_TIME: &str = "<event_time>";

/// The report machine's input: the scan's context as a literal and the
/// time of Inspector's event, as one [`ReportInput`].
pub fn input_transformer(scan: &ScanContext) -> Result<InputTransformer> {
    let input = ReportInput::new(scan.clone(), EVENT_TIME.into(), scan::FROM_EVENT);
    let template = serde_json::to_string(&input)
        .map_err(|e| Error::Internal(format!("encoding the report input: {e}")))?;
    InputTransformer::builder()
        .input_paths_map("event_time", "$.time")
        .input_template(template)
        .build()
        .map_err(|e| Error::Internal(format!("input transformer: {e}")))
}

/// Creates (or re-creates, unchanged) the rule and its single target.
pub async fn run(
    client: &events::Client,
    settings: &RuleSettings,
    mut scan: ScanContext,
) -> Result<ScanContext> {
    let instance_id = scan.require_instance("")?.clone();
    let name = RuleName::for_instance(&instance_id);
    scan.rule_name = Some(name.clone());
    let rule_arn = events::put_rule(
        client,
        Rule {
            name: name.as_str(),
            description: naming::truncate(
                &format!(
                    "amiscan: report {} once Inspector has scanned {instance_id}",
                    scan.scan_id
                ),
                512,
            ),
            event_pattern: event_pattern(&instance_id),
            tags: tags::scanner_tags(&scan.ami_id, &scan.scan_id),
        },
    )
    .await?;
    let target = Target::builder()
        .id(naming::RULE_TARGET_ID)
        .arn(&settings.report_state_machine_arn.0)
        .role_arn(&settings.events_role_arn.0)
        .input_transformer(input_transformer(&scan)?)
        .build()
        .map_err(|e| Error::Internal(format!("rule target: {e}")))?;
    events::put_target(client, name.as_str(), target).await?;
    info!(rule_name = %name, rule_arn = %rule_arn, instance_id = %instance_id, "scan rule ready");
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::parse_event;

    fn scan() -> ScanContext {
        let mut scan: ScanContext = serde_json::from_str(include_str!(
            "../../../../events/create-scan-rule/output.json"
        ))
        .unwrap();
        scan.ami_name = Some("golden \"base\"".into());
        scan
    }

    #[test]
    fn the_pattern_matches_only_this_instances_completed_scan() {
        let instance = scan().instance_id.unwrap();
        let pattern: serde_json::Value = serde_json::from_str(&event_pattern(&instance)).unwrap();
        assert_eq!(pattern["source"], json!(["aws.inspector2"]));
        assert_eq!(pattern["detail-type"], json!(["Inspector2 Scan"]));
        assert_eq!(pattern["detail"]["instance-id"], json!([instance]));
        assert_eq!(
            pattern["detail"]["scan-status"],
            json!(["INITIAL_SCAN_COMPLETE"])
        );
    }

    #[test]
    fn the_target_input_is_the_report_input_with_the_events_time() {
        let transformer = input_transformer(&scan()).unwrap();
        // What EventBridge does with the template, for a sample event.
        let rendered = transformer
            .input_template()
            .replace(EVENT_TIME, "2026-11-23T10:00:00Z");
        let input: ReportInput = parse_event(serde_json::from_str(&rendered).unwrap()).unwrap();
        assert_eq!(input.scan, scan());
        assert_eq!(
            input.inspector.event_time.as_deref(),
            Some("2026-11-23T10:00:00Z")
        );
        assert_eq!(input.inspector.source.as_deref(), Some("event"));
        assert_eq!(
            transformer.input_paths_map().unwrap()["event_time"],
            "$.time"
        );
    }
}

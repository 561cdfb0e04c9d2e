//! create-scan-rule: the per-instance EventBridge rule that starts the report
//! machine when Inspector's first scan of the instance completes.

use serde_json::json;
use tracing::info;

use crate::aws::eventbridge;
use crate::aws::eventbridge::types::{InputTransformer, RuleState, Tag, Target};
use crate::error::{Error, Result};
use crate::model::ScanContext;
use crate::naming;
use crate::settings::RuleSettings;

/// The pattern of Inspector's "scan complete" event for one instance.
pub fn event_pattern(instance_id: &str) -> String {
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

/// The report machine's input: the scan's context as a literal, plus the
/// severity counts and time from Inspector's event.
pub fn input_transformer(scan: &ScanContext) -> Result<InputTransformer> {
    let context = serde_json::to_string(scan)
        .map_err(|e| Error::Internal(format!("encoding the scan context: {e}")))?;
    InputTransformer::builder()
        .input_paths_map("severity_counts", "$.detail.finding-severity-counts")
        .input_paths_map("event_time", "$.time")
        .input_template(format!(
            r#"{{"scan": {context}, "inspector": {{"severity_counts": <severity_counts>, "event_time": "<event_time>"}}}}"#
        ))
        .build()
        .map_err(|e| Error::Internal(format!("input transformer: {e}")))
}

/// Creates (or re-creates, unchanged) the rule and its single target.
pub async fn create_scan_rule(
    client: &eventbridge::Client,
    settings: &RuleSettings,
    mut scan: ScanContext,
) -> Result<ScanContext> {
    scan.validate("")?;
    let instance_id = scan.require_instance("")?.to_string();
    let name = naming::rule_name(&instance_id);
    scan.rule_name = Some(name.clone());
    let tag = |k: String, v: &str| Tag::builder().key(k).value(naming::tag_value(v)).build();
    let tags = [
        tag(naming::MANAGED_TAG.into(), naming::MANAGED_VALUE),
        tag(naming::AMI_ID_TAG.into(), &scan.ami_id),
        tag(naming::SCAN_ID_TAG.into(), &scan.scan_id),
    ]
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| Error::Internal(format!("rule tag: {e}")))?;

    let rule = client
        .put_rule()
        .name(&name)
        .description(naming::truncate(
            &format!(
                "amiscan: report {} once Inspector has scanned {instance_id}",
                scan.scan_id
            ),
            512,
        ))
        .event_pattern(event_pattern(&instance_id))
        .state(RuleState::Enabled)
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(|e| Error::from_sdk("PutRule", e))?;

    let target = Target::builder()
        .id(naming::RULE_TARGET_ID)
        .arn(&settings.report_state_machine_arn.0)
        .role_arn(&settings.events_role_arn.0)
        .input_transformer(input_transformer(&scan)?)
        .build()
        .map_err(|e| Error::Internal(format!("rule target: {e}")))?;
    let out = client
        .put_targets()
        .rule(&name)
        .targets(target)
        .send()
        .await
        .map_err(|e| Error::from_sdk("PutTargets", e))?;
    if out.failed_entry_count() > 0 {
        let entry = out.failed_entries().first();
        return Err(Error::Aws {
            operation: "PutTargets",
            code: entry
                .and_then(|e| e.error_code())
                .unwrap_or("FailedEntry")
                .to_string(),
            message: entry
                .and_then(|e| e.error_message())
                .unwrap_or("the target was not added")
                .to_string(),
            transient: false,
        });
    }
    info!(rule_name = %name, rule_arn = rule.rule_arn().unwrap_or_default(), instance_id = %instance_id, "scan rule ready");
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan() -> ScanContext {
        ScanContext {
            scan_id: "ami-0123456789abcdef0-20261123".into(),
            ami_id: "ami-0123456789abcdef0".into(),
            ami_name: Some("golden \"base\"".into()),
            platform: Some("Linux/UNIX".into()),
            requested_at: None,
            instance_id: Some("i-0123456789abcdef0".into()),
            instance_type: Some("t3.small".into()),
            launched_at: None,
            deadline_at: None,
            rule_name: Some("amiscan-scan-i-0123456789abcdef0".into()),
        }
    }

    #[test]
    fn the_pattern_matches_only_this_instances_completed_scan() {
        let pattern: serde_json::Value =
            serde_json::from_str(&event_pattern("i-0123456789abcdef0")).unwrap();
        assert_eq!(pattern["source"], json!(["aws.inspector2"]));
        assert_eq!(pattern["detail-type"], json!(["Inspector2 Scan"]));
        assert_eq!(
            pattern["detail"]["instance-id"],
            json!(["i-0123456789abcdef0"])
        );
        assert_eq!(
            pattern["detail"]["scan-status"],
            json!(["INITIAL_SCAN_COMPLETE"])
        );
    }

    #[test]
    fn the_target_input_is_the_context_plus_the_events_counts() {
        let transformer = input_transformer(&scan()).unwrap();
        // What EventBridge does with the template, for a sample event.
        let rendered = transformer
            .input_template()
            .replace(
                "<severity_counts>",
                r#"{"CRITICAL":1,"HIGH":0,"MEDIUM":2,"TOTAL":3}"#,
            )
            .replace("<event_time>", "2026-11-23T10:00:00Z");
        let input: serde_json::Value = serde_json::from_str(&rendered).unwrap();
        assert_eq!(input["scan"], serde_json::to_value(scan()).unwrap());
        assert_eq!(input["inspector"]["severity_counts"]["CRITICAL"], 1);
        assert_eq!(input["inspector"]["event_time"], "2026-11-23T10:00:00Z");
        let paths = transformer.input_paths_map().unwrap();
        assert_eq!(paths["severity_counts"], "$.detail.finding-severity-counts");
    }
}

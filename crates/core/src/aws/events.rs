//! EventBridge: amiscan's rules, their target, and their removal.

pub use aws_sdk_eventbridge::{config, error, operation, types, Client};

use crate::error::{Error, Result};
use types::{RuleState, Tag, Target};

/// A rule to create (or re-create, unchanged).
pub struct Rule<'a> {
    /// The event bus (None: the account's default bus).
    pub bus: Option<&'a str>,
    pub name: &'a str,
    pub description: String,
    pub event_pattern: String,
    pub tags: Vec<(String, String)>,
}

/// PutRule; returns the rule's ARN.
pub async fn put_rule(client: &Client, rule: Rule<'_>) -> Result<String> {
    let tags = rule
        .tags
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Internal(format!("rule tag: {e}")))?;
    let out = client
        .put_rule()
        .set_event_bus_name(rule.bus.map(str::to_string))
        .name(rule.name)
        .description(rule.description)
        .event_pattern(rule.event_pattern)
        .state(RuleState::Enabled)
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(|e| Error::from_sdk("PutRule", e))?;
    Ok(out.rule_arn.unwrap_or_default())
}

/// PutTargets with one target; a failed entry is an error.
pub async fn put_target(
    client: &Client,
    bus: Option<&str>,
    rule: &str,
    target: Target,
) -> Result<()> {
    let out = client
        .put_targets()
        .set_event_bus_name(bus.map(str::to_string))
        .rule(rule)
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
    Ok(())
}

fn is_rule_gone(err: &Error) -> bool {
    err.aws_code() == Some("ResourceNotFoundException")
}

/// Removes the rule's targets by the ids they were given, then the rule.
/// `false` when the rule was already gone.
pub async fn delete_rule(
    client: &Client,
    bus: Option<&str>,
    name: &str,
    target_ids: &[&str],
) -> Result<bool> {
    if let Err(e) = client
        .remove_targets()
        .set_event_bus_name(bus.map(str::to_string))
        .rule(name)
        .set_ids(Some(target_ids.iter().map(|t| t.to_string()).collect()))
        .send()
        .await
    {
        let err = Error::from_sdk("RemoveTargets", e);
        if is_rule_gone(&err) {
            return Ok(false);
        }
        return Err(err);
    }
    match client
        .delete_rule()
        .set_event_bus_name(bus.map(str::to_string))
        .name(name)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e) => match Error::from_sdk("DeleteRule", e) {
            err if is_rule_gone(&err) => Ok(false),
            err => Err(err),
        },
    }
}

/// A rule as ListRules gives it: its name and event pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub event_pattern: Option<String>,
}

/// Every rule with the prefix on a bus (None: the default bus), every page.
pub async fn rules(client: &Client, bus: Option<&str>, prefix: &str) -> Result<Vec<Listed>> {
    // ListRules has no paginator in the SDK: follow NextToken by hand.
    let mut rules = Vec::new();
    let mut token = None;
    loop {
        let out = client
            .list_rules()
            .set_event_bus_name(bus.map(str::to_string))
            .name_prefix(prefix)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| Error::from_sdk("ListRules", e))?;
        rules.extend(out.rules().iter().filter_map(|r| {
            Some(Listed {
                name: r.name()?.to_string(),
                event_pattern: r.event_pattern().map(str::to_string),
            })
        }));
        token = out.next_token.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(rules);
        }
    }
}

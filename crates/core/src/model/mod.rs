//! The domain: typed ids, one scan's context and status, severities and the
//! verdict, times, and how an event becomes one of these.

pub mod exceptions;
pub mod finding;
pub mod ids;
pub mod instance_wait;
pub mod scan;
pub mod severity;
pub mod snapshot;
pub mod sqs;
pub mod time;

pub use finding::Finding;
pub use ids::{
    AccountId, AmiId, InstanceId, Place, RegionName, RuleName, ScanId, RULE_NAME_PREFIX,
};
pub use instance_wait::{InstanceScanMessage, InstanceWaiter, RuleRequest};
pub use scan::{
    InspectorFacts, OnDemandCounts, ReportInput, ScanContext, ScanMode, ScanStatus, SnapshotOutcome,
};
pub use severity::{Severity, SeverityCounts, Verdict};
pub use snapshot::{SnapshotMarker, Waiter, WaiterMessage};

use serde::de::DeserializeOwned;

use crate::error::Error;

/// An event a function accepts. Each field validates itself when it is
/// deserialised; `check` adds what spans fields.
pub trait Input: DeserializeOwned {
    fn check(&self) -> Result<(), Error> {
        Ok(())
    }
}

impl Input for aws_lambda_events::eventbridge::EventBridgeEvent {}

/// A field's path under `at`.
pub fn field(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

/// Deserialises and checks an event, naming the offending field on failure.
pub fn parse_event<T: Input>(payload: serde_json::Value) -> Result<T, Error> {
    if !payload.is_object() {
        return Err(Error::invalid("(event)", "expected a JSON object"));
    }
    let event: T = serde_path_to_error::deserialize(payload).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner().to_string();
        // serde names a missing field in its message, at the parent's path.
        let field = match inner.strip_prefix("missing field `") {
            Some(rest) => {
                let name = rest.split('`').next().unwrap_or_default();
                if path == "." {
                    name.to_string()
                } else {
                    format!("{path}.{name}")
                }
            }
            None if path == "." => "(event)".to_string(),
            None => path,
        };
        Error::invalid(field, inner)
    })?;
    event.check()?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_context_with_a_bad_id_names_the_field() {
        let err = parse_event::<ReportInput>(json!({"scan": {
            "scan_id": "ami-12345678-20261123",
            "ami_id": "ami-12345678",
            "instance_id": "instance-1"
        }}))
        .unwrap_err();
        assert_eq!(
            err,
            Error::invalid(
                "scan.instance_id",
                "\"instance-1\" is not an instance id (i- and 8 to 17 hex digits)"
            )
        );
        let foreign = parse_event::<ScanContext>(json!({
            "scan_id": "ami-87654321-20261123",
            "ami_id": "ami-12345678",
        }))
        .unwrap_err();
        assert!(
            matches!(&foreign, Error::InvalidInput { field, .. } if field == "scan_id"),
            "{foreign:?}"
        );
        let rule = parse_event::<ScanContext>(json!({
            "scan_id": "ami-12345678-20261123",
            "ami_id": "ami-12345678",
            "rule_name": "someone-elses-rule",
        }))
        .unwrap_err();
        assert!(
            matches!(&rule, Error::InvalidInput { field, .. } if field == "rule_name"),
            "{rule:?}"
        );
    }

    #[test]
    fn parse_errors_name_the_missing_or_mistyped_field() {
        let missing =
            parse_event::<ScanContext>(json!({"scan_id": "ami-12345678-20261123"})).unwrap_err();
        assert!(
            matches!(&missing, Error::InvalidInput { field, .. } if field == "ami_id"),
            "{missing:?}"
        );
        let mistyped =
            parse_event::<ScanContext>(json!({"scan_id": "ami-12345678-20261123", "ami_id": 5}))
                .unwrap_err();
        assert!(
            matches!(&mistyped, Error::InvalidInput { field, .. } if field == "ami_id"),
            "{mistyped:?}"
        );
        let not_object = parse_event::<ScanContext>(json!([1])).unwrap_err();
        assert!(
            matches!(&not_object, Error::InvalidInput { field, .. } if field == "(event)"),
            "{not_object:?}"
        );
    }
}

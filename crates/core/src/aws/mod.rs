//! The only code that calls AWS: one file per service, each a set of thin
//! functions over that service's SDK client, re-exporting the SDK crate so
//! callers name its types through it. Nothing here knows an operation of
//! amiscan's; the SDK configuration is shared by every Lambda, loaded once
//! at start-up, honouring the standard AWS_* variables (AWS_ENDPOINT_URL
//! among them), with the SDK's standard retry of throttling and transient
//! faults.

pub mod ec2;
pub mod events;
pub mod inspector;
pub mod organizations;
pub mod places;
pub mod s3;
pub mod sfn;
pub mod sns;
pub mod sts;

pub use aws_config;
pub use aws_config::SdkConfig;

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;

/// Attempts per AWS call, the first included, before an error reaches the
/// handler (and, as `Transient`, the state machine's own Retry).
pub const MAX_ATTEMPTS: u32 = 5;

/// Loads the SDK configuration from the environment.
pub async fn load_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .load()
        .await
}

/// The IAM actions each function needs, in `tests/iam-actions.json`, checked
/// here against every AWS call this crate makes (each call site names its
/// operation in `Error::from_sdk`); `tests/test_template.py` checks the
/// template's policies against the same file.
#[cfg(test)]
mod iam_tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use serde_json::Value;

    fn table() -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/iam-actions.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn strings(v: &Value) -> BTreeSet<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    }

    /// Every operation named in an `Error::from_sdk` call under src/.
    fn called_operations() -> BTreeSet<String> {
        fn walk(dir: &Path, ops: &mut BTreeSet<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, ops);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split("from_sdk(").skip(1) {
                    if let Some(rest) = piece.trim_start().strip_prefix('"') {
                        let op = rest.split('"').next().unwrap();
                        if !op.is_empty() && op.chars().all(|c| c.is_ascii_alphanumeric()) {
                            ops.insert(op.to_string());
                        }
                    }
                }
            }
        }
        let mut ops = BTreeSet::new();
        walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut ops);
        ops
    }

    #[test]
    fn every_aws_call_is_declared_for_some_function_and_every_action_is_needed() {
        let table = table();
        let ops = called_operations();
        assert!(
            ops.contains("RunInstances") && ops.contains("ListFindings"),
            "{ops:?}"
        );
        let operations = table["operations"].as_object().unwrap();
        // A function's own actions, and those it needs only in member
        // accounts (member.yaml's role grants them).
        let declared: BTreeSet<String> = table["functions"]
            .as_object()
            .unwrap()
            .values()
            .chain(table["members_only"].as_object().unwrap().values())
            .flat_map(strings)
            .collect();
        for op in &ops {
            let action = operations
                .get(op)
                .and_then(Value::as_str)
                .unwrap_or_else(|| {
                    panic!("{op} is called but has no IAM action in iam-actions.json")
                });
            assert!(
                declared.contains(action),
                "{op} needs {action}, which no function declares"
            );
        }
        let needed: BTreeSet<String> = operations
            .iter()
            .filter(|(op, _)| ops.contains(*op))
            .map(|(_, action)| action.as_str().unwrap().to_string())
            .chain(strings(&table["implied"]))
            .collect();
        let members_only = table["members_only"].as_object().unwrap();
        for (function, actions) in table["functions"]
            .as_object()
            .unwrap()
            .iter()
            .chain(members_only)
        {
            for action in strings(actions) {
                assert!(
                    needed.contains(&action),
                    "{function} declares {action}, which no call needs"
                );
            }
        }
        for op in operations.keys() {
            assert!(
                ops.contains(op),
                "iam-actions.json lists {op}, which no code calls"
            );
        }
    }
}

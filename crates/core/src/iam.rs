//! The IAM actions each Lambda needs, declared beside the code that calls
//! AWS. A test here checks the declarations against every AWS call in this
//! crate; `tests/test_template.py` checks the template's policies against the
//! declarations, so code, declarations and template cannot drift apart.

/// Each function's actions, by function (crate) name.
pub const FUNCTION_ACTIONS: &[(&str, &[&str])] = &[
    (
        "find-amis",
        &[
            "ec2:DescribeImages",
            "ec2:DescribeInstances",
            "states:StartExecution",
            "sns:Publish",
            "kms:GenerateDataKey",
            "kms:Decrypt",
        ],
    ),
    (
        "launch-instance",
        &[
            "ec2:DescribeImages",
            "ec2:DescribeInstances",
            "ec2:RunInstances",
            "ec2:CreateTags",
            "iam:PassRole",
        ],
    ),
    (
        "create-scan-rule",
        &[
            "events:PutRule",
            "events:PutTargets",
            "events:TagResource",
            "iam:PassRole",
        ],
    ),
    (
        "export-report",
        &[
            "inspector2:ListFindings",
            "s3:PutObject",
            "s3:AbortMultipartUpload",
            "kms:GenerateDataKey",
            "kms:Decrypt",
        ],
    ),
    (
        "tag-ami",
        &[
            "ec2:DescribeImages",
            "ec2:CreateTags",
            "ec2:DeleteTags",
            "ec2:EnableImageDeprecation",
            "ec2:DisableImage",
        ],
    ),
    (
        "cleanup",
        &[
            "ec2:DescribeInstances",
            "ec2:TerminateInstances",
            "events:ListRules",
            "events:ListTargetsByRule",
            "events:RemoveTargets",
            "events:DeleteRule",
        ],
    ),
    (
        "check-scan",
        &[
            "ec2:DescribeImages",
            "inspector2:ListCoverage",
            "states:StartExecution",
        ],
    ),
];

/// The IAM action behind each API operation the code calls.
pub const OPERATION_ACTIONS: &[(&str, &str)] = &[
    ("DescribeImages", "ec2:DescribeImages"),
    ("DescribeInstances", "ec2:DescribeInstances"),
    ("RunInstances", "ec2:RunInstances"),
    ("TerminateInstances", "ec2:TerminateInstances"),
    ("CreateTags", "ec2:CreateTags"),
    ("DeleteTags", "ec2:DeleteTags"),
    ("EnableImageDeprecation", "ec2:EnableImageDeprecation"),
    ("DisableImage", "ec2:DisableImage"),
    ("StartExecution", "states:StartExecution"),
    ("Publish", "sns:Publish"),
    ("PutRule", "events:PutRule"),
    ("PutTargets", "events:PutTargets"),
    ("ListRules", "events:ListRules"),
    ("ListTargetsByRule", "events:ListTargetsByRule"),
    ("RemoveTargets", "events:RemoveTargets"),
    ("DeleteRule", "events:DeleteRule"),
    ("ListFindings", "inspector2:ListFindings"),
    ("ListCoverage", "inspector2:ListCoverage"),
    ("PutObject", "s3:PutObject"),
    ("CreateMultipartUpload", "s3:PutObject"),
    ("UploadPart", "s3:PutObject"),
    ("CompleteMultipartUpload", "s3:PutObject"),
    ("AbortMultipartUpload", "s3:AbortMultipartUpload"),
];

/// Actions no operation names but a call needs: tags and the role passed at
/// launch, tags on a new rule, the role passed to a rule target, and the KMS
/// key behind the topic and the report bucket.
pub const IMPLIED_ACTIONS: &[&str] = &[
    "ec2:CreateTags",
    "iam:PassRole",
    "events:TagResource",
    "kms:GenerateDataKey",
    "kms:Decrypt",
];

/// A function's actions.
pub fn actions_of(function: &str) -> Option<&'static [&'static str]> {
    FUNCTION_ACTIONS
        .iter()
        .find(|(name, _)| *name == function)
        .map(|(_, actions)| *actions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every operation named in an `Error::from_sdk` call in this crate: each
    /// AWS call site names its operation there.
    fn called_operations() -> BTreeSet<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut ops = BTreeSet::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for piece in text.split("from_sdk(").skip(1) {
                let piece = piece.trim_start();
                if let Some(rest) = piece.strip_prefix('"') {
                    let op = rest.split('"').next().unwrap();
                    if !op.is_empty() && op.chars().all(|c| c.is_ascii_alphanumeric()) {
                        ops.insert(op.to_string());
                    }
                }
            }
        }
        ops
    }

    #[test]
    fn every_aws_call_in_the_code_is_declared_for_some_function() {
        let ops = called_operations();
        assert!(
            ops.contains("RunInstances") && ops.contains("ListFindings"),
            "{ops:?}"
        );
        let declared: BTreeSet<&str> = FUNCTION_ACTIONS
            .iter()
            .flat_map(|(_, a)| a.iter().copied())
            .collect();
        for op in &ops {
            let action = OPERATION_ACTIONS
                .iter()
                .find(|(name, _)| name == op)
                .map(|(_, action)| *action)
                .unwrap_or_else(|| {
                    panic!("{op} is called but has no IAM action in OPERATION_ACTIONS")
                });
            assert!(
                declared.contains(action),
                "{op} needs {action}, which no function declares"
            );
        }
    }

    #[test]
    fn every_declared_action_is_needed_by_a_call() {
        let ops = called_operations();
        let needed: BTreeSet<&str> = OPERATION_ACTIONS
            .iter()
            .filter(|(op, _)| ops.contains(*op))
            .map(|(_, action)| *action)
            .chain(IMPLIED_ACTIONS.iter().copied())
            .collect();
        for (function, actions) in FUNCTION_ACTIONS {
            for action in *actions {
                assert!(
                    needed.contains(action),
                    "{function} declares {action}, which no call needs"
                );
            }
        }
        assert_eq!(
            actions_of("cleanup").map(|a| a.contains(&"ec2:TerminateInstances")),
            Some(true)
        );
        assert_eq!(actions_of("nope"), None);
    }
}

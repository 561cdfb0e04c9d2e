//! Every tag key amiscan writes: the scanner's own tags on what it creates,
//! and the result tags on the AMI under the configured prefix.

use std::str::FromStr;

use crate::model::{AmiId, ScanId};
use crate::naming::truncate;

/// EC2 tag limits.
pub const TAG_KEY_MAX: usize = 128;
pub const TAG_VALUE_MAX: usize = 256;

/// `true` on every instance, volume and rule amiscan creates. The keys of
/// the scanner's own tags are fixed, not under the tag prefix: the IAM
/// conditions that guard RunInstances and TerminateInstances must name them
/// literally, and CloudFormation cannot build a condition key.
pub const MANAGED_TAG: &str = "amiscan:managed";
pub const AMI_ID_TAG: &str = "amiscan:ami-id";
pub const SCAN_ID_TAG: &str = "amiscan:scan-id";
pub const MANAGED_VALUE: &str = "true";
/// On member.yaml's scanner security group: the subnet its scan instances
/// run in (the hub finds a member Region's subnet and group by it).
pub const SCANNER_SUBNET_TAG: &str = "amiscan:scanner-subnet";

/// The result tags on the AMI, each under the prefix.
pub const STATUS: &str = "status";
pub const STATUS_AT: &str = "status-at";
pub const SCAN_ID: &str = "scan-id";
pub const REASON: &str = "reason";
pub const LAST_SCAN: &str = "last-scan";
pub const VERDICT: &str = "verdict";
/// The verdict value of a `PASS` older than `MaxScanAgeDays` with no newer
/// result: it no longer stands.
pub const STALE: &str = "STALE";
pub const REPORT_URI: &str = "report-uri";
pub const FINDINGS: &str = "findings";
/// Active findings an exception in force accepts (not in the counts).
pub const EXCEPTED: &str = "excepted";
/// Findings an Inspector suppression rule hides.
pub const SUPPRESSED: &str = "suppressed";
/// `snapshot` or `instance`: how the last completed scan read the image.
pub const SCAN_MODE: &str = "scan-mode";

/// The prefix of every result tag, such as `amiscan:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPrefix(String);

impl FromStr for TagPrefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        // The longest key written is prefix + "report-uri".
        if s.is_empty() || s.len() > TAG_KEY_MAX - 16 {
            return Err(format!("expected 1 to {} characters", TAG_KEY_MAX - 16));
        }
        if s.to_ascii_lowercase().starts_with("aws:") {
            return Err("tag keys may not start with aws:".into());
        }
        if !s
            .chars()
            .all(|c| c.is_alphanumeric() || " +-=._:/@".contains(c))
        {
            return Err("only letters, digits, spaces and + - = . _ : / @ are allowed".into());
        }
        Ok(TagPrefix(s.to_string()))
    }
}

impl TagPrefix {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{}", self.0, name)
    }
}

/// The reason tag of a `PASS` turned `STALE`: when it was scanned, the
/// bound it outlived, and what follows (`why`), cut to EC2's limit.
pub fn stale_reason(last_scan: &str, max_age_days: u32, why: &str) -> String {
    tag_value(&format!(
        "the last PASS, of {last_scan}, is older than MaxScanAgeDays ({max_age_days} days){why}"
    ))
}

/// A tag value cut to EC2's limit on a character boundary.
pub fn tag_value(value: &str) -> String {
    truncate(value, TAG_VALUE_MAX)
}

/// The scanner's tags on what a scan creates (instance, volumes, rule): they
/// mark it as amiscan's for the IAM conditions, the cleanup guard and the
/// sweeper.
pub fn scanner_tags(ami_id: &AmiId, scan_id: &ScanId) -> Vec<(String, String)> {
    vec![
        (MANAGED_TAG.to_string(), MANAGED_VALUE.to_string()),
        (AMI_ID_TAG.to_string(), ami_id.to_string()),
        (SCAN_ID_TAG.to_string(), scan_id.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_prefixes_respect_ec2_rules() {
        let prefix: TagPrefix = "amiscan:".parse().unwrap();
        assert_eq!(prefix.key("status"), "amiscan:status");
        assert!("aws:x".parse::<TagPrefix>().is_err());
        assert!("AWS:x".parse::<TagPrefix>().is_err());
        assert!("".parse::<TagPrefix>().is_err());
        assert!("bad*prefix".parse::<TagPrefix>().is_err());
        assert!("x".repeat(113).parse::<TagPrefix>().is_err());
    }

    #[test]
    fn long_values_are_cut_to_the_tag_limit() {
        let cut = tag_value(&"é".repeat(200));
        assert!(cut.len() <= TAG_VALUE_MAX);
        assert!(cut.ends_with('…'));
    }
}

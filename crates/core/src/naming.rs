//! Names and identifiers derived from a scan: scan ids, execution names,
//! launch client tokens, rule names and tag keys. All pure.

use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::error::Error;

/// Every scanner rule's name starts with this, so the sweeper and the IAM
/// policy can tell amiscan's rules from everyone else's.
pub const RULE_NAME_PREFIX: &str = "amiscan-scan-";

/// The id of the target that every scan rule points at the report machine.
pub const RULE_TARGET_ID: &str = "report-and-cleanup";

/// EC2 tag limits.
pub const TAG_KEY_MAX: usize = 128;
pub const TAG_VALUE_MAX: usize = 256;

/// The prefix of every tag amiscan writes, such as `amiscan:`.
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

/// `true` on every instance, volume and rule amiscan creates. The keys of
/// the scanner's own tags are fixed, not under the tag prefix: the IAM
/// conditions that guard RunInstances and TerminateInstances must name them
/// literally, and CloudFormation cannot build a condition key.
pub const MANAGED_TAG: &str = "amiscan:managed";
pub const AMI_ID_TAG: &str = "amiscan:ami-id";
pub const SCAN_ID_TAG: &str = "amiscan:scan-id";
pub const MANAGED_VALUE: &str = "true";

/// A scan's id: `<ami id>-<yyyymmdd>`, with `-r<hhmmss>` for a forced re-scan.
/// It names the launch execution, seeds the launch ClientToken and keys the
/// reports, so a repeated trigger on the same day resolves to the same scan.
pub fn scan_id(ami_id: &str, at: DateTime<Utc>, force: bool) -> String {
    let day = at.format("%Y%m%d");
    if force {
        format!("{ami_id}-{day}-r{}", at.format("%H%M%S"))
    } else {
        format!("{ami_id}-{day}")
    }
}

/// The launch execution's name (Step Functions: at most 80 of `[A-Za-z0-9-_]`).
pub fn execution_name(scan_id: &str) -> String {
    scan_id.to_string()
}

/// The RunInstances ClientToken for one instance type of the preference list.
/// A retried launch of the same type returns the instance already launched;
/// the next type needs its own token, as EC2 rejects a token reused with other
/// parameters.
pub fn client_token(scan_id: &str, type_index: usize) -> String {
    format!("amiscan-{scan_id}-{type_index}")
}

/// The per-instance EventBridge rule name (at most 64 characters).
pub fn rule_name(instance_id: &str) -> String {
    format!("{RULE_NAME_PREFIX}{instance_id}")
}

/// The instance a scanner rule belongs to, from its name.
pub fn instance_of_rule(rule_name: &str) -> Option<&str> {
    rule_name
        .strip_prefix(RULE_NAME_PREFIX)
        .filter(|id| is_instance_id(id))
}

fn is_resource_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|hex| {
        (8..=17).contains(&hex.len()) && hex.chars().all(|c| c.is_ascii_hexdigit())
    })
}

pub fn is_ami_id(s: &str) -> bool {
    is_resource_id(s, "ami-")
}

pub fn is_instance_id(s: &str) -> bool {
    is_resource_id(s, "i-")
}

/// A scan id as [`scan_id`] makes it.
pub fn is_scan_id(s: &str) -> bool {
    let mut parts = s.rsplitn(3, '-');
    let (last, middle, rest) = (parts.next(), parts.next(), parts.next());
    let is_day = |d: &str| d.len() == 8 && d.chars().all(|c| c.is_ascii_digit());
    match (last, middle, rest) {
        (Some(time), Some(day), Some(ami)) if time.starts_with('r') && is_day(day) => {
            is_ami_id(ami) && time.len() == 7 && time[1..].chars().all(|c| c.is_ascii_digit())
        }
        _ => s
            .rsplit_once('-')
            .is_some_and(|(ami, day)| is_ami_id(ami) && is_day(day)),
    }
}

/// A tag value cut to EC2's limit on a character boundary.
pub fn tag_value(value: &str) -> String {
    truncate(value, TAG_VALUE_MAX)
}

/// Cuts a string to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

pub fn require_ami_id(field: &str, value: &str) -> Result<(), Error> {
    if is_ami_id(value) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{value:?} is not an AMI id (ami- and 8 to 17 hex digits)"),
        ))
    }
}

pub fn require_instance_id(field: &str, value: &str) -> Result<(), Error> {
    if is_instance_id(value) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{value:?} is not an instance id (i- and 8 to 17 hex digits)"),
        ))
    }
}

pub fn require_scan_id(field: &str, value: &str) -> Result<(), Error> {
    if is_scan_id(value) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{value:?} is not a scan id (<ami id>-<yyyymmdd>[-r<hhmmss>])"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, h, m, s).unwrap()
    }

    #[test]
    fn a_scan_id_is_the_ami_and_the_utc_day_so_a_repeat_trigger_lands_on_it() {
        let morning = scan_id("ami-0123456789abcdef0", at(8, 0, 0), false);
        let evening = scan_id("ami-0123456789abcdef0", at(23, 59, 59), false);
        assert_eq!(morning, "ami-0123456789abcdef0-20261123");
        assert_eq!(morning, evening);
        assert_ne!(
            morning,
            scan_id("ami-0123456789abcdef1", at(8, 0, 0), false)
        );
        let next_day = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
        assert_ne!(morning, scan_id("ami-0123456789abcdef0", next_day, false));
    }

    #[test]
    fn a_forced_rescan_gets_its_own_id_within_the_day() {
        let forced = scan_id("ami-0123456789abcdef0", at(9, 5, 7), true);
        assert_eq!(forced, "ami-0123456789abcdef0-20261123-r090507");
        assert!(is_scan_id(&forced));
        assert!(is_scan_id("ami-12345678-20261123"));
        for bad in [
            "ami-123-20261123",
            "ami-12345678",
            "ami-12345678-2026112",
            "x-20261123",
            "ami-12345678-20261123-r1",
        ] {
            assert!(!is_scan_id(bad), "{bad}");
        }
    }

    #[test]
    fn execution_names_and_tokens_fit_their_api_limits() {
        let id = scan_id("ami-0123456789abcdef0", at(9, 5, 7), true);
        let name = execution_name(&id);
        assert!(name.len() <= 80);
        assert!(name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        let token = client_token(&id, 3);
        assert!(token.len() <= 64 && token.is_ascii());
        assert_ne!(client_token(&id, 0), client_token(&id, 1));
        assert_eq!(client_token(&id, 0), client_token(&id, 0));
    }

    #[test]
    fn rule_names_carry_the_prefix_and_give_back_their_instance() {
        let name = rule_name("i-0123456789abcdef0");
        assert_eq!(name, "amiscan-scan-i-0123456789abcdef0");
        assert!(name.len() <= 64);
        assert_eq!(instance_of_rule(&name), Some("i-0123456789abcdef0"));
        assert_eq!(instance_of_rule("amiscan-scan-other"), None);
        assert_eq!(instance_of_rule("someone-elses-rule"), None);
    }

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
    fn long_values_are_cut_on_a_character_boundary() {
        let long = "é".repeat(200);
        let cut = tag_value(&long);
        assert!(cut.len() <= TAG_VALUE_MAX);
        assert!(cut.ends_with('…'));
        assert_eq!(tag_value("short"), "short");
    }
}

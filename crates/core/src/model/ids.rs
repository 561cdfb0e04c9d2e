//! Typed ids. Each validates when it is parsed or deserialised, so a malformed
//! id is refused once, at the edge, with the field's path, before any call.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Every scanner rule's name starts with this, so the sweeper and the IAM
/// policy can tell amiscan's rules from everyone else's.
pub const RULE_NAME_PREFIX: &str = "amiscan-scan-";
/// EventBridge's limit on a rule name.
pub const RULE_NAME_MAX: usize = 64;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                $check(&value)?;
                Ok($name(value))
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::try_from(s.to_string())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

fn is_resource_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|hex| {
        (8..=17).contains(&hex.len()) && hex.chars().all(|c| c.is_ascii_hexdigit())
    })
}

fn check_ami(s: &str) -> Result<(), String> {
    if is_resource_id(s, "ami-") {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not an AMI id (ami- and 8 to 17 hex digits)"
        ))
    }
}

fn check_instance(s: &str) -> Result<(), String> {
    if is_resource_id(s, "i-") {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not an instance id (i- and 8 to 17 hex digits)"
        ))
    }
}

/// The AMI part of a scan id as [`ScanId::new`] makes it, if it is one.
fn ami_of_scan(s: &str) -> Option<&str> {
    let is_day = |d: &str| d.len() == 8 && d.chars().all(|c| c.is_ascii_digit());
    let mut parts = s.rsplitn(3, '-');
    let (last, middle, rest) = (parts.next(), parts.next(), parts.next());
    let ami = match (last, middle, rest) {
        (Some(time), Some(day), Some(ami)) if time.starts_with('r') && is_day(day) => {
            let digits = &time[1..];
            (digits.len() == 6 && digits.chars().all(|c| c.is_ascii_digit())).then_some(ami)?
        }
        _ => {
            let (ami, day) = s.rsplit_once('-')?;
            is_day(day).then_some(ami)?
        }
    };
    is_resource_id(ami, "ami-").then_some(ami)
}

fn check_scan(s: &str) -> Result<(), String> {
    match ami_of_scan(s) {
        Some(_) => Ok(()),
        None => Err(format!(
            "{s:?} is not a scan id (<ami id>-<yyyymmdd>[-r<hhmmss>])"
        )),
    }
}

fn check_rule(s: &str) -> Result<(), String> {
    if s.starts_with(RULE_NAME_PREFIX)
        && s.len() > RULE_NAME_PREFIX.len()
        && s.len() <= RULE_NAME_MAX
    {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not an amiscan rule ({RULE_NAME_PREFIX}…)"
        ))
    }
}

string_id!(
    /// `ami-` and 8 to 17 hex digits.
    AmiId,
    check_ami
);
string_id!(
    /// `i-` and 8 to 17 hex digits.
    InstanceId,
    check_instance
);
string_id!(
    /// `<ami id>-<yyyymmdd>`, with `-r<hhmmss>` for a forced re-scan.
    ScanId,
    check_scan
);
string_id!(
    /// An amiscan rule: the prefix and, for instance scans, the instance id.
    RuleName,
    check_rule
);

fn check_account(s: &str) -> Result<(), String> {
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("{s:?} is not an AWS account id (twelve digits)"))
    }
}

/// A Region's code as AWS writes it: `us-east-1`, `ap-southeast-7`,
/// `us-gov-west-1`, `eu-isoe-west-1`.
fn check_region(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split('-').collect();
    let ok = s.len() <= 32
        && parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok();
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not a Region code such as us-east-1"))
    }
}

string_id!(
    /// An AWS account id: twelve digits.
    AccountId,
    check_account
);
string_id!(
    /// A Region code, such as `eu-west-1`.
    RegionName,
    check_region
);

impl RegionName {
    /// The partition of the Region, for ARNs.
    pub fn partition(&self) -> &'static str {
        if self.0.starts_with("cn-") {
            "aws-cn"
        } else if self.0.starts_with("us-gov-") {
            "aws-us-gov"
        } else if self.0.starts_with("us-iso-") {
            "aws-iso"
        } else if self.0.starts_with("us-isob-") {
            "aws-iso-b"
        } else if self.0.starts_with("eu-isoe-") {
            "aws-iso-e"
        } else if self.0.starts_with("us-isof-") {
            "aws-iso-f"
        } else {
            "aws"
        }
    }
}

/// Where an AMI lives and a scan acts: its account and Region.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Place {
    pub account_id: AccountId,
    pub region: RegionName,
}

impl Place {
    /// Why an AMI here cannot be scanned on an instance (member.yaml gave
    /// this account and Region no scanner subnet).
    pub fn no_subnet(&self) -> String {
        format!("no subnet for instance scans in {self}")
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.account_id, self.region)
    }
}

impl ScanId {
    /// A scan's id: the AMI and the UTC day, so a repeated trigger on the
    /// same day resolves to the same scan; a forced re-scan adds the time.
    pub fn new(ami_id: &AmiId, at: DateTime<Utc>, force: bool) -> ScanId {
        let day = at.format("%Y%m%d");
        ScanId(if force {
            format!("{ami_id}-{day}-r{}", at.format("%H%M%S"))
        } else {
            format!("{ami_id}-{day}")
        })
    }

    /// The AMI this scan is of.
    pub fn ami_id(&self) -> &str {
        ami_of_scan(&self.0).unwrap_or_default()
    }
}

impl RuleName {
    /// The per-instance rule's name.
    pub fn for_instance(instance_id: &InstanceId) -> RuleName {
        RuleName(format!("{RULE_NAME_PREFIX}{instance_id}"))
    }

    /// The instance a rule belongs to, when its name says so.
    pub fn instance(&self) -> Option<InstanceId> {
        self.0.strip_prefix(RULE_NAME_PREFIX)?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, h, m, s).unwrap()
    }

    fn ami(s: &str) -> AmiId {
        s.parse().unwrap()
    }

    #[test]
    fn a_scan_id_is_the_ami_and_the_utc_day_so_a_repeat_trigger_lands_on_it() {
        let id = ami("ami-0123456789abcdef0");
        let morning = ScanId::new(&id, at(8, 0, 0), false);
        assert_eq!(morning, "ami-0123456789abcdef0-20261123");
        assert_eq!(morning, ScanId::new(&id, at(23, 59, 59), false));
        assert_ne!(
            morning,
            ScanId::new(&ami("ami-0123456789abcdef1"), at(8, 0, 0), false)
        );
        let next_day = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
        assert_ne!(morning, ScanId::new(&id, next_day, false));
        assert_eq!(morning.ami_id(), "ami-0123456789abcdef0");
    }

    #[test]
    fn a_forced_rescan_gets_its_own_id_within_the_day() {
        let forced = ScanId::new(&ami("ami-0123456789abcdef0"), at(9, 5, 7), true);
        assert_eq!(forced, "ami-0123456789abcdef0-20261123-r090507");
        assert_eq!(forced.ami_id(), "ami-0123456789abcdef0");
        assert_eq!(forced.as_str().parse::<ScanId>(), Ok(forced.clone()));
        assert!("ami-12345678-20261123".parse::<ScanId>().is_ok());
        for bad in [
            "ami-123-20261123",
            "ami-12345678",
            "ami-12345678-2026112",
            "x-20261123",
            "ami-12345678-20261123-r1",
        ] {
            assert!(bad.parse::<ScanId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_refuse_what_is_not_one_when_deserialised() {
        let err = serde_json::from_value::<InstanceId>(json!("instance-1")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"instance-1\" is not an instance id (i- and 8 to 17 hex digits)"
        );
        assert!(serde_json::from_value::<AmiId>(json!("ami-xyz")).is_err());
        assert!(serde_json::from_value::<AmiId>(json!(5)).is_err());
        let ok: AmiId = serde_json::from_value(json!("ami-12345678")).unwrap();
        assert_eq!(serde_json::to_value(&ok).unwrap(), json!("ami-12345678"));
    }

    #[test]
    fn rule_names_carry_the_prefix_and_give_back_their_instance() {
        let instance: InstanceId = "i-0123456789abcdef0".parse().unwrap();
        let name = RuleName::for_instance(&instance);
        assert_eq!(name, "amiscan-scan-i-0123456789abcdef0");
        assert!(name.as_str().len() <= RULE_NAME_MAX);
        assert_eq!(name.instance(), Some(instance));
        let other: RuleName = "amiscan-scan-other".parse().unwrap();
        assert_eq!(other.instance(), None);
        assert!("someone-elses-rule".parse::<RuleName>().is_err());
        assert!(format!("amiscan-scan-{}", "x".repeat(60))
            .parse::<RuleName>()
            .is_err());
    }
}

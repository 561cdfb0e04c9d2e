//! Accepted risks: `config/exceptions.json` in the report bucket, validated
//! strictly, and which finding an exception covers. All pure.
//!
//! ```json
//! {"exceptions": [{"vulnerability_id": "CVE-2024-6387", "ami": "golden-*",
//!   "package": "openssh-server", "reason": "patched in the next build",
//!   "expires": "2027-01-31", "owner": "platform@example.com"}]}
//! ```
//!
//! An exception covers a finding of its vulnerability (and package, when
//! given) on the AMIs it names (an AMI id, or a glob over the AMI's name;
//! every AMI when absent), in the `account` and `region` it names (every
//! one when absent), through the end of its `expires` day in UTC.

use std::collections::HashMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::{field, parse_event, AccountId, AmiId, Input, RegionName};
use crate::error::Error;

/// Where the file lives in the report bucket.
pub const EXCEPTIONS_KEY: &str = "config/exceptions.json";
/// How far ahead an exception may expire.
pub const MAX_DAYS_AHEAD: u64 = 365;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    exceptions: Vec<Entry>,
}

impl Input for File {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    vulnerability_id: String,
    #[serde(default)]
    ami: Option<String>,
    #[serde(default)]
    package: Option<String>,
    /// Only the AMIs of this account (hub with member accounts).
    #[serde(default)]
    account: Option<String>,
    /// Only the AMIs of this Region.
    #[serde(default)]
    region: Option<String>,
    reason: String,
    expires: String,
    /// Who accepted the risk: required, for the audit trail.
    owner: String,
}

/// Which AMIs an exception names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmiMatch {
    Every,
    Id(AmiId),
    /// A glob over the AMI's name: `*` any run, `?` one character.
    Name(String),
}

/// One accepted risk, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exception {
    pub vulnerability_id: String,
    pub ami: AmiMatch,
    pub package: Option<String>,
    pub account: Option<AccountId>,
    pub region: Option<RegionName>,
    pub reason: String,
    pub expires: NaiveDate,
    pub owner: String,
}

/// A file that is not valid, by field: then no exception applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidFile {
    pub file: String,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for InvalidFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.field, self.message)
    }
}

/// Parses and validates the file's bytes, as of `today` (UTC). `file` names
/// it in errors (`s3://bucket/config/exceptions.json`).
pub fn parse(file: &str, bytes: &[u8], today: NaiveDate) -> Result<Vec<Exception>, InvalidFile> {
    let invalid = |field: String, message: String| InvalidFile {
        file: file.to_string(),
        field,
        message,
    };
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid("(file)".into(), format!("is not JSON: {e}")))?;
    // The events' parser names the field; here the whole is the file.
    let parsed: File = parse_event(value).map_err(|e| match e {
        Error::InvalidInput { field, reason } => invalid(
            if field == "(event)" {
                "(file)".into()
            } else {
                field
            },
            if reason.starts_with("missing field") {
                "is required".into()
            } else {
                reason
            },
        ),
        other => invalid("(file)".into(), other.to_string()),
    })?;
    let latest = today
        .checked_add_days(Days::new(MAX_DAYS_AHEAD))
        .unwrap_or(today);
    let mut out = Vec::with_capacity(parsed.exceptions.len());
    for (i, entry) in parsed.exceptions.into_iter().enumerate() {
        let at = |name: &str| field(&format!("exceptions[{i}]"), name);
        let text = |name: &str, value: &str| -> Result<String, InvalidFile> {
            let value = value.trim();
            if value.is_empty() {
                return Err(invalid(at(name), "is empty".into()));
            }
            Ok(value.to_string())
        };
        let vulnerability_id = text("vulnerability_id", &entry.vulnerability_id)?;
        let reason = text("reason", &entry.reason)?;
        let package = entry
            .package
            .as_deref()
            .map(|p| text("package", p))
            .transpose()?;
        let owner = text("owner", &entry.owner)?;
        let account = entry
            .account
            .as_deref()
            .map(|a| {
                text("account", a)?
                    .parse()
                    .map_err(|e: String| invalid(at("account"), e))
            })
            .transpose()?;
        let region = entry
            .region
            .as_deref()
            .map(|r| {
                text("region", r)?
                    .parse()
                    .map_err(|e: String| invalid(at("region"), e))
            })
            .transpose()?;
        let ami = match entry.ami.as_deref().map(str::trim) {
            None => AmiMatch::Every,
            Some("") => return Err(invalid(at("ami"), "is empty; omit it for every AMI".into())),
            Some(value) if value.starts_with("ami-") && !value.contains(['*', '?']) => {
                AmiMatch::Id(value.parse().map_err(|e: String| invalid(at("ami"), e))?)
            }
            Some(glob) => AmiMatch::Name(glob.to_string()),
        };
        let expires =
            NaiveDate::parse_from_str(entry.expires.trim(), "%Y-%m-%d").map_err(|_| {
                invalid(
                    at("expires"),
                    format!("{:?} is not a date (YYYY-MM-DD)", entry.expires),
                )
            })?;
        if expires > latest {
            return Err(invalid(
                at("expires"),
                format!("{expires} is more than {MAX_DAYS_AHEAD} days ahead (at most {latest})"),
            ));
        }
        out.push(Exception {
            vulnerability_id,
            ami,
            package,
            account,
            region,
            reason,
            expires,
            owner,
        });
    }
    Ok(out)
}

/// The exceptions in the bucket's file, from its bytes (`None`: there is
/// no file, so no exceptions), or why the file is invalid.
pub fn read(
    bucket: &str,
    bytes: Option<&[u8]>,
    today: NaiveDate,
) -> Result<Vec<Exception>, InvalidFile> {
    match bytes {
        None => Ok(Vec::new()),
        Some(bytes) => parse(&format!("s3://{bucket}/{EXCEPTIONS_KEY}"), bytes, today),
    }
}

/// `*` matches any run of characters, `?` one; everything else itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl Exception {
    /// Whether it is in force on `at`'s UTC day (its `expires` day included).
    pub fn in_force(&self, at: DateTime<Utc>) -> bool {
        at.date_naive() <= self.expires
    }

    /// Whether it names this AMI: by id, by a glob over its name, or all.
    pub fn names_ami(&self, ami_id: &str, ami_name: Option<&str>) -> bool {
        match &self.ami {
            AmiMatch::Every => true,
            AmiMatch::Id(id) => id.as_str() == ami_id,
            AmiMatch::Name(glob) => ami_name.is_some_and(|name| glob_matches(glob, name)),
        }
    }

    /// Whether it holds in this account and Region (`None`: not known,
    /// which only an exception that names none matches).
    pub fn names_place(&self, account: Option<&str>, region: Option<&str>) -> bool {
        let holds = |scope: Option<&str>, at: Option<&str>| scope.is_none_or(|s| at == Some(s));
        holds(self.account.as_deref(), account) && holds(self.region.as_deref(), region)
    }

    /// Whether it covers a finding in `package` (any package when it names
    /// none). A finding in several packages lists them as "a, b".
    fn covers_package(&self, package: Option<&str>) -> bool {
        self.package
            .as_ref()
            .is_none_or(|wanted| package.is_some_and(|p| p.split(", ").any(|name| name == wanted)))
    }
}

/// The exceptions that apply to one AMI's scan: those naming it, in force
/// or not (an expired one is reported, not applied).
/// Indexed by vulnerability id: a finding is checked against its own.
#[derive(Debug, Clone, Default)]
pub struct ForAmi {
    by_vulnerability: HashMap<String, Vec<Exception>>,
}

impl ForAmi {
    /// The exceptions of one AMI: `place` is its account and Region.
    pub fn new(
        all: &[Exception],
        ami_id: &str,
        ami_name: Option<&str>,
        place: (Option<&str>, Option<&str>),
    ) -> ForAmi {
        let mut by_vulnerability: HashMap<String, Vec<Exception>> = HashMap::new();
        for e in all
            .iter()
            .filter(|e| e.names_ami(ami_id, ami_name) && e.names_place(place.0, place.1))
        {
            by_vulnerability
                .entry(e.vulnerability_id.clone())
                .or_default()
                .push(e.clone());
        }
        ForAmi { by_vulnerability }
    }

    pub fn is_empty(&self) -> bool {
        self.by_vulnerability.is_empty()
    }

    /// The exception in force at `at` that covers a finding of this AMI
    /// (the one `new` was given), if any.
    pub fn covering(
        &self,
        vulnerability_id: Option<&str>,
        package: Option<&str>,
        at: DateTime<Utc>,
    ) -> Option<&Exception> {
        self.by_vulnerability
            .get(vulnerability_id?)?
            .iter()
            .find(|e| e.in_force(at) && e.covers_package(package))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    const FILE: &str = "s3://amiscan-reports/config/exceptions.json";

    fn one(entry: serde_json::Value) -> Result<Vec<Exception>, InvalidFile> {
        let body = serde_json::json!({ "exceptions": [entry] }).to_string();
        parse(FILE, body.as_bytes(), day("2026-12-01"))
    }

    #[test]
    fn globs_match_names_with_stars_and_question_marks() {
        assert!(glob_matches("golden-*", "golden-ubuntu-22.04"));
        assert!(glob_matches("*-2026-??-*", "al2023-2026-11-base"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a*b*c", "aXXbYYc"));
        assert!(!glob_matches("golden-*", "legacy-golden-1"));
        assert!(!glob_matches("a?c", "abbc"));
        assert!(glob_matches("exact", "exact") && !glob_matches("exact", "exactly"));
    }

    /// Whether the exception covers the finding on its last day in force,
    /// by the path export-report takes (the AMI's exceptions, then the
    /// finding's vulnerability and package).
    fn covers(
        e: &Exception,
        vulnerability_id: Option<&str>,
        package: Option<&str>,
        ami_id: &str,
        ami_name: Option<&str>,
    ) -> bool {
        let all = [e.clone()];
        let last_day = e.expires.and_hms_opt(12, 0, 0).unwrap().and_utc();
        ForAmi::new(&all, ami_id, ami_name, (None, None))
            .covering(vulnerability_id, package, last_day)
            .is_some()
    }

    #[test]
    fn an_exception_covers_its_vulnerability_package_and_amis() {
        let by_name = one(
            serde_json::json!({"vulnerability_id": "CVE-1", "ami": "golden-*",
            "package": "openssl", "reason": "r", "owner": "o", "expires": "2026-12-31"}),
        )
        .unwrap()
        .remove(0);
        assert!(covers(
            &by_name,
            Some("CVE-1"),
            Some("openssl"),
            "ami-12345678",
            Some("golden-a")
        ));
        assert!(!covers(
            &by_name,
            Some("CVE-1"),
            Some("zlib"),
            "ami-12345678",
            Some("golden-a")
        ));
        assert!(!covers(
            &by_name,
            Some("CVE-2"),
            Some("openssl"),
            "ami-12345678",
            Some("golden-a")
        ));
        assert!(!covers(
            &by_name,
            Some("CVE-1"),
            Some("openssl"),
            "ami-12345678",
            None
        ));
        let by_id = one(
            serde_json::json!({"vulnerability_id": "CVE-1", "ami": "ami-12345678",
            "reason": "r", "owner": "o", "expires": "2026-12-31"}),
        )
        .unwrap()
        .remove(0);
        assert!(covers(
            &by_id,
            Some("CVE-1"),
            Some("anything"),
            "ami-12345678",
            None
        ));
        assert!(!covers(&by_id, Some("CVE-1"), None, "ami-87654321", None));
        let everywhere = one(
            serde_json::json!({"vulnerability_id": "CVE-1", "reason": "r", "owner": "o",
            "expires": "2026-12-31"}),
        )
        .unwrap()
        .remove(0);
        assert!(covers(
            &everywhere,
            Some("CVE-1"),
            None,
            "ami-87654321",
            Some("x")
        ));
    }

    #[test]
    fn an_exception_may_hold_in_one_account_and_region_only() {
        let scoped = one(
            serde_json::json!({"vulnerability_id": "CVE-1", "reason": "r", "owner": "o",
            "expires": "2026-12-31", "account": "111111111111", "region": "eu-west-1"}),
        )
        .unwrap();
        let at = |account, region| {
            !ForAmi::new(&scoped, "ami-12345678", None, (account, region)).is_empty()
        };
        assert!(at(Some("111111111111"), Some("eu-west-1")));
        assert!(
            !at(Some("222222222222"), Some("eu-west-1")),
            "another account"
        );
        assert!(
            !at(Some("111111111111"), Some("us-east-1")),
            "another Region"
        );
        assert!(!at(None, None), "a scan that says neither");
        let account_only = one(
            serde_json::json!({"vulnerability_id": "CVE-1", "reason": "r",
            "owner": "o", "expires": "2026-12-31", "account": "111111111111"}),
        )
        .unwrap();
        assert!(account_only[0].names_place(Some("111111111111"), Some("ap-south-2")));
        for (key, value) in [("account", "1111"), ("region", "Mars"), ("account", " ")] {
            let mut entry = serde_json::json!({"vulnerability_id": "CVE-1", "reason": "r",
                "owner": "o", "expires": "2026-12-31"});
            entry[key] = serde_json::json!(value);
            let err = one(entry).unwrap_err();
            assert_eq!(err.field, format!("exceptions[0].{key}"), "{err}");
        }
    }

    #[test]
    fn an_exception_is_in_force_through_its_expiry_day_in_utc() {
        let e = one(
            serde_json::json!({"vulnerability_id": "CVE-1", "reason": "r", "owner": "o",
            "expires": "2026-12-31"}),
        )
        .unwrap()
        .remove(0);
        assert!(e.in_force(Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap()));
        assert!(!e.in_force(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()));
        let all = vec![e];
        let for_ami = ForAmi::new(&all, "ami-12345678", None, (None, None));
        let elsewhere = one(
            serde_json::json!({"vulnerability_id": "CVE-1", "reason": "r", "owner": "o",
            "expires": "2026-12-31", "ami": "ami-87654321"}),
        )
        .unwrap();
        assert!(ForAmi::new(&elsewhere, "ami-12345678", None, (None, None)).is_empty());
        let at = |d, h| Utc.with_ymd_and_hms(2026, 12, d, h, 0, 0).unwrap();
        assert!(for_ami.covering(Some("CVE-1"), None, at(31, 23)).is_some());
        assert!(for_ami.covering(Some("CVE-1"), None, at(1, 0)).is_some());
        assert!(for_ami
            .covering(
                Some("CVE-1"),
                None,
                Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
            )
            .is_none());
    }

    #[test]
    fn an_invalid_file_is_named_by_field() {
        let field = |v: serde_json::Value| one(v).unwrap_err().field;
        assert_eq!(
            field(serde_json::json!({"reason": "r", "owner": "o", "expires": "2026-12-31"})),
            "exceptions[0].vulnerability_id"
        );
        assert_eq!(
            field(serde_json::json!({"vulnerability_id": "CVE-1", "expires": "2026-12-31"})),
            "exceptions[0].reason"
        );
        assert_eq!(
            field(serde_json::json!({"vulnerability_id": "CVE-1", "reason": "r", "owner": "o"})),
            "exceptions[0].expires"
        );
        assert_eq!(
            field(
                serde_json::json!({"vulnerability_id": "CVE-1", "reason": "r", "owner": "o", "expires": "31/12/2026"})
            ),
            "exceptions[0].expires"
        );
        assert_eq!(
            field(
                serde_json::json!({"vulnerability_id": "CVE-1", "reason": "r", "expires": "2026-12-31"})
            ),
            "exceptions[0].owner",
            "who accepted the risk is required"
        );
        assert_eq!(
            field(
                serde_json::json!({"vulnerability_id": "CVE-1", "reason": "r", "expires": "2026-12-31", "owner": " "})
            ),
            "exceptions[0].owner"
        );
        // 365 days ahead is the latest allowed.
        assert!(one(
            serde_json::json!({"vulnerability_id": "CVE-1", "reason": "r", "owner": "o", "expires": "2027-12-01"})
        )
        .is_ok());
        let far = one(serde_json::json!({"vulnerability_id": "CVE-1", "reason": "r", "owner": "o", "expires": "2027-12-02"}))
            .unwrap_err();
        assert_eq!(far.field, "exceptions[0].expires");
        assert!(far.to_string().starts_with(FILE), "{far}");
        assert_eq!(
            field(
                serde_json::json!({"vulnerability_id": "CVE-1", "reason": "r", "owner": "o", "expires": "2026-12-31", "ami": "ami-xyz"})
            ),
            "exceptions[0].ami"
        );
        assert_eq!(
            field(
                serde_json::json!({"vulnerability_id": " ", "reason": "r", "owner": "o", "expires": "2026-12-31"})
            ),
            "exceptions[0].vulnerability_id"
        );
        assert_eq!(
            field(
                serde_json::json!({"vulnerability_id": "CVE-1", "reason": "r", "owner": "o", "expires": "2026-12-31", "until": "x"})
            ),
            "exceptions[0].until"
        );
        assert_eq!(
            parse(FILE, b"[]", day("2026-12-01")).unwrap_err().field,
            "(file)"
        );
        assert_eq!(
            parse(FILE, b"{", day("2026-12-01")).unwrap_err().field,
            "(file)"
        );
        assert_eq!(
            parse(FILE, br#"{"exceptions": []}"#, day("2026-12-01")),
            Ok(vec![])
        );
    }
}

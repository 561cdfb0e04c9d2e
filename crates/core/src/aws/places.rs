//! The SDK configuration for an account and Region: the functions' own
//! credentials at home (their account and Region), a session of the member
//! role (member.yaml) anywhere else, their own account's other Regions
//! included. A session is kept for the warm environment, per account and
//! session name, until shortly before it expires.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_config::Region;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;

use super::{sts, SdkConfig};
use crate::error::{Error, Result};
use crate::model::{AccountId, Place, RegionName, ScanContext};
use crate::settings::Home;

/// A kept session is renewed when less than this is left: a Lambda runs at
/// most 15 minutes, so a configuration handed out now outlives its work.
const RENEW_BEFORE: Duration = Duration::from_secs(20 * 60);

/// RoleSessionName: 2 to 64 of `[\w+=,.@-]`.
pub fn session_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    while out.len() < 2 {
        out.push('-');
    }
    out
}

pub struct Places {
    base: SdkConfig,
    /// None when the SDK has no (valid) Region: every call then fails.
    home: Option<Place>,
    role_name: String,
    sts: sts::Client,
    sessions: Mutex<HashMap<(AccountId, String), Credentials>>,
    assumptions: AtomicU32,
}

impl Places {
    /// `base` is the functions' own configuration (its Region is home's).
    pub fn new(base: &SdkConfig, home: &Home) -> Places {
        let region = base
            .region()
            .and_then(|r| r.as_ref().parse::<RegionName>().ok());
        Places {
            base: base.clone(),
            home: region.map(|region| Place {
                account_id: home.account_id.clone(),
                region,
            }),
            role_name: home.member_role.0.clone(),
            sts: sts::Client::new(base),
            sessions: Mutex::new(HashMap::new()),
            assumptions: AtomicU32::new(0),
        }
    }

    /// The functions' own account and Region.
    pub fn home(&self) -> Result<&Place> {
        self.home
            .as_ref()
            .ok_or_else(|| Error::Configuration("AWS_REGION is not set to a Region code".into()))
    }

    /// The member role's ARN in an account.
    pub fn role_arn(&self, account: &AccountId) -> Result<String> {
        Ok(format!(
            "arn:{}:iam::{account}:role/{}",
            self.home()?.region.partition(),
            self.role_name
        ))
    }

    /// The configuration where a scan acts (its account and Region, each
    /// absent one home's), the session named after the scan.
    pub async fn for_scan(&self, scan: &ScanContext) -> Result<SdkConfig> {
        let place = scan.place(self.home()?);
        self.config(&place, scan.scan_id.as_str()).await
    }

    /// How many sessions this environment has started (AssumeRole calls).
    pub fn assumptions(&self) -> u32 {
        self.assumptions.load(Ordering::Relaxed)
    }

    /// The configuration for `place`. Away from home it assumes the member
    /// role as `session` (a kept session of that name is reused);
    /// a refusal is the `AssumeRole` error (`AccessDenied`: the account has
    /// no member role that trusts this function's role).
    pub async fn config(&self, place: &Place, session: &str) -> Result<SdkConfig> {
        let home = self.home()?;
        let mut builder = self.base.to_builder();
        if place.region != home.region {
            builder.set_region(Some(Region::new(place.region.to_string())));
        }
        // Away from home, even in the functions' own account, the member
        // role acts: their own role's statements name home's Region only.
        if place != home {
            let credentials = self.session(&place.account_id, session).await?;
            builder.set_credentials_provider(Some(SharedCredentialsProvider::new(credentials)));
        }
        Ok(builder.build())
    }

    async fn session(&self, account: &AccountId, session: &str) -> Result<Credentials> {
        let key = (account.clone(), session_name(session));
        let fresh = |c: &Credentials| {
            c.expiry().is_none_or(|at| {
                at.duration_since(SystemTime::now())
                    .is_ok_and(|left| left > RENEW_BEFORE)
            })
        };
        if let Some(kept) = self.kept(&key).filter(fresh) {
            return Ok(kept);
        }
        self.assumptions.fetch_add(1, Ordering::Relaxed);
        let credentials = sts::assume_role(&self.sts, &self.role_arn(account)?, &key.1).await?;
        self.sessions
            .lock()
            .map_err(|_| Error::Internal("the session cache is poisoned".into()))?
            .insert(key, credentials.clone());
        Ok(credentials)
    }

    fn kept(&self, key: &(AccountId, String)) -> Option<Credentials> {
        self.sessions.lock().ok()?.get(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_keep_to_what_sts_accepts() {
        assert_eq!(session_name("ami-0123-20261206"), "ami-0123-20261206");
        assert_eq!(session_name("a b/c"), "a-b-c");
        assert_eq!(session_name("x"), "x-");
        assert_eq!(session_name(&"a".repeat(80)).len(), 64);
    }
}

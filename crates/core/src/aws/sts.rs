//! STS: a session of a member account's role, for the hub's functions.

pub use aws_sdk_sts::{config, error, operation, types, Client};

use std::time::SystemTime;

use aws_credential_types::Credentials;

use crate::error::{Error, Result};

/// A session of `role_arn` named `session_name` (CloudTrail shows the name
/// in the member account), valid until the credentials' expiry.
pub async fn assume_role(
    client: &Client,
    role_arn: &str,
    session_name: &str,
) -> Result<Credentials> {
    let out = client
        .assume_role()
        .role_arn(role_arn)
        .role_session_name(session_name)
        .send()
        .await
        .map_err(|e| Error::from_sdk("AssumeRole", e))?;
    let c = out.credentials.ok_or_else(|| Error::Aws {
        operation: "AssumeRole",
        code: "NoCredentials".into(),
        message: format!("STS answered no credentials for {role_arn}"),
        transient: true,
    })?;
    let expiry = SystemTime::try_from(c.expiration).ok();
    Ok(Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.session_token),
        expiry,
        "amiscan-member-role",
    ))
}

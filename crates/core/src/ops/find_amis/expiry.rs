//! Accepted risks that expire soon, for the run summary.

#[allow(unused_imports)]
use super::*;

/// Exceptions expiring within this many days are listed in the run summary.
pub const EXPIRING_WITHIN_DAYS: i64 = 14;

/// An accepted risk that expires soon: renew it, or fix what it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiring {
    pub vulnerability_id: String,
    /// The AMI id or name glob it names; `null`: every AMI.
    pub ami: Option<String>,
    pub package: Option<String>,
    pub expires: String,
    /// Days from today (UTC) to its last day in force.
    pub days_left: i64,
    pub reason: String,
    pub owner: String,
}

/// The exceptions in force that expire within [`EXPIRING_WITHIN_DAYS`],
/// soonest first, from a parsed file.
pub fn expiring(list: &[exceptions::Exception], now: DateTime<Utc>) -> Vec<Expiring> {
    let today = now.date_naive();
    let mut out: Vec<Expiring> = list
        .iter()
        .map(|e| (e, (e.expires - today).num_days()))
        .filter(|(_, days)| (0..=EXPIRING_WITHIN_DAYS).contains(days))
        .map(|(e, days_left)| Expiring {
            vulnerability_id: e.vulnerability_id.clone(),
            ami: match &e.ami {
                AmiMatch::Every => None,
                AmiMatch::Id(id) => Some(id.to_string()),
                AmiMatch::Name(glob) => Some(glob.clone()),
            },
            package: e.package.clone(),
            expires: e.expires.to_string(),
            days_left,
            reason: e.reason.clone(),
            owner: e.owner.clone(),
        })
        .collect();
    out.sort_by(|a, b| {
        a.expires
            .cmp(&b.expires)
            .then_with(|| a.vulnerability_id.cmp(&b.vulnerability_id))
    });
    out
}

/// What expires soon in the bucket's exceptions file, or why it is invalid.
pub(crate) async fn exceptions_report(
    s3_client: &s3::Client,
    settings: &FindSettings,
    now: DateTime<Utc>,
) -> Result<(Vec<Expiring>, Option<String>)> {
    let bucket = settings.report_bucket.0.as_str();
    let bytes = s3::get_bytes(s3_client, bucket, EXCEPTIONS_KEY).await?;
    Ok(
        match exceptions::read(bucket, bytes.as_deref(), now.date_naive()) {
            Ok(list) => (expiring(&list, now), None),
            Err(invalid) => (Vec::new(), Some(invalid.to_string())),
        },
    )
}

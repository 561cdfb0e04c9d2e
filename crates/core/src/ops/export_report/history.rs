//! What the export reads before it starts: the accepted risks in force and
//! the AMI's previous completed scan.

#[allow(unused_imports)]
use super::*;

/// Where the AMI's last completed scan's summary is: the previous scan of
/// the next one. `previous` is the one before, for a retried export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latest {
    pub scan_id: String,
    pub summary_key: String,
    #[serde(default)]
    pub previous: Option<Box<Latest>>,
}

/// The accepted risks in force for this scan, and why none applies when
/// the file is invalid (a missing file is no exceptions).
pub async fn load_exceptions(
    s3_client: &s3::Client,
    bucket: &str,
    at: DateTime<Utc>,
) -> Result<(Vec<exceptions::Exception>, Option<String>)> {
    let bytes = s3::get_bytes(s3_client, bucket, EXCEPTIONS_KEY).await?;
    Ok(
        match exceptions::read(bucket, bytes.as_deref(), at.date_naive()) {
            Ok(list) => (list, None),
            Err(invalid) => {
                warn!(error = %invalid, "exceptions file invalid; no exception applies");
                (Vec::new(), Some(invalid.to_string()))
            }
        },
    )
}

/// The AMI's previous completed scan (whatever its mode): its pointer, and
/// its summary record with every open vulnerability. A retried export of
/// the scan the pointer already names compares with the one before.
pub async fn load_previous(
    s3_client: &s3::Client,
    bucket: &str,
    scan: &ScanContext,
) -> Result<(Option<Latest>, Option<ScanSummary>)> {
    let key = report::latest_key(scan.ami_id.as_str());
    let Some(bytes) = s3::get_bytes(s3_client, bucket, &key).await? else {
        return Ok((None, None));
    };
    let latest: Latest = match serde_json::from_slice(&bytes) {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, key, "the previous scan's pointer is unreadable; treated as a first scan");
            return Ok((None, None));
        }
    };
    let previous = if latest.scan_id == scan.scan_id.as_str() {
        latest.previous.map(|b| *b)
    } else {
        Some(latest)
    };
    let Some(previous) = previous else {
        return Ok((None, None));
    };
    let summary = match s3::get_bytes(s3_client, bucket, &previous.summary_key).await? {
        Some(bytes) => serde_json::from_slice::<ScanSummary>(&bytes)
            .map_err(|e| warn!(error = %e, "the previous summary is unreadable"))
            .ok(),
        None => None,
    };
    // An expired or unreadable record: this scan is compared with nothing.
    Ok(match summary {
        Some(summary) => (Some(previous), Some(summary)),
        None => (None, None),
    })
}

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
    /// When the scan happened (Inspector's time): a pointer is never moved
    /// to a scan older than the one it names. Absent in pointers written
    /// before this field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanned_at: Option<String>,
    #[serde(default)]
    pub previous: Option<Box<Latest>>,
}

/// Conditional writes of the pointer tried before giving up (each retry
/// follows a concurrent write of the same pointer).
const POINTER_TRIES: usize = 5;

/// Whether the pointer now names this scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pointer {
    Moved,
    /// A scan newer than this one holds it, and keeps it.
    KeptNewer,
}

/// The AMI's pointer as one read found it: what a conditional write of it
/// requires, and what it names (`None`: absent or unreadable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointerRead {
    pub precondition: s3::Precondition,
    pub held: Option<Latest>,
}

async fn read_pointer(s3_client: &s3::Client, bucket: &str, key: &str) -> Result<PointerRead> {
    Ok(match s3::get_versioned(s3_client, bucket, key).await? {
        None => PointerRead {
            precondition: s3::Precondition::Absent,
            held: None,
        },
        Some(s3::Versioned { body, etag, .. }) => PointerRead {
            precondition: s3::Precondition::Unchanged(etag),
            held: serde_json::from_slice(&body)
                .map_err(|e| warn!(error = %e, key, "the pointer is unreadable"))
                .ok(),
        },
    })
}

/// Moves the AMI's pointer to `latest` unless it names a newer scan: from
/// the read the export began with (`first`, if any, else a new one),
/// compare the scan times, write only if the object is still the one read
/// (S3 `If-Match`, or `If-None-Match: *` when there was none), and read
/// again when another export wrote it meanwhile.
pub async fn advance_pointer(
    s3_client: &s3::Client,
    bucket: &str,
    kms: &str,
    ami_id: &str,
    latest: &Latest,
    first: Option<PointerRead>,
) -> Result<Pointer> {
    let key = report::latest_key(ami_id);
    let body = serde_json::to_vec(latest)
        .map_err(|e| Error::Internal(format!("encoding the pointer: {e}")))?;
    let mut first = first;
    for _ in 0..POINTER_TRIES {
        let read = match first.take() {
            Some(read) => read,
            None => read_pointer(s3_client, bucket, &key).await?,
        };
        if let Some(held) = read.held.filter(|h| h.scan_id != latest.scan_id) {
            if time::later(held.scanned_at.as_deref(), latest.scanned_at.as_deref()) {
                info!(ami_id, held = %held.scan_id, this = %latest.scan_id, "a newer scan holds the pointer: kept");
                return Ok(Pointer::KeptNewer);
            }
        }
        let precondition = read.precondition;
        if s3::put_small_if(s3_client, bucket, kms, &key, body.clone(), &precondition).await? {
            return Ok(Pointer::Moved);
        }
        warn!(
            ami_id,
            "the pointer changed while it was written; read again"
        );
    }
    Err(Error::Aws {
        operation: "PutObject",
        code: "PreconditionFailed".into(),
        message: format!("{key} kept changing under {POINTER_TRIES} conditional writes"),
        transient: true,
    })
}
/// Which version of the exceptions file a scan was judged with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExceptionsFile {
    pub version_id: Option<String>,
    pub etag: Option<String>,
}

/// The accepted risks in force for this scan, the version of the file they
/// come from, and why none applies when the file is invalid (a missing
/// file is no exceptions).
pub async fn load_exceptions(
    s3_client: &s3::Client,
    bucket: &str,
    at: DateTime<Utc>,
) -> Result<(Vec<exceptions::Exception>, ExceptionsFile, Option<String>)> {
    let fetched = s3::get_versioned(s3_client, bucket, EXCEPTIONS_KEY).await?;
    let file = fetched
        .as_ref()
        .map(|f| ExceptionsFile {
            version_id: f.version_id.clone(),
            etag: Some(f.etag.clone()),
        })
        .unwrap_or_default();
    let bytes = fetched.map(|f| f.body);
    Ok(
        match exceptions::read(bucket, bytes.as_deref(), at.date_naive()) {
            Ok(list) => (list, file, None),
            Err(invalid) => {
                warn!(error = %invalid, "exceptions file invalid; no exception applies");
                (Vec::new(), file, Some(invalid.to_string()))
            }
        },
    )
}

/// The AMI's previous completed scan (whatever its mode): its pointer, and
/// its summary record with every open vulnerability; and the pointer as
/// read, for [`advance_pointer`]'s conditional write. A retried export of
/// the scan the pointer already names compares with the one before; an
/// unreadable pointer is a first scan.
pub async fn load_previous(
    s3_client: &s3::Client,
    bucket: &str,
    scan: &ScanContext,
) -> Result<(Option<Latest>, Option<ScanSummary>, PointerRead)> {
    let key = report::latest_key(scan.ami_id.as_str());
    let read = read_pointer(s3_client, bucket, &key).await?;
    let Some(latest) = read.held.clone() else {
        return Ok((None, None, read));
    };
    let previous = if latest.scan_id == scan.scan_id.as_str() {
        latest.previous.map(|b| *b)
    } else {
        Some(latest)
    };
    let Some(previous) = previous else {
        return Ok((None, None, read));
    };
    let summary = match s3::get_bytes(s3_client, bucket, &previous.summary_key).await? {
        Some(bytes) => serde_json::from_slice::<ScanSummary>(&bytes)
            .map_err(|e| warn!(error = %e, "the previous summary is unreadable"))
            .ok(),
        None => None,
    };
    // An expired or unreadable record: this scan is compared with nothing.
    Ok(match summary {
        Some(summary) => (Some(previous), Some(summary), read),
        None => (None, None, read),
    })
}

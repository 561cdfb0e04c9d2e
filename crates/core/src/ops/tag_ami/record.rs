//! A completed scan's summary as export-report recorded it: what tag-ami
//! writes on the AMI, whatever its input says.

use super::TagRequest;
use crate::aws::s3;
use crate::error::{Error, Result};
use crate::model::ScanStatus;
use crate::report::ScanSummary;

/// The prefix under which export-report records each scan's summary; the
/// bucket policy lets no one else write there.
pub const SUMMARY_PREFIX: &str = "scans/";

/// A `COMPLETE` request's summary, replaced by the one export-report
/// recorded in S3 under the key the request names: the verdict written on
/// the AMI is never the request's own. The record must be under `scans/`
/// and be this scan's. The request's `cleanup_error` (added after the
/// export) is kept.
pub async fn recorded(
    s3_client: &s3::Client,
    bucket: &str,
    mut request: TagRequest,
) -> Result<TagRequest> {
    let Some(given) = request.summary.as_ref() else {
        return Ok(request);
    };
    if request.status != ScanStatus::Complete {
        return Ok(request);
    }
    let key = given.summary_key.clone();
    if !key.starts_with(SUMMARY_PREFIX) || key.contains("..") {
        return Err(Error::invalid(
            "summary.summary_key",
            format!("{key:?} is not a summary export-report records (under {SUMMARY_PREFIX})"),
        ));
    }
    let body = s3::get_bytes(s3_client, bucket, &key)
        .await?
        .ok_or_else(|| {
            Error::invalid(
                "summary.summary_key",
                format!("no summary is recorded at {key}"),
            )
        })?;
    let line = body.split(|b| *b == b'\n').next().unwrap_or_default();
    let stored: ScanSummary = serde_json::from_slice(line).map_err(|e| {
        Error::invalid(
            "summary.summary_key",
            format!("the summary recorded at {key} does not parse: {e}"),
        )
    })?;
    if stored.ami_id != request.scan.ami_id.as_str()
        || stored.scan_id != request.scan.scan_id.as_str()
    {
        return Err(Error::invalid(
            "summary.summary_key",
            format!(
                "the summary recorded at {key} is of {} {}, not of this scan",
                stored.ami_id, stored.scan_id
            ),
        ));
    }
    let cleanup_error = given.cleanup_error.clone();
    let mut stored = stored.listed();
    stored.cleanup_error = cleanup_error;
    request.summary = Some(stored);
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{parse_event, Verdict};
    use crate::ops::tag_ami::result_tags;
    use chrono::Utc;
    use serde_json::json;

    #[tokio::test]
    async fn a_complete_scan_is_tagged_from_the_recorded_summary_never_from_its_input() {
        use crate::aws::s3::operation::get_object::GetObjectOutput;
        use crate::aws::s3::primitives::ByteStream;
        use aws_smithy_mocks::{mock, mock_client};

        let request: TagRequest =
            parse_event(crate::ops::tag_ami::tests::sample("complete.json")).unwrap();
        let on_record = request.summary.clone().unwrap();
        assert_eq!(on_record.verdict, Verdict::Fail);
        let key = on_record.summary_key.clone();
        let mut line = serde_json::to_vec(&on_record).unwrap();
        line.push(b'\n');
        let get = mock!(s3::Client::get_object)
            .match_requests(move |r| {
                r.bucket() == Some("amiscan-reports") && r.key() == Some(key.as_str())
            })
            .sequence()
            .output(move || {
                GetObjectOutput::builder()
                    .body(ByteStream::from(line.clone()))
                    .build()
            })
            .repeatedly()
            .build();
        let client = mock_client!(aws_sdk_s3, [&get]);
        // The input says PASS with no findings: the record says FAIL.
        let mut forged = request.clone();
        let summary = forged.summary.as_mut().unwrap();
        summary.verdict = Verdict::Pass;
        summary.counts = Default::default();
        summary.cleanup_error = Some(json!("kept"));
        let read = recorded(&client, "amiscan-reports", forged).await.unwrap();
        let read = read.summary.unwrap();
        assert_eq!(read.verdict, Verdict::Fail);
        assert_eq!(read.counts, on_record.counts);
        assert_eq!(read.cleanup_error, Some(json!("kept")));
        let (set, _) = result_tags(
            &"amiscan:".parse().unwrap(),
            &recorded(&client, "amiscan-reports", request.clone())
                .await
                .unwrap(),
            Utc::now(),
        );
        assert_eq!(set["amiscan:verdict"], "FAIL");

        // A key outside scans/ is refused before anything is read.
        let mut elsewhere = request.clone();
        elsewhere.summary.as_mut().unwrap().summary_key = "config/forged.json".into();
        let calls = get.num_calls();
        match recorded(&client, "amiscan-reports", elsewhere)
            .await
            .unwrap_err()
        {
            Error::InvalidInput { field, .. } => assert_eq!(field, "summary.summary_key"),
            other => panic!("{other:?}"),
        }
        assert_eq!(get.num_calls(), calls);
        // Another scan's record is refused.
        let mut other_scan = request.clone();
        other_scan.scan.scan_id = "ami-0123456789abcdef0-20200101".parse().unwrap();
        other_scan.summary.as_mut().unwrap().scan_id = "ami-0123456789abcdef0-20200101".into();
        assert!(matches!(
            recorded(&client, "amiscan-reports", other_scan).await,
            Err(Error::InvalidInput { .. })
        ));
        // Statuses other than COMPLETE read nothing.
        let progress: TagRequest =
            parse_event(crate::ops::tag_ami::tests::sample("in-progress.json")).unwrap();
        let calls = get.num_calls();
        recorded(&client, "amiscan-reports", progress)
            .await
            .unwrap();
        assert_eq!(get.num_calls(), calls);
    }
}

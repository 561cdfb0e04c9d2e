//! Streaming the findings to the report objects: an instance's from
//! Inspector's ListFindings, a snapshot scan's from its staged batches.

#[allow(unused_imports)]
use super::*;

/// The objects one export writes as it streams, and how rows are judged.
pub(crate) struct Writers<'a> {
    pub(crate) findings: ObjectWriter<'a>,
    pub(crate) report: Option<(ObjectWriter<'a>, HumanReport)>,
    pub(crate) judge: Judge,
    /// Whether a finding a suppression rule hides counts toward the verdict.
    pub(crate) count_suppressed: bool,
}

impl Writers<'_> {
    /// Writes one page of rows (with the raw findings the human report
    /// reads) to the data object and the report, tallying them.
    pub(crate) async fn page(
        &mut self,
        tally: &mut Tally,
        scan: &ScanContext,
        mut rows: Vec<(Finding, report::FindingRow)>,
    ) -> Result<()> {
        let mut lines = Vec::new();
        let mut human_bytes = Vec::new();
        for (raw, row) in &mut rows {
            if row.is_suppressed() {
                row.counted = self.count_suppressed;
            }
            self.judge.annotate(row);
            tally.add(row);
            serde_json::to_writer(&mut lines, row)
                .map_err(|e| Error::Internal(format!("encoding a finding row: {e}")))?;
            lines.push(b'\n');
            if let Some((_, human)) = &mut self.report {
                human_bytes.extend(human.row(raw, row, scan)?);
            }
        }
        self.findings.write(&lines).await?;
        if let Some((w, _)) = &mut self.report {
            w.write(&human_bytes).await?;
        }
        Ok(())
    }

    pub(crate) async fn abort(self) {
        self.findings.abort().await;
        if let Some((w, _)) = self.report {
            w.abort().await;
        }
    }
}

pub(crate) async fn stream_findings(
    client: &inspector::Client,
    writers: &mut Writers<'_>,
    scan: &ScanContext,
    instance_id: &InstanceId,
    scanned_at: DateTime<Utc>,
) -> Result<Tally> {
    let mut tally = Tally::default();
    if let Some((w, human)) = &mut writers.report {
        w.write(&human.header()?).await?;
    }
    let mut pages = inspector::findings_of(client, instance_id)?;
    while let Some(page) = pages.next().await {
        let rows = page?
            .into_iter()
            .map(|finding| {
                let row =
                    report::finding_row(&finding, scan, Source::Instance(instance_id), scanned_at);
                (finding, row)
            })
            .collect::<Vec<_>>();
        writers.page(&mut tally, scan, rows).await?;
    }
    if let Some((w, human)) = &mut writers.report {
        w.write(&human.footer()).await?;
    }
    Ok(tally)
}

/// Streams a snapshot scan's staged batches, a page of keys at a time, each
/// object read once. A finding staged twice (a batch delivered again, an
/// event sent twice) is written once; two different bodies under one
/// `findingArn` are a conflict (the first is written; the other still fails
/// the scan if it breaches the threshold on its own); a finding that is not
/// this scan's (another scan, account or image) is not written at all.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn stream_staged(
    s3_client: &s3::Client,
    bucket: &str,
    staging: &Staging,
    writers: &mut Writers<'_>,
    scan: &ScanContext,
    own: OwnScan<'_>,
    threshold: Option<Severity>,
    scanned_at: DateTime<Utc>,
) -> Result<(Tally, Evidence)> {
    let mut tally = Tally::default();
    let mut evidence = Evidence::default();
    // findingArn -> a hash of its body: memory grows by one short entry per
    // finding, not by its body.
    let mut seen: HashMap<String, u64> = HashMap::new();
    if let Some((w, human)) = &mut writers.report {
        w.write(&human.header()?).await?;
    }
    let mut pages = s3::keys_under(s3_client, bucket, &staging.findings());
    while let Some(page) = pages.next().await {
        // One object (a batch, up to a few hundred findings) in hand at a
        // time, the next ones already on their way: memory holds
        // STAGED_READS bodies and one batch's rows, whatever the scan's size.
        let mut bodies = stream::iter(page?)
            .map(|key| async move { s3::get_bytes(s3_client, bucket, &key).await })
            .buffered(STAGED_READS);
        while let Some(body) = bodies.next().await {
            let Some(body) = body? else { continue };
            let mut rows = Vec::new();
            for line in body.split(|c| *c == b'\n') {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let finding: Finding = match serde_json::from_slice(line) {
                    Ok(f) => f,
                    Err(e) => {
                        warn!(error = %e, "a staged finding is not one; skipped");
                        continue;
                    }
                };
                if let Some(why) = own.foreign(&finding) {
                    let (_, n) = evidence.foreign.get_or_insert((why, 0));
                    *n += 1;
                    continue;
                }
                let arn = finding.finding_arn.clone();
                let hash = report::fingerprint(line);
                let row =
                    report::finding_row(&finding, scan, Source::Snapshot(own.scan_id), scanned_at);
                match seen.get(&arn) {
                    Some(&h) if h == hash => continue,
                    Some(_) => {
                        let (_, n) = evidence.conflict.get_or_insert((arn, 0));
                        *n += 1;
                        let mut other = row;
                        writers.judge.annotate(&mut other);
                        let mut alone = SeverityCounts::default();
                        if other.is_active() && other.exception_reason.is_none() {
                            alone.add(other.severity());
                        }
                        if Verdict::of(&alone, threshold) == Verdict::Fail {
                            evidence.other_body_breaches = true;
                        }
                        continue;
                    }
                    None => {
                        seen.insert(arn, hash);
                    }
                }
                evidence
                    .received
                    .add(Severity::from_inspector(&finding.severity));
                rows.push((finding, row));
            }
            drop(body);
            writers.page(&mut tally, scan, rows).await?;
        }
    }
    if let Some((w, human)) = &mut writers.report {
        w.write(&human.footer()).await?;
    }
    Ok((tally, evidence))
}

/// How many findings the staged batches hold, from their keys alone (an
/// upper bound of the distinct findings: a batch may repeat a finding of
/// another).
pub(crate) async fn staged_count(
    s3_client: &s3::Client,
    bucket: &str,
    staging: &Staging,
) -> Result<u64> {
    let mut pages = s3::keys_under(s3_client, bucket, &staging.findings());
    let mut count = 0;
    while let Some(page) = pages.next().await {
        count += page?
            .iter()
            .filter_map(|k| report::batch_count(k))
            .sum::<u64>();
    }
    Ok(count)
}

//! find-amis' triggers: the manual request, the schedule's event, EC2's
//! AMI state change and the runs queue's batches, parsed once.

#[allow(unused_imports)]
use super::*;

/// What started this run: the schedule, a person, AMIs that became
/// available, or any mix of them when a queue batch carries several.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindRequest {
    /// Every AMI carrying the selection tag (the schedule, `{}`).
    pub tagged: bool,
    /// AMIs a person named, tagged or not.
    pub named: Vec<AmiId>,
    /// AMIs that became available (EC2 AMI State Change), scanned as
    /// ScanOnCreate says.
    pub created: Vec<AmiId>,
    /// Where each new AMI's event came from (its envelope's `account` and
    /// `region`), by AMI id; one without is the hub's own.
    pub created_in: BTreeMap<String, Place>,
    /// Scan again even when today's scan of the AMI already ran.
    pub force: bool,
    /// Queue messages that are no trigger amiscan knows, by message id.
    pub ignored: Vec<Skipped>,
}

impl FindRequest {
    pub fn tagged(force: bool) -> FindRequest {
        FindRequest {
            tagged: true,
            force,
            ..FindRequest::default()
        }
    }

    /// Only AMIs that became available: a run nobody asked for, so it alerts
    /// only when it starts, fails or defers a scan.
    pub(crate) fn creation_only(&self) -> bool {
        !self.tagged && self.named.is_empty()
    }

    pub(crate) fn merge(&mut self, other: FindRequest) {
        self.tagged |= other.tagged;
        self.force |= other.force;
        self.named.extend(other.named);
        self.created.extend(other.created);
        self.created_in.extend(other.created_in);
        self.ignored.extend(other.ignored);
    }

    pub(crate) fn dedupe(mut self) -> FindRequest {
        let mut seen = BTreeSet::new();
        self.named.retain(|id| seen.insert(id.clone()));
        self.created.retain(|id| seen.insert(id.clone()));
        self
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ManualRequest {
    #[serde(default)]
    ami_ids: Option<Vec<AmiId>>,
    /// Scan again even when today's scan of the AMI already ran.
    #[serde(default)]
    force: bool,
}

impl Input for ManualRequest {
    fn check(&self) -> Result<()> {
        match &self.ami_ids {
            Some(ids) if ids.is_empty() => Err(Error::invalid(
                "ami_ids",
                "is empty; omit it to scan every tagged AMI",
            )),
            Some(ids) if ids.len() > REQUEST_AMIS_MAX => Err(Error::invalid(
                "ami_ids",
                format!(
                    "names {} AMIs; at most {REQUEST_AMIS_MAX} per request",
                    ids.len()
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// The detail of EC2's AMI state change event, as much as amiscan reads.
#[derive(Debug, Deserialize)]
pub(crate) struct AmiStateChange {
    #[serde(rename = "ImageId")]
    image_id: AmiId,
    #[serde(rename = "State")]
    state: String,
}

impl Input for AmiStateChange {}

/// Parses the event: a scheduled EventBridge event, `{}`, a manual request,
/// EC2's AMI state change event, or an SQS batch of any of these (the
/// queue that serialises the runs).
pub fn parse_request(payload: Value) -> Result<FindRequest> {
    if payload.get("Records").is_some() {
        let batch: SqsBatch = parse_event(payload)?;
        let mut request = FindRequest::default();
        for record in batch.records {
            let parsed = serde_json::from_str(&record.body)
                .map_err(|e| Error::invalid("body", format!("is not JSON: {e}")))
                .and_then(parse_trigger);
            match parsed {
                Ok(trigger) => request.merge(trigger),
                Err(err) => {
                    // Only amiscan's rule and schedule send here: a body it
                    // cannot read is a fault to see, not to redeliver (a
                    // failed record would hold up the FIFO group).
                    error!(message_id = %record.message_id, error = %err, "ignored a queue message");
                    request.ignored.push(Skipped {
                        ami_id: format!("(message {})", record.message_id),
                        reason: err.to_string(),
                    });
                }
            }
        }
        return Ok(request.dedupe());
    }
    parse_trigger(payload).map(FindRequest::dedupe)
}

pub(crate) fn parse_trigger(payload: Value) -> Result<FindRequest> {
    if let Some(detail_type) = payload.get("detail-type").cloned() {
        let event: aws_lambda_events::eventbridge::EventBridgeEvent = parse_event(payload)?;
        if detail_type != AMI_STATE_CHANGE {
            return Ok(FindRequest::tagged(false));
        }
        let change: AmiStateChange = parse_event(event.detail).map_err(|e| match e {
            Error::InvalidInput { field, reason } => Error::InvalidInput {
                field: format!("detail.{field}"),
                reason,
            },
            other => other,
        })?;
        // The rule matches `available` only; another state scans nothing.
        let mut request = FindRequest::default();
        if change.state == "available" {
            let place = event
                .account
                .zip(event.region)
                .map(|(account, region)| {
                    Ok::<_, Error>(Place {
                        account_id: account.parse().map_err(|e| Error::invalid("account", e))?,
                        region: region.parse().map_err(|e| Error::invalid("region", e))?,
                    })
                })
                .transpose()?;
            if let Some(place) = place {
                request
                    .created_in
                    .insert(change.image_id.to_string(), place);
            }
            request.created.push(change.image_id);
        }
        return Ok(request);
    }
    let request: ManualRequest = parse_event(payload)?;
    Ok(match request.ami_ids {
        None => FindRequest::tagged(request.force),
        Some(named) => FindRequest {
            named,
            force: request.force,
            ..FindRequest::default()
        },
    })
}

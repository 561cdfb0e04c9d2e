//! SNS messages: one body per protocol (`MessageStructure: json`), a short
//! plain text for email and JSON for every other protocol, with a one-line
//! subject and the `event_type` and `severity` attributes that
//! subscriptions filter on.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use tracing::info;

use crate::aws::sns;
use crate::error::{Error, Result};
use crate::model::Place;

/// SNS limits a subject to 100 printable ASCII characters on one line.
const SUBJECT_MAX: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    ScanStarted,
    ScanCompleted,
    ScanFailed,
    ScanIncomplete,
    AmiVulnerable,
    NothingToScan,
    ScanBatchStarted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ScanStarted => "SCAN_STARTED",
            EventType::ScanCompleted => "SCAN_COMPLETED",
            EventType::ScanFailed => "SCAN_FAILED",
            EventType::ScanIncomplete => "SCAN_INCOMPLETE",
            EventType::AmiVulnerable => "AMI_VULNERABLE",
            EventType::NothingToScan => "NOTHING_TO_SCAN",
            EventType::ScanBatchStarted => "SCAN_BATCH_STARTED",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub subject: String,
    pub event_type: EventType,
    /// `INFO`, or the highest finding severity for scan results.
    pub severity: String,
    pub body: serde_json::Value,
    /// What an email subscriber reads: plain text, a few lines.
    pub text: String,
    /// Where the AMI is, for a scan's alerts: `account_id` and `region`
    /// attributes (so an SNS filter policy can route per account).
    pub place: Option<Place>,
}

impl Notification {
    /// Names where the AMI is: in the attributes, and, when that is not
    /// the hub's own account and Region, in the subject (after `amiscan`,
    /// where the 100-character cut cannot reach it) and the text's first line.
    pub fn located(mut self, place: &Place, home: &Place) -> Notification {
        if place != home {
            self.subject = match self.subject.strip_prefix("amiscan:") {
                Some(rest) => format!("amiscan [{place}]:{rest}"),
                None => format!("[{place}] {}", self.subject),
            };
            let at = format!(" (account {}, Region {})", place.account_id, place.region);
            self.text = match self.text.split_once('\n') {
                Some((first, rest)) => format!("{first}{at}\n{rest}"),
                None => format!("{}{at}", self.text),
            };
        }
        self.place = Some(place.clone());
        self
    }

    fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("event_type", self.event_type.as_str().to_string()),
            ("severity", self.severity.clone()),
        ];
        if let Some(place) = &self.place {
            out.push(("account_id", place.account_id.to_string()));
            out.push(("region", place.region.to_string()));
        }
        out
    }
}

/// The per-protocol message: `email` gets the text, the rest the JSON.
pub fn per_protocol(note: &Notification) -> Result<String> {
    let body = serde_json::to_string(&note.body)
        .map_err(|e| Error::Internal(format!("encoding the message: {e}")))?;
    Ok(serde_json::json!({ "default": body, "email": email_text(&note.text) }).to_string())
}

/// Email text with every control character but the line break replaced by
/// a space: a finding's or a reason's text (package metadata, Inspector's
/// words) must not carry escape sequences or carriage returns into a mail.
pub fn email_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect()
}

/// A notification in the shape a state machine's publishing state passes
/// to SNS's Publish: `Subject.$` reads `subject`, `Message.$` is
/// `States.JsonToString` of `message` (`MessageStructure: json`), and
/// `MessageAttributes.$` reads `attributes` as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publishable {
    pub subject: String,
    pub message: PerProtocol,
    pub attributes: BTreeMap<String, MessageAttribute>,
}

/// One body per protocol: `default` (JSON text) for every protocol but
/// email, which gets `email` (plain text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerProtocol {
    pub default: String,
    pub email: String,
}

/// An SNS message attribute, in Publish's own field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessageAttribute {
    pub data_type: String,
    pub string_value: String,
}

impl Notification {
    /// This notification as a state machine publishes it, the subject made
    /// one line SNS accepts.
    pub fn publishable(&self) -> Result<Publishable> {
        let default = serde_json::to_string(&self.body)
            .map_err(|e| Error::Internal(format!("encoding the message: {e}")))?;
        let attribute = |value: &str| MessageAttribute {
            data_type: "String".into(),
            string_value: value.to_string(),
        };
        Ok(Publishable {
            subject: subject_line(&self.subject),
            message: PerProtocol {
                default,
                email: email_text(&self.text),
            },
            attributes: self
                .attributes()
                .into_iter()
                .map(|(k, v)| (k.to_string(), attribute(&v)))
                .collect(),
        })
    }
}

/// A subject SNS accepts: one line of printable ASCII, at most 100 characters.
pub fn subject_line(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let clean = clean.split_whitespace().collect::<Vec<_>>().join(" ");
    if clean.len() <= SUBJECT_MAX {
        clean
    } else {
        format!("{}...", &clean[..SUBJECT_MAX - 3])
    }
}

/// Publishes one notification.
pub async fn publish(client: &sns::Client, topic_arn: &str, note: &Notification) -> Result<String> {
    let id = sns::publish(
        client,
        topic_arn,
        &subject_line(&note.subject),
        per_protocol(note)?,
        &note
            .attributes()
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
    )
    .await?;
    info!(event_type = %note.event_type, message_id = %id, "notification published");
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_mocks::{mock, mock_client};

    #[test]
    fn subjects_are_one_short_ascii_line() {
        assert_eq!(
            subject_line("amiscan:\n 3 scans\tstarted"),
            "amiscan: 3 scans started"
        );
        assert_eq!(subject_line("AMI «prod» vulnerable"), "AMI prod vulnerable");
        let long = subject_line(&"x".repeat(300));
        assert_eq!(long.len(), 100);
        assert!(long.ends_with("..."));
    }

    #[test]
    fn email_text_keeps_lines_and_drops_every_other_control_character() {
        assert_eq!(
            email_text("CVE-1\r\n\u{1b}[31mred\u{7}\tend"),
            "CVE-1 \n [31mred  end"
        );
    }

    #[test]
    fn a_publishable_notification_has_publishs_field_names_and_one_body_per_protocol() {
        let note = Notification {
            subject: "amiscan:\n ami-1 scanned".into(),
            event_type: EventType::ScanIncomplete,
            severity: "WARNING".into(),
            body: serde_json::json!({"ami_id": "ami-1"}),
            text: "Two lines.\nFor people.".into(),
            place: None,
        };
        let out = serde_json::to_value(note.publishable().unwrap()).unwrap();
        assert_eq!(
            out,
            serde_json::json!({
                "subject": "amiscan: ami-1 scanned",
                "message": {"default": r#"{"ami_id":"ami-1"}"#, "email": "Two lines.\nFor people."},
                "attributes": {
                    "event_type": {"DataType": "String", "StringValue": "SCAN_INCOMPLETE"},
                    "severity": {"DataType": "String", "StringValue": "WARNING"}
                }
            })
        );
    }

    #[test]
    fn an_alert_names_the_amis_account_and_region_and_the_subject_says_it_away_from_home() {
        let place = |account: &str, region: &str| Place {
            account_id: account.parse().unwrap(),
            region: region.parse().unwrap(),
        };
        let home = place("123456789012", "us-east-1");
        let note = || Notification {
            subject: "amiscan: ami-1 scanned, PASS (0 critical, 0 high)".into(),
            event_type: EventType::ScanCompleted,
            severity: "NONE".into(),
            body: serde_json::json!({"ami_id": "ami-1"}),
            text: "amiscan scanned ami-1.\n\nDigest.".into(),
            place: None,
        };
        let attributes = |p: &Publishable| {
            let a = &p.attributes;
            (
                a.get("account_id").map(|v| v.string_value.clone()),
                a.get("region").map(|v| v.string_value.clone()),
            )
        };
        let at_home = note().located(&home, &home).publishable().unwrap();
        assert_eq!(
            at_home.subject,
            "amiscan: ami-1 scanned, PASS (0 critical, 0 high)"
        );
        assert_eq!(
            attributes(&at_home),
            (Some("123456789012".into()), Some("us-east-1".into()))
        );
        let away = note()
            .located(&place("111111111111", "eu-west-1"), &home)
            .publishable()
            .unwrap();
        assert_eq!(
            away.subject,
            "amiscan [111111111111/eu-west-1]: ami-1 scanned, PASS (0 critical, 0 high)"
        );
        assert!(away
            .message
            .email
            .starts_with("amiscan scanned ami-1. (account 111111111111, Region eu-west-1)\n"));
        assert_eq!(
            attributes(&away),
            (Some("111111111111".into()), Some("eu-west-1".into()))
        );
    }

    #[tokio::test]
    async fn publish_sends_text_to_email_and_json_to_the_rest_with_filterable_attributes() {
        let rule = mock!(sns::Client::publish)
            .match_requests(|req| {
                let attrs = req.message_attributes().unwrap();
                let message: serde_json::Value =
                    serde_json::from_str(req.message().unwrap_or("null")).unwrap();
                req.topic_arn() == Some("arn:aws:sns:us-east-1:123456789012:amiscan")
                    && req.subject() == Some("amiscan: nothing to scan")
                    && req.message_structure() == Some("json")
                    && message["default"] == r#"{"found":0}"#
                    && message["email"] == "Nothing to scan.\nNo AMI is tagged."
                    && attrs["event_type"].string_value() == Some("NOTHING_TO_SCAN")
                    && attrs["severity"].string_value() == Some("INFO")
            })
            .then_output(|| {
                sns::operation::publish::PublishOutput::builder()
                    .message_id("m-1")
                    .build()
            });
        let client = mock_client!(aws_sdk_sns, [&rule]);
        let note = Notification {
            subject: "amiscan: nothing to scan".into(),
            event_type: EventType::NothingToScan,
            severity: "INFO".into(),
            body: serde_json::json!({"found": 0}),
            text: "Nothing to scan.\nNo AMI is tagged.".into(),
            place: None,
        };
        let id = publish(&client, "arn:aws:sns:us-east-1:123456789012:amiscan", &note)
            .await
            .unwrap();
        assert_eq!(id, "m-1");
        assert_eq!(rule.num_calls(), 1);
    }
}

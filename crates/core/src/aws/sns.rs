//! SNS: one message to the topic, with the attributes subscriptions filter on.

pub use aws_sdk_sns::{config, error, operation, types, Client};

use crate::error::{Error, Result};
use types::MessageAttributeValue;

/// Publishes a per-protocol message (`MessageStructure: json`: an object
/// of one body per protocol, `default` for the rest); returns its id.
pub async fn publish(
    client: &Client,
    topic_arn: &str,
    subject: &str,
    per_protocol: String,
    attributes: &[(&str, &str)],
) -> Result<String> {
    let mut request = client
        .publish()
        .topic_arn(topic_arn)
        .subject(subject)
        .message_structure("json")
        .message(per_protocol);
    for (name, value) in attributes {
        let value = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(*value)
            .build()
            .map_err(|e| Error::Internal(format!("SNS attribute: {e}")))?;
        request = request.message_attributes(*name, value);
    }
    let out = request
        .send()
        .await
        .map_err(|e| Error::from_sdk("Publish", e))?;
    Ok(out.message_id.unwrap_or_default())
}

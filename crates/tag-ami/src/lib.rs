//! tag-ami: writes a scan's status and, once complete, its counts, verdict
//! and report location onto the AMI.

use amiscan_core::aws::places::Places;
use amiscan_core::aws::{ec2, s3, SdkConfig};
use amiscan_core::lambda::Handler;
use amiscan_core::model::parse_event;
use amiscan_core::ops::tag_ami::{self, TagOutput, TagRequest, TagSettings};
use amiscan_core::Error;
use serde_json::Value;

pub struct Function {
    places: Places,
    s3: s3::Client,
    settings: TagSettings,
}

impl Handler for Function {
    type Settings = TagSettings;
    type Output = TagOutput;

    fn new(config: &SdkConfig, settings: TagSettings) -> Self {
        Function {
            places: Places::new(config, &settings.home),
            s3: s3::Client::new(config),
            settings,
        }
    }

    async fn handle(&self, event: Value) -> Result<TagOutput, Error> {
        let request: TagRequest = parse_event(event)?;
        let config = self.places.for_scan(&request.scan).await?;
        tag_ami::run(
            &ec2::Client::new(&config),
            &self.s3,
            &self.settings,
            request,
            self.places.home()?,
            chrono::Utc::now(),
        )
        .await
    }
}

//! cleanup: the end of every path of both state machines (targeted mode), and
//! the hourly sweeper of anything a lost execution left running.

use amiscan_core::aws::{ec2, events, SdkConfig};
use amiscan_core::lambda::Handler;
use amiscan_core::ops::cleanup::{self, CleanupReport, CleanupSettings};
use amiscan_core::Error;
use serde_json::Value;

pub struct Function {
    ec2: ec2::Client,
    events: events::Client,
    settings: CleanupSettings,
}

impl Handler for Function {
    type Settings = CleanupSettings;
    type Output = CleanupReport;

    fn new(config: &SdkConfig, settings: CleanupSettings) -> Self {
        Function {
            ec2: ec2::Client::new(config),
            events: events::Client::new(config),
            settings,
        }
    }

    async fn handle(&self, event: Value) -> Result<CleanupReport, Error> {
        let request = cleanup::parse_request(event)?;
        cleanup::run(
            &self.ec2,
            &self.events,
            &self.settings,
            &request,
            chrono::Utc::now(),
        )
        .await
    }
}

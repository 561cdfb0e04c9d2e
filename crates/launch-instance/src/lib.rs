//! launch-instance: the first step of launch-scan. Boots the AMI on one
//! locked-down, scanner-tagged instance and returns the scan context with the
//! instance filled in.

use amiscan_core::aws::{ec2, SdkConfig};
use amiscan_core::lambda::Handler;
use amiscan_core::model::{parse_event, ScanContext};
use amiscan_core::ops::launch_instance::{self, LaunchSettings};
use amiscan_core::Error;
use serde_json::Value;

pub struct Function {
    ec2: ec2::Client,
    settings: LaunchSettings,
}

impl Handler for Function {
    type Settings = LaunchSettings;
    type Output = ScanContext;

    fn new(config: &SdkConfig, settings: LaunchSettings) -> Self {
        Function {
            ec2: ec2::Client::new(config),
            settings,
        }
    }

    async fn handle(&self, event: Value) -> Result<ScanContext, Error> {
        let scan: ScanContext = parse_event(event)?;
        launch_instance::run(&self.ec2, &self.settings, scan).await
    }
}

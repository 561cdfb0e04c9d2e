//! launch-instance: the first step of launch-scan. Boots the AMI on one
//! locked-down, scanner-tagged instance, in the scan's own account and
//! Region, and returns the scan context with the instance filled in.

use amiscan_core::aws::places::Places;
use amiscan_core::aws::{ec2, SdkConfig};
use amiscan_core::lambda::Handler;
use amiscan_core::model::{parse_event, ScanContext};
use amiscan_core::ops::launch_instance::{self, LaunchSettings};
use amiscan_core::Error;
use serde_json::Value;

pub struct Function {
    places: Places,
    settings: LaunchSettings,
}

impl Handler for Function {
    type Settings = LaunchSettings;
    type Output = ScanContext;

    fn new(config: &SdkConfig, settings: LaunchSettings) -> Self {
        Function {
            places: Places::new(config, &settings.home),
            settings,
        }
    }

    async fn handle(&self, event: Value) -> Result<ScanContext, Error> {
        let scan: ScanContext = parse_event(event)?;
        let client = ec2::Client::new(&self.places.for_scan(&scan).await?);
        let network =
            launch_instance::network_at(&client, &self.settings, &scan, self.places.home()?)
                .await?;
        launch_instance::run(&client, &self.settings, &network, scan).await
    }
}

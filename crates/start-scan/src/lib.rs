//! start-scan: starts Inspector's on-demand scan of the AMI's snapshots (or
//! attaches to the one running) and marks it as amiscan's.

use amiscan_core::aws::{inspector, s3, SdkConfig};
use amiscan_core::lambda::Handler;
use amiscan_core::model::{parse_event, ScanContext};
use amiscan_core::ops::start_scan::{self, StartSettings};
use amiscan_core::Error;
use serde_json::Value;

pub struct Function {
    inspector: inspector::Client,
    s3: s3::Client,
    settings: StartSettings,
}

impl Handler for Function {
    type Settings = StartSettings;
    type Output = ScanContext;

    fn new(config: &SdkConfig, settings: StartSettings) -> Self {
        Function {
            inspector: inspector::Client::new(config),
            s3: s3::Client::new(config),
            settings,
        }
    }

    async fn handle(&self, event: Value) -> Result<ScanContext, Error> {
        let scan: ScanContext = parse_event(event)?;
        start_scan::run(
            &self.inspector,
            &self.s3,
            &self.settings,
            scan,
            chrono::Utc::now(),
        )
        .await
    }
}

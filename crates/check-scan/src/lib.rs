//! check-scan: what launch-scan asks once its wait for Inspector ends
//! without an answer: for an instance scan, whether Inspector scanned the
//! instance, never will, or has not yet; for a snapshot scan, Inspector's
//! status of the on-demand scan.

use amiscan_core::aws::places::Places;
use amiscan_core::aws::{ec2, inspector, SdkConfig};
use amiscan_core::lambda::Handler;
use amiscan_core::model::{parse_event, ScanContext};
use amiscan_core::ops::check_scan::{self, CheckSettings, SnapshotCheck};
use amiscan_core::Error;
use serde_json::Value;

pub struct Function {
    places: Places,
}

impl Handler for Function {
    type Settings = CheckSettings;
    type Output = Value;

    fn new(config: &SdkConfig, settings: CheckSettings) -> Self {
        Function {
            places: Places::new(config, &settings.home),
        }
    }

    async fn handle(&self, event: Value) -> Result<Value, Error> {
        if event.get("snapshot_scan").is_some() {
            let request: SnapshotCheck = parse_event(event)?;
            let config = self.places.for_scan(&request.snapshot_scan).await?;
            let inspector = inspector::Client::new(&config);
            let outcome = check_scan::snapshot_status(&inspector, &request).await?;
            return encode(&outcome);
        }
        let scan: ScanContext = parse_event(event)?;
        let config = self.places.for_scan(&scan).await?;
        let (ec2, inspector) = (ec2::Client::new(&config), inspector::Client::new(&config));
        check_scan::run(&ec2, &inspector, &scan, chrono::Utc::now())
            .await
            .and_then(|r| encode(&r))
    }
}

fn encode(value: &impl serde::Serialize) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|e| Error::Internal(format!("encoding the result: {e}")))
}

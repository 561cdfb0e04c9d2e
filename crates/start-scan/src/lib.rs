//! start-scan: starts Inspector's on-demand scan of the AMI's snapshots (or
//! attaches to the one running) and marks it as amiscan's.

use amiscan_core::aws::places::Places;
use amiscan_core::aws::{inspector, s3, SdkConfig};
use amiscan_core::lambda::Handler;
use amiscan_core::model::{parse_event, ScanContext};
use amiscan_core::ops::start_scan::{self, StartSettings};
use amiscan_core::Error;
use serde_json::{json, Value};

pub struct Function {
    places: Places,
    s3: s3::Client,
    settings: StartSettings,
}

impl Handler for Function {
    type Settings = StartSettings;
    type Output = Value;

    fn new(config: &SdkConfig, settings: StartSettings) -> Self {
        Function {
            places: Places::new(config, &settings.home),
            s3: s3::Client::new(config),
            settings,
        }
    }

    /// A scan context starts a scan; `{"discard_staging": <context>}`
    /// deletes what its attempt staged (`{"deleted": n}`).
    async fn handle(&self, event: Value) -> Result<Value, Error> {
        if let Some(scan) = event.get("discard_staging") {
            let scan: ScanContext = parse_event(scan.clone())?;
            let deleted = start_scan::discard(&self.s3, &self.settings, &scan).await?;
            return Ok(json!({ "deleted": deleted }));
        }
        let scan: ScanContext = parse_event(event)?;
        let config = self.places.for_scan(&scan).await?;
        let started = start_scan::run(
            &inspector::Client::new(&config),
            &self.s3,
            &self.settings,
            scan,
            chrono::Utc::now(),
        )
        .await?;
        serde_json::to_value(started)
            .map_err(|e| Error::Internal(format!("encoding the context: {e}")))
    }
}

//! check-scan: launch-scan's step after its deadline. Says whether the scan
//! finished, hands a scanned instance whose event was lost over to
//! report-and-cleanup, or reports why Inspector did not scan it; for a
//! snapshot scan, asks Inspector for the scan's status.

use amiscan_core::aws::{ec2, inspector, sfn, SdkConfig};
use amiscan_core::lambda::Handler;
use amiscan_core::model::{parse_event, ScanContext};
use amiscan_core::ops::check_scan::{self, CheckSettings, SnapshotCheck};
use amiscan_core::Error;
use serde_json::Value;

pub struct Function {
    ec2: ec2::Client,
    inspector: inspector::Client,
    sfn: sfn::Client,
    settings: CheckSettings,
}

impl Handler for Function {
    type Settings = CheckSettings;
    type Output = Value;

    fn new(config: &SdkConfig, settings: CheckSettings) -> Self {
        Function {
            ec2: ec2::Client::new(config),
            inspector: inspector::Client::new(config),
            sfn: sfn::Client::new(config),
            settings,
        }
    }

    async fn handle(&self, event: Value) -> Result<Value, Error> {
        if event.get("snapshot_scan").is_some() {
            let request: SnapshotCheck = parse_event(event)?;
            let outcome = check_scan::snapshot_status(&self.inspector, &request).await?;
            return encode(&outcome);
        }
        let scan: ScanContext = parse_event(event)?;
        check_scan::run(
            &self.ec2,
            &self.inspector,
            &self.sfn,
            &self.settings,
            &scan,
            chrono::Utc::now(),
        )
        .await
        .and_then(|r| encode(&r))
    }
}

fn encode(value: &impl serde::Serialize) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|e| Error::Internal(format!("encoding the result: {e}")))
}

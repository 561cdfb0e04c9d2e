//! collect-findings: drains the queue of snapshot-scan events in batches,
//! stages each finding once, wakes the waiting launch-scan execution on
//! completion, and reports the records to deliver again.

use amiscan_core::aws::{s3, sfn, SdkConfig};
use amiscan_core::lambda::Handler;
use amiscan_core::model::parse_event;
use amiscan_core::ops::collect_findings::{self, BatchResponse, CollectSettings, SqsBatch};
use amiscan_core::Error;
use serde_json::Value;

pub struct Function {
    s3: s3::Client,
    sfn: sfn::Client,
    settings: CollectSettings,
}

impl Handler for Function {
    type Settings = CollectSettings;
    type Output = BatchResponse;

    fn new(config: &SdkConfig, settings: CollectSettings) -> Self {
        Function {
            s3: s3::Client::new(config),
            sfn: sfn::Client::new(config),
            settings,
        }
    }

    async fn handle(&self, event: Value) -> Result<BatchResponse, Error> {
        let batch: SqsBatch = parse_event(event)?;
        let (response, _) =
            collect_findings::run(&self.s3, &self.sfn, &self.settings, batch).await?;
        Ok(response)
    }
}

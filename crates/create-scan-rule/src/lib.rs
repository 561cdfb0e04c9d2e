//! create-scan-rule: the second step of launch-scan. Creates the instance's
//! EventBridge rule that starts report-and-cleanup when Inspector's first
//! scan of it completes.

use amiscan_core::aws::{events, SdkConfig};
use amiscan_core::lambda::Handler;
use amiscan_core::model::{parse_event, ScanContext};
use amiscan_core::ops::create_scan_rule::{self, RuleSettings};
use amiscan_core::Error;
use serde_json::Value;

pub struct Function {
    events: events::Client,
    settings: RuleSettings,
}

impl Handler for Function {
    type Settings = RuleSettings;
    type Output = ScanContext;

    fn new(config: &SdkConfig, settings: RuleSettings) -> Self {
        Function {
            events: events::Client::new(config),
            settings,
        }
    }

    async fn handle(&self, event: Value) -> Result<ScanContext, Error> {
        let scan: ScanContext = parse_event(event)?;
        create_scan_rule::run(&self.events, &self.settings, scan).await
    }
}

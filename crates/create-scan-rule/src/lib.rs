//! create-scan-rule: launch-scan's wait for an instance scan. Creates the
//! instance's EventBridge rule that delivers Inspector's "scan complete"
//! event, with the waiting task's token, into collect-findings' queue.

use amiscan_core::aws::{events, SdkConfig};
use amiscan_core::lambda::Handler;
use amiscan_core::model::{parse_event, RuleName, RuleRequest};
use amiscan_core::ops::create_scan_rule::{self, RuleSettings};
use amiscan_core::Error;
use serde_json::Value;

pub struct Function {
    events: events::Client,
    settings: RuleSettings,
}

impl Handler for Function {
    type Settings = RuleSettings;
    type Output = RuleName;

    fn new(config: &SdkConfig, settings: RuleSettings) -> Self {
        Function {
            events: events::Client::new(config),
            settings,
        }
    }

    async fn handle(&self, event: Value) -> Result<RuleName, Error> {
        let request: RuleRequest = parse_event(event)?;
        create_scan_rule::run(&self.events, &self.settings, request).await
    }
}

//! create-scan-rule: launch-scan's wait for an instance scan. Creates the
//! instance's EventBridge rule that delivers Inspector's "scan complete"
//! event, with the waiting task's token, into collect-findings' queue (for
//! an instance in a member account, on the hub's bus, with the member's
//! rule that forwards the event there).

use amiscan_core::aws::places::Places;
use amiscan_core::aws::{events, SdkConfig};
use amiscan_core::lambda::Handler;
use amiscan_core::model::{parse_event, RuleName, RuleRequest};
use amiscan_core::ops::create_scan_rule::{self, RuleSettings};
use amiscan_core::Error;
use serde_json::Value;

pub struct Function {
    events: events::Client,
    places: Places,
    settings: RuleSettings,
}

impl Handler for Function {
    type Settings = RuleSettings;
    type Output = RuleName;

    fn new(config: &SdkConfig, settings: RuleSettings) -> Self {
        Function {
            events: events::Client::new(config),
            places: Places::new(config, &settings.home),
            settings,
        }
    }

    async fn handle(&self, event: Value) -> Result<RuleName, Error> {
        let request: RuleRequest = parse_event(event)?;
        let home = self.places.home()?;
        let place = request.scan.place(home);
        if &place == home {
            return create_scan_rule::run(&self.events, None, &self.settings, request, home).await;
        }
        let there = events::Client::new(&self.places.for_scan(&request.scan).await?);
        create_scan_rule::run(
            &self.events,
            Some((&there, &place)),
            &self.settings,
            request,
            home,
        )
        .await
    }
}

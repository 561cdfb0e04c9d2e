//! check-scan: launch-scan's step after its deadline. Says whether the scan
//! finished, hands a scanned instance whose event was lost over to
//! report-and-cleanup, or reports why Inspector did not scan it.

use amiscan_core::aws::{ec2, inspector, sfn, SdkConfig};
use amiscan_core::lambda::Handler;
use amiscan_core::model::{parse_event, ScanContext};
use amiscan_core::ops::check_scan::{self, CheckResult, CheckSettings};
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
    type Output = CheckResult;

    fn new(config: &SdkConfig, settings: CheckSettings) -> Self {
        Function {
            ec2: ec2::Client::new(config),
            inspector: inspector::Client::new(config),
            sfn: sfn::Client::new(config),
            settings,
        }
    }

    async fn handle(&self, event: Value) -> Result<CheckResult, Error> {
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
    }
}

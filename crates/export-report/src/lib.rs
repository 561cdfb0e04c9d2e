//! export-report: the first step of report-and-cleanup (and of the deadline
//! path when Inspector's event was lost). Streams the instance's findings to
//! S3 and returns the scan's summary and verdict.

use amiscan_core::aws::places::Places;
use amiscan_core::aws::{ec2, inspector, s3, SdkConfig};
use amiscan_core::lambda::Handler;
use amiscan_core::model::{parse_event, ReportInput};
use amiscan_core::ops::export_report::{self, ExportSettings};
use amiscan_core::report::ScanSummary;
use amiscan_core::Error;
use serde_json::Value;

pub struct Function {
    places: Places,
    s3: s3::Client,
    settings: ExportSettings,
}

impl Handler for Function {
    type Settings = ExportSettings;
    type Output = ScanSummary;

    fn new(config: &SdkConfig, settings: ExportSettings) -> Self {
        Function {
            places: Places::new(config, &settings.home),
            s3: s3::Client::new(config),
            settings,
        }
    }

    async fn handle(&self, event: Value) -> Result<ScanSummary, Error> {
        let mut input: ReportInput = parse_event(event)?;
        let config = self.places.for_scan(&input.scan).await?;
        // The report names the AMI's account and Region, home's when the
        // scan names none.
        let home = self.places.home()?;
        input.scan = input.scan.placed(home);
        export_report::run(
            &ec2::Client::new(&config),
            &inspector::Client::new(&config),
            &self.s3,
            &self.settings,
            input,
            home,
            chrono::Utc::now(),
        )
        .await
    }
}

//! export-report: the first step of report-and-cleanup (and of the deadline
//! path when Inspector's event was lost). Streams the instance's findings to
//! S3 and returns the scan's summary and verdict.

use amiscan_core::aws::{inspector2, s3, SdkConfig};
use amiscan_core::export::{self, ExportRequest};
use amiscan_core::lambda::Handler;
use amiscan_core::model::parse_event;
use amiscan_core::report::ScanSummary;
use amiscan_core::settings::ExportSettings;
use amiscan_core::Error;
use serde_json::Value;

pub struct Function {
    inspector: inspector2::Client,
    s3: s3::Client,
    settings: ExportSettings,
}

impl Handler for Function {
    type Settings = ExportSettings;
    type Output = ScanSummary;

    fn new(config: &SdkConfig, settings: ExportSettings) -> Self {
        Function {
            inspector: inspector2::Client::new(config),
            s3: s3::Client::new(config),
            settings,
        }
    }

    async fn handle(&self, event: Value) -> Result<ScanSummary, Error> {
        let request: ExportRequest = parse_event(event)?;
        export::export_report(
            &self.inspector,
            &self.s3,
            &self.settings,
            request,
            chrono::Utc::now(),
        )
        .await
    }
}

//! cleanup: the end of every path of both state machines (targeted mode), and
//! the hourly sweeper of anything a lost execution left running.

use amiscan_core::aws::places::Places;
use amiscan_core::aws::{ec2, events, SdkConfig};
use amiscan_core::lambda::Handler;
use amiscan_core::ops::cleanup::{self, CleanupReport, CleanupSettings};
use amiscan_core::Error;
use serde_json::Value;

pub struct Function {
    ec2: ec2::Client,
    events: events::Client,
    places: Places,
    settings: CleanupSettings,
}

impl Handler for Function {
    type Settings = CleanupSettings;
    type Output = CleanupReport;

    fn new(config: &SdkConfig, settings: CleanupSettings) -> Self {
        Function {
            ec2: ec2::Client::new(config),
            events: events::Client::new(config),
            places: Places::new(config, &settings.home),
            settings,
        }
    }

    /// A targeted request acts where its scan ran (the member role away
    /// from home); the sweep acts at home, and in each member place a scan
    /// rule on the hub's bus names.
    async fn handle(&self, event: Value) -> Result<CleanupReport, Error> {
        let request = cleanup::parse_request(event)?;
        let home = self.places.home()?;
        let place = request.place(home);
        let now = chrono::Utc::now();
        if &place == home {
            return cleanup::run(
                &self.ec2,
                &self.events,
                &self.events,
                &self.places,
                &self.settings,
                &request,
                now,
            )
            .await;
        }
        let config = self.places.config(&place, request.session()).await?;
        cleanup::run(
            &ec2::Client::new(&config),
            &events::Client::new(&config),
            &self.events,
            &self.places,
            &self.settings,
            &request,
            now,
        )
        .await
    }
}

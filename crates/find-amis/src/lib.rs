//! find-amis: the workflow's entry. On the weekly schedule, `{}`, a manual
//! `{"ami_ids": […], "force": true}`, EC2's AMI state change event, or a
//! batch of these from the runs queue, it picks the AMIs to scan and starts
//! one launch-scan execution per AMI.

use amiscan_core::aws::places::Places;
use amiscan_core::aws::{organizations, s3, sfn, sns, SdkConfig};
use amiscan_core::lambda::Handler;
use amiscan_core::ops::find_amis::{self, FindOutput, FindSettings};
use amiscan_core::Error;
use serde_json::Value;

pub struct Function {
    places: Places,
    organizations: organizations::Client,
    sfn: sfn::Client,
    sns: sns::Client,
    s3: s3::Client,
    settings: FindSettings,
}

impl Function {
    /// AssumeRole calls this environment has made (one per member account
    /// while its session lasts).
    pub fn assumptions(&self) -> u32 {
        self.places.assumptions()
    }
}

impl Handler for Function {
    type Settings = FindSettings;
    type Output = FindOutput;

    fn new(config: &SdkConfig, settings: FindSettings) -> Self {
        Function {
            places: Places::new(config, &settings.home),
            organizations: organizations::Client::new(config),
            sfn: sfn::Client::new(config),
            sns: sns::Client::new(config),
            s3: s3::Client::new(config),
            settings,
        }
    }

    async fn handle(&self, event: Value) -> Result<FindOutput, Error> {
        let request = find_amis::parse_request(event)?;
        find_amis::run(
            &self.places,
            &self.organizations,
            &self.sfn,
            &self.sns,
            &self.s3,
            &self.settings,
            &request,
            chrono::Utc::now(),
        )
        .await
    }
}

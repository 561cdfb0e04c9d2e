//! Lambda entry point: tracing, settings and SDK clients once, then the
//! handler for every event.

use amiscan_core::settings::{CheckSettings, EnvReader};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = CheckSettings::from_env(EnvReader::process())?;
    let config = amiscan_core::aws::load_config().await;
    let function = check_scan::Function::new(&config, settings);
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        function.handle(event.payload).await
    }))
    .await
}

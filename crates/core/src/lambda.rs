//! The wiring every Lambda shares: tracing, settings and SDK clients once at
//! start-up, then the handler for every event. A function crate implements
//! [`Handler`] and its `main` calls [`run`].

use std::future::Future;

use lambda_runtime::{service_fn, LambdaEvent};
use serde::Serialize;
use serde_json::Value;

use crate::aws::SdkConfig;
use crate::error::Error;
use crate::settings::{EnvReader, FromEnv};

/// One Lambda function: its settings, its clients, and its handler.
pub trait Handler: Sized + Sync {
    type Settings: FromEnv;
    type Output: Serialize;

    /// Builds the function's SDK clients from the shared configuration.
    fn new(config: &SdkConfig, settings: Self::Settings) -> Self;

    /// Parses the event, calls core, and returns its result or error.
    fn handle(&self, event: Value) -> impl Future<Output = Result<Self::Output, Error>> + Send;
}

/// Runs a function on the Lambda runtime. Fails at start-up, naming every
/// missing or malformed environment variable, before serving any event.
pub async fn run<H: Handler>() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let settings = H::Settings::from_env(EnvReader::process()).inspect_err(|err| {
        tracing::error!(error = %err, "cannot start: fix the function's environment variables");
    })?;
    let config = crate::aws::load_config().await;
    let function = H::new(&config, settings);
    let function = &function;
    // Boxed: the handlers' futures nest deep enough to exhaust the
    // compiler's layout depth when inlined into the runtime's own.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        Box::pin(function.handle(event.payload))
    }))
    .await
}

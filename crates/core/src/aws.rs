//! SDK set-up shared by every Lambda: one configuration, loaded once at
//! start-up, honouring the standard AWS_* variables (AWS_ENDPOINT_URL among
//! them), with the SDK's standard retry of throttling and transient faults.

pub use aws_config;
pub use aws_config::SdkConfig;
pub use aws_sdk_ec2 as ec2;
pub use aws_sdk_eventbridge as eventbridge;
pub use aws_sdk_inspector2 as inspector2;
pub use aws_sdk_s3 as s3;
pub use aws_sdk_sfn as sfn;
pub use aws_sdk_sns as sns;

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;

/// Attempts per AWS call, the first included, before an error reaches the
/// handler (and, as `Transient`, the state machine's own Retry).
pub const MAX_ATTEMPTS: u32 = 5;

/// Loads the SDK configuration from the environment.
pub async fn load_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .load()
        .await
}

//! Lambda entry point: wiring only. The handler is in lib.rs; the start-up
//! (tracing, settings, SDK clients) is shared in `amiscan_core::lambda`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    amiscan_core::lambda::run::<start_scan::Function>().await
}

//! One module per Lambda, named after its crate: that function's settings,
//! request and output types, pure decisions and one `run`. An op never uses
//! another op; what two share lives in `model`, `report`, `aws` or `tags`.

pub mod check_scan;
pub mod cleanup;
pub mod create_scan_rule;
pub mod export_report;
pub mod find_amis;
pub mod launch_instance;
pub mod tag_ami;

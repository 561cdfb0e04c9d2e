//! Each Lambda's handler against the local cloud (tests/with-moto starts it):
//! what it leaves in the emulator is read back and checked, not only what it
//! returns. One file per function; the shared set-up is in tests/support.

mod check_scan;
mod cleanup;
mod collect_findings;
mod create_scan_rule;
mod export_report;
mod find_amis;
mod launch_instance;
mod malformed_events;
mod members;
mod start_scan;
mod tag_ami;

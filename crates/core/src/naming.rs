//! Names derived from a scan: execution names, launch client tokens and the
//! rule target's id. All pure.

use crate::model::ScanId;

/// The id of the target that every scan rule points at collect-findings'
/// queue, which wakes the waiting launch-scan execution.
pub const RULE_TARGET_ID: &str = "wake-launch-scan";

/// The target id of rules made by earlier releases (they started the report
/// machine directly); cleanup and the sweep remove both.
pub const EARLIER_RULE_TARGET_ID: &str = "report-and-cleanup";

/// The launch execution's name (Step Functions: at most 80 of `[A-Za-z0-9-_]`):
/// the scan id, so a repeated trigger on the same day finds the same execution.
pub fn execution_name(scan_id: &ScanId) -> String {
    scan_id.to_string()
}

/// The RunInstances ClientToken for one instance type of the preference list.
/// A retried launch of the same type returns the instance already launched;
/// the next type needs its own token, as EC2 rejects a token reused with other
/// parameters.
pub fn client_token(scan_id: &ScanId, type_index: usize) -> String {
    format!("amiscan-{scan_id}-{type_index}")
}

/// StartOnDemandScan's clientToken: a retried start returns the scan the
/// first start began; the one new start after `INTERNAL_ERROR` is attempt 1.
pub fn on_demand_token(scan_id: &ScanId, attempt: u32) -> String {
    format!("amiscan-{scan_id}-{attempt}")
}

/// Cuts a string to at most `max` bytes on a character boundary, marking the cut.
pub fn truncate(value: &str, max: usize) -> String {
    if value.len() <= max {
        return value.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

/// member.yaml's scanner instance profile in a Region (IAM is global, so one
/// per Region that scans instances).
pub fn member_scanner_profile(region: &str) -> String {
    format!("amiscan-scanner-{region}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn execution_names_and_tokens_fit_their_api_limits() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 9, 5, 7).unwrap();
        let id = ScanId::new(&"ami-0123456789abcdef0".parse().unwrap(), at, true);
        for name in [execution_name(&id), format!("{id}-report")] {
            assert!(name.len() <= 80);
            assert!(name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        }
        let token = client_token(&id, 3);
        assert!(token.len() <= 64 && token.is_ascii());
        assert_ne!(client_token(&id, 0), client_token(&id, 1));
        assert_eq!(client_token(&id, 0), client_token(&id, 0));
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        let long = "é".repeat(200);
        let cut = truncate(&long, 256);
        assert!(cut.len() <= 256);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short", 256), "short");
    }
}

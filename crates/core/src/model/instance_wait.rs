//! An instance scan's wait: launch-scan hands create-scan-rule its task
//! token, the scan's rule delivers Inspector's "scan complete" event with it
//! into collect-findings' queue, and the collector wakes the execution.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AccountId, Input, InstanceId, ScanContext, ScanId};
use crate::error::Error;

/// Inspector's event that an instance's first scan is done (EventBridge
/// "Inspector2 Scan", `scan-status` `INITIAL_SCAN_COMPLETE`).
pub const INSTANCE_SCAN_SOURCE: &str = "aws.inspector2";
pub const INSTANCE_SCAN_DETAIL_TYPE: &str = "Inspector2 Scan";
pub const INITIAL_SCAN_COMPLETE: &str = "INITIAL_SCAN_COMPLETE";

/// create-scan-rule's request: the scan and the token of launch-scan's
/// waiting task (`lambda:invoke.waitForTaskToken`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RuleRequest {
    pub scan: ScanContext,
    pub task_token: String,
}

impl Input for RuleRequest {
    fn check(&self) -> Result<(), Error> {
        self.scan.check_at("scan")?;
        self.scan.require_instance("scan")?;
        if self.task_token.is_empty() {
            return Err(Error::invalid("task_token", "is empty"));
        }
        Ok(())
    }
}

/// Whom the rule's delivery wakes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceWaiter {
    pub scan_id: ScanId,
    pub instance_id: InstanceId,
    pub task_token: String,
    /// The account the instance runs in, when not the collector's own (a
    /// member's, whose event comes through the hub's bus): Inspector's event
    /// must be of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<AccountId>,
}

/// What a scan rule puts in the queue: the waiter (fixed when the rule was
/// made) and Inspector's event as EventBridge delivered it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InstanceScanMessage {
    pub amiscan_instance_scan: InstanceWaiter,
    pub event: Value,
}

impl Input for InstanceScanMessage {
    fn check(&self) -> Result<(), Error> {
        let waiter = &self.amiscan_instance_scan;
        if waiter.task_token.is_empty() {
            return Err(Error::invalid(
                "amiscan_instance_scan.task_token",
                "is empty",
            ));
        }
        let event = &self.event;
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let expect = |field: &str, got: String, want: &str| {
            if got == want {
                Ok(())
            } else {
                Err(Error::invalid(
                    format!("event.{field}"),
                    format!("expected `{want}`, got `{got}`"),
                ))
            }
        };
        expect("source", text(&event["source"]), INSTANCE_SCAN_SOURCE)?;
        expect(
            "detail-type",
            text(&event["detail-type"]),
            INSTANCE_SCAN_DETAIL_TYPE,
        )?;
        expect(
            "detail.scan-status",
            text(&event["detail"]["scan-status"]),
            INITIAL_SCAN_COMPLETE,
        )?;
        expect(
            "detail.instance-id",
            text(&event["detail"]["instance-id"]),
            waiter.instance_id.as_str(),
        )
    }
}

impl InstanceScanMessage {
    /// The event's time, as EventBridge gives it.
    pub fn event_time(&self) -> Option<String> {
        self.event["time"].as_str().map(str::to_string)
    }
}

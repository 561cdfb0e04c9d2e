//! What a snapshot scan leaves in the staging folder and sends through the
//! collector's queue, besides Inspector's own events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Input, ScanContext, ScanId};
use crate::error::Error;

/// start-scan's record that an on-demand scan is amiscan's: the collector
/// stores the findings of scans that have one and ignores the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMarker {
    pub scan: ScanContext,
    /// `true` when the scan was already running (started by someone else)
    /// and amiscan attached to it instead of starting one.
    pub attached: bool,
    pub recorded_at: DateTime<Utc>,
}

/// launch-scan's message to the collector (through the queue, by Step
/// Functions' `sqs:sendMessage.waitForTaskToken`): wake me with the
/// completion of this on-demand scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaiterMessage {
    pub amiscan_waiter: Waiter,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    pub scan_id: ScanId,
    pub inspector_scan_id: String,
    pub task_token: String,
}

impl Input for WaiterMessage {
    fn check(&self) -> Result<(), Error> {
        if self.amiscan_waiter.task_token.is_empty() {
            return Err(Error::invalid("amiscan_waiter.task_token", "is empty"));
        }
        Ok(())
    }
}

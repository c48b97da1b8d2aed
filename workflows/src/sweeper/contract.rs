use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::activity_contract;

/// How often the schedule runs the sweeper.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Schedule id; one schedule per task queue, so test workers get their own.
pub fn schedule_id(task_queue: &str) -> String {
    format!("reservation-sweeper:{task_queue}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepInput {
    /// Seconds past `expires_at` before a reservation counts as abandoned.
    pub grace_secs: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepOutput {
    /// Owners whose reservations were released.
    pub released: Vec<String>,
}

activity_contract! {
    /// Releases expired reservations of owners that are not paying.
    pub ReleaseExpiredReservations = "InventoryActivities::release_expired_reservations", SweepInput => SweepOutput
}

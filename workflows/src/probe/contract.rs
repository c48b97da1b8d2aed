use serde::{Deserialize, Serialize};

/// Workflow id of a probe run; the caller picks the suffix.
pub fn workflow_id(suffix: &str) -> String {
    format!("probe:{suffix}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeInput {
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeOutput {
    pub note: String,
    /// Postgres' `version()` as the activity saw it.
    pub database: String,
}

crate::activity_contract! {
    /// Asks Postgres for its version.
    pub DatabaseVersion = "SystemActivities::database_version", () => String
}

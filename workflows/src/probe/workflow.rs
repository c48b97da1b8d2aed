use std::time::Duration;

use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

use super::contract::{DatabaseVersion, ProbeInput, ProbeOutput};

#[workflow]
#[derive(Default)]
pub struct WorkerProbeWorkflow;

#[workflow_methods]
impl WorkerProbeWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: ProbeInput) -> WorkflowResult<ProbeOutput> {
        let database = ctx.execute_activity(DatabaseVersion, (), ActivityOptions::start_to_close_timeout(Duration::from_secs(10))).await?;
        Ok(ProbeOutput { note: input.note, database })
    }
}

use std::time::Duration;

use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{LocalActivityOptions, WorkflowContext, WorkflowResult};

use super::contract::{ReleaseExpiredReservations, SweepInput, SweepOutput};

#[workflow]
#[derive(Default)]
pub struct ReservationSweeperWorkflow;

#[workflow_methods]
impl ReservationSweeperWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: SweepInput) -> WorkflowResult<SweepOutput> {
        let options = LocalActivityOptions::builder()
            .start_to_close_timeout(Duration::from_secs(30))
            .schedule_to_close_timeout(Duration::from_secs(50))
            .retry_policy(RetryPolicy::builder().initial_interval(Duration::from_secs(1)).maximum_attempts(5).build())
            .build();
        Ok(ctx.execute_local_activity(ReleaseExpiredReservations, input, options).await?)
    }
}

//! What several workflows share: the retry shapes of their steps, reading a failed step's
//! type, and handing a new order to its `OrderWorkflow`.

use std::time::Duration;

use temporalio_common::{RetryPolicy, error::IncomingError, search_attributes::SearchAttributes};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, ChildWorkflowOptions, LocalActivityOptions, ParentClosePolicy, WorkflowContext,
};

use crate::order::{
    OrderWorkflow,
    contract::{CUSTOMER_ID, ORDER_STATUS, OrderInput, OrderStatus, workflow_id},
};

/// Short database steps: local activities (no history events of their own), retried while the
/// database is unreachable. No overall limit: giving up after a commit whose answer was lost
/// would undo a sale. `final_types` are business outcomes that retrying cannot change.
pub fn database_step(final_types: &[&str]) -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(15))
        .schedule_to_close_timeout(Duration::from_secs(365 * 24 * 3600))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(200))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(10))
                .non_retryable_error_types(final_types.iter().map(|t| (*t).to_owned()))
                .build(),
        )
        .build()
}

/// A regular activity retried with doubling backoff from `initial` to `maximum` and no attempt
/// limit; `final_types` are business outcomes that retrying cannot change.
pub fn backoff_step(timeout: Duration, initial: Duration, maximum: Duration, final_types: &[&str]) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(timeout)
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(initial)
                .backoff_coefficient(2.0)
                .maximum_interval(maximum)
                .non_retryable_error_types(final_types.iter().map(|t| (*t).to_owned()))
                .build(),
        )
        .build()
}

/// The charge talks to the payment provider: a real activity, retried with backoff until the
/// provider answers (declines are answers). No overall limit: giving up while the provider may
/// have charged would leave money without an order; the idempotency key makes every retry the
/// same charge.
pub fn charge_step() -> ActivityOptions {
    backoff_step(Duration::from_secs(30), Duration::from_millis(500), Duration::from_secs(10), &[])
}

/// A refund must happen: retried with backoff (1 s doubling to 60 s) without limit.
pub fn refund_step(final_types: &[&str]) -> ActivityOptions {
    backoff_step(Duration::from_secs(30), Duration::from_secs(1), Duration::from_secs(60), final_types)
}

/// The application failure type of a failed step. A regular activity's failure arrives as the
/// cause of an activity failure; a local activity's failure is the application failure itself.
pub fn failure_type(err: &ActivityExecutionError) -> String {
    if let Some(IncomingError::Application(app)) = err.cause() {
        return app.type_name().unwrap_or("activity_failed").to_owned();
    }
    if let Some(info) = err.failure().and_then(|f| f.maybe_application_failure()).filter(|i| !i.r#type.is_empty()) {
        return info.r#type.clone();
    }
    format!("activity_failed: {}", err.failure().map_or_else(|| err.to_string(), |f| f.message.clone()))
}

/// Starts the order's own workflow as a child that outlives its parent (shipping, cancellation,
/// returns, notifications). An error is reported, never a reason to undo the order.
pub async fn start_order_workflow<W>(ctx: &WorkflowContext<W>, input: OrderInput) -> Result<(), String> {
    let options = ChildWorkflowOptions::builder()
        .workflow_id(workflow_id(&input.order_id))
        .parent_close_policy(ParentClosePolicy::Abandon)
        .search_attributes(SearchAttributes::new([
            CUSTOMER_ID.value_set(input.user_id.clone()),
            ORDER_STATUS.value_set(OrderStatus::Placed.as_str().to_owned()),
        ]))
        .build();
    ctx.start_child_workflow(OrderWorkflow::run, input, options).await.map(|_| ()).map_err(|e| format!("order workflow not started: {e}"))
}

//! The API side of checkout: starts, asks and messages `CheckoutWorkflow`s.

use std::time::Duration;

use sea_orm::DatabaseConnection;
use temporalio_client::{
    WorkflowExecuteUpdateOptions, WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowQueryOptions, WorkflowSignalOptions,
    WorkflowStartOptions,
    errors::{WorkflowQueryError, WorkflowStartError, WorkflowUpdateError},
};
use temporalio_common::search_attributes::SearchAttributes;
use uuid::Uuid;

use emporium_entities::store::checkouts;

use emporium_workflows::checkout::{
    CheckoutWorkflow,
    contract::{
        CHECKOUT_STATUS, CUSTOMER_ID, CheckoutInput, CheckoutStage, CheckoutView, PaymentOutcome, PaymentRequest, REFUSAL_CANCELLED,
        REFUSAL_CLOSED, REFUSAL_EXPIRED, REFUSAL_NOT_READY, workflow_id,
    },
};

use crate::{
    error::{ApiError, ApiResult, ErrorCode},
    state::TemporalGateway,
};

/// Namespace of checkout ids derived from idempotency keys.
const IDEMPOTENT_CHECKOUT_IDS: Uuid = Uuid::from_u128(0x6d1f_0c5e_93a4_4b8e_9f1d_2c7a_5e3b_8a10);

#[derive(Clone)]
pub struct Checkouts {
    db: DatabaseConnection,
    temporal: TemporalGateway,
    task_queue: String,
    reservation: Duration,
    return_window: Duration,
}

fn temporal_down(err: impl Into<anyhow::Error>) -> ApiError {
    ApiError::unavailable("the workflow service", err)
}

fn not_found(checkout_id: Uuid) -> ApiError {
    ApiError::new(ErrorCode::CheckoutNotFound, format!("checkout {checkout_id} does not exist"))
}

/// The checkout id for a request: derived from the user and their `Idempotency-Key`, so a
/// retried POST finds the same checkout; random without a key.
pub fn checkout_id_for(user: Uuid, idempotency_key: Option<&str>) -> Uuid {
    match idempotency_key {
        Some(key) => Uuid::new_v5(&IDEMPOTENT_CHECKOUT_IDS, format!("{user}:{key}").as_bytes()),
        None => Uuid::now_v7(),
    }
}

impl Checkouts {
    pub fn new(
        db: DatabaseConnection,
        temporal: TemporalGateway,
        task_queue: String,
        reservation: Duration,
        return_window: Duration,
    ) -> Self {
        Self { db, temporal, task_queue, reservation, return_window }
    }

    /// Starts (or finds) the checkout and answers once its stock is reserved or refused.
    pub async fn start(&self, user: Uuid, checkout_id: Uuid) -> ApiResult<CheckoutView> {
        let client = self.temporal.client().await.map_err(temporal_down)?;
        let id = workflow_id(&checkout_id.to_string());
        let input = CheckoutInput {
            checkout_id: checkout_id.to_string(),
            user_id: user.to_string(),
            reservation_timeout_secs: self.reservation.as_secs().max(1),
            return_window_secs: Some(self.return_window.as_secs()),
        };
        let options = WorkflowStartOptions::new(self.task_queue.clone(), id.clone())
            .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
            .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
            .search_attributes(SearchAttributes::new([
                CUSTOMER_ID.value_set(user.to_string()),
                CHECKOUT_STATUS.value_set(CheckoutStage::Reserving.as_str().to_owned()),
            ]))
            .build();
        match client.start_workflow(CheckoutWorkflow::run, input, options).await {
            Ok(_) => {}
            // closed already (a retried request after the checkout ended): report where it is
            Err(WorkflowStartError::AlreadyStarted { .. }) => return self.status(user, checkout_id).await,
            Err(err) => return Err(temporal_down(err)),
        }
        let handle = client.get_workflow_handle::<CheckoutWorkflow>(id);
        let view = match handle.execute_update(CheckoutWorkflow::reservation, (), WorkflowExecuteUpdateOptions::default()).await {
            Ok(view) => view,
            Err(WorkflowUpdateError::NotFound(_)) => return self.status(user, checkout_id).await,
            Err(err) => return Err(temporal_down(err)),
        };
        owned_by(view, user, checkout_id)
    }

    /// The checkout as the workflow sees it; 404 for another user's.
    pub async fn status(&self, user: Uuid, checkout_id: Uuid) -> ApiResult<CheckoutView> {
        let client = self.temporal.client().await.map_err(temporal_down)?;
        let handle = client.get_workflow_handle::<CheckoutWorkflow>(workflow_id(&checkout_id.to_string()));
        match handle.query(CheckoutWorkflow::status, (), WorkflowQueryOptions::default()).await {
            Ok(view) => owned_by(view, user, checkout_id),
            Err(WorkflowQueryError::NotFound(_)) => Err(not_found(checkout_id)),
            Err(err) => Err(temporal_down(err)),
        }
    }

    /// Pays; the answer is the workflow's. The update id is fixed per checkout, so a repeated
    /// submission is the same update and gets the same answer.
    pub async fn pay(&self, user: Uuid, checkout_id: Uuid, request: PaymentRequest) -> ApiResult<PaymentOutcome> {
        // Ownership first: the update must not run for someone else's checkout. A reserved
        // checkout is recorded in Postgres, which answers faster than a workflow query.
        match checkouts::find(&self.db, checkout_id).await? {
            Some(record) if record.user_id == user => {}
            Some(_) => return Err(not_found(checkout_id)),
            None => {
                self.status(user, checkout_id).await?;
            }
        }
        let client = self.temporal.client().await.map_err(temporal_down)?;
        let handle = client.get_workflow_handle::<CheckoutWorkflow>(workflow_id(&checkout_id.to_string()));
        let options = WorkflowExecuteUpdateOptions::builder().update_id(format!("payment:{checkout_id}")).build();
        match handle.execute_update(CheckoutWorkflow::submit_payment, request, options).await {
            Ok(outcome) => Ok(outcome),
            Err(WorkflowUpdateError::Failed(failure)) => Err(refusal(&failure.message)),
            Err(WorkflowUpdateError::NotFound(_)) => {
                // the workflow has closed: answer from its final state
                let view = self.status(user, checkout_id).await?;
                Err(closed(&view))
            }
            Err(err) => Err(temporal_down(err)),
        }
    }

    /// Asks the checkout to cancel (honoured while it waits for payment).
    pub async fn cancel(&self, user: Uuid, checkout_id: Uuid) -> ApiResult<CheckoutView> {
        let view = self.status(user, checkout_id).await?;
        if view.stage.is_terminal() || view.stage == CheckoutStage::Paying {
            return Err(closed(&view));
        }
        let client = self.temporal.client().await.map_err(temporal_down)?;
        let handle = client.get_workflow_handle::<CheckoutWorkflow>(workflow_id(&checkout_id.to_string()));
        handle.signal(CheckoutWorkflow::cancel, (), WorkflowSignalOptions::default()).await.map_err(temporal_down)?;
        Ok(view)
    }
}

fn owned_by(view: CheckoutView, user: Uuid, checkout_id: Uuid) -> ApiResult<CheckoutView> {
    if view.user_id == user.to_string() { Ok(view) } else { Err(not_found(checkout_id)) }
}

/// The error for a checkout that can no longer be paid or cancelled.
pub fn closed(view: &CheckoutView) -> ApiError {
    match view.stage {
        CheckoutStage::Expired => refusal(REFUSAL_EXPIRED),
        CheckoutStage::Cancelled => refusal(REFUSAL_CANCELLED),
        CheckoutStage::Paying => ApiError::new(ErrorCode::CheckoutClosed, "the checkout is being paid"),
        _ => ApiError::new(ErrorCode::CheckoutClosed, format!("the checkout has ended ({})", view.stage.as_str())),
    }
}

fn refusal(code: &str) -> ApiError {
    match code {
        REFUSAL_EXPIRED => ApiError::new(ErrorCode::CheckoutExpired, "the reservation expired; start a new checkout"),
        REFUSAL_CANCELLED => ApiError::new(ErrorCode::CheckoutCancelled, "the checkout was cancelled"),
        REFUSAL_NOT_READY => ApiError::new(ErrorCode::CheckoutNotReady, "the checkout is still reserving stock"),
        REFUSAL_CLOSED => ApiError::new(ErrorCode::CheckoutClosed, "the checkout has ended"),
        other => ApiError::internal(anyhow::anyhow!("unexpected update refusal: {other}")),
    }
}

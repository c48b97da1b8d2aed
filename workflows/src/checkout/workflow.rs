use std::time::{Duration, UNIX_EPOCH};

use futures::FutureExt;
use temporalio_common::error::IncomingError;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityExecutionError, LocalActivityOptions, SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult,
    workflows::select,
};

use super::{contract::*, saga::Saga};
use crate::{
    order::contract::{DEFAULT_RETURN_WINDOW_SECS, OrderInput, OrderLine},
    steps,
};

type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// The checkout saga: reserve → wait for payment, cancel or expiry → charge → order → notify.
#[workflow]
#[derive(Default)]
pub struct CheckoutWorkflow {
    view: CheckoutView,
    payment: Option<PaymentRequest>,
    cancel_requested: bool,
    /// Set once the payment attempt (or the checkout) has an answer for waiting updates.
    outcome: Option<PaymentOutcome>,
}

fn database_step() -> LocalActivityOptions {
    steps::database_step(&[OUT_OF_STOCK, CART_EMPTY, RESERVATION_LOST])
}

/// The application failure type and its `Vec<Shortage>` details, if any. A regular activity's
/// failure arrives as the cause of an activity failure; a local activity's failure is the
/// application failure itself.
fn failure_of(err: &ActivityExecutionError) -> (String, Vec<Shortage>) {
    let details = match err.cause() {
        Some(IncomingError::Application(app)) => app.details::<Vec<Shortage>>().ok().flatten(),
        _ => err
            .failure()
            .and_then(|f| f.maybe_application_failure())
            .and_then(|info| info.details.as_ref())
            .and_then(|d| d.payloads.first())
            .and_then(|p| serde_json::from_slice(&p.data).ok()),
    };
    (steps::failure_type(err), details.unwrap_or_default())
}

fn set_stage(ctx: &WorkflowContext<CheckoutWorkflow>, stage: CheckoutStage) {
    ctx.state_mut(|s| s.view.stage = stage);
    ctx.upsert_search_attributes([CHECKOUT_STATUS.value_set(stage.as_str().to_owned())]);
}

/// Ends the checkout without an order: stage, answer for waiting updates, then compensations.
async fn abandon(
    ctx: &WorkflowContext<CheckoutWorkflow>,
    saga: &mut Saga,
    stage: CheckoutStage,
    outcome: PaymentOutcome,
    failure: Option<String>,
) {
    set_stage(ctx, stage);
    ctx.state_mut(|s| {
        s.view.failure = failure;
        s.outcome = Some(outcome);
    });
    for (step, err) in saga.compensate().await {
        // Each compensation retries on its own; reaching here means it gave up. The sweeper
        // still returns stock of an abandoned reservation.
        ctx.state_mut(|s| s.view.failure = Some(format!("{step} compensation failed: {err}")));
    }
}

#[workflow_methods]
impl CheckoutWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: CheckoutInput) -> WorkflowResult<CheckoutView> {
        let owner = workflow_id(&input.checkout_id);
        let now = ctx.workflow_time().unwrap_or(UNIX_EPOCH);
        let reserved_until_ms =
            (now + Duration::from_secs(input.reservation_timeout_secs)).duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        ctx.state_mut(|s| {
            s.view.checkout_id = input.checkout_id.clone();
            s.view.user_id = input.user_id.clone();
            s.view.reserved_until_ms = reserved_until_ms;
        });
        let mut saga = Saga::default();

        // Recorded before reserving: a reserve whose answer was lost may still hold stock, and
        // releasing stock that is not held changes nothing.
        let release_ctx = ctx.clone();
        let release_owner = owner.clone();
        let checkout_id = input.checkout_id.clone();
        saga.push(
            "release_stock",
            async move {
                let (stage, failure) = release_ctx.state(|s| (s.view.stage, s.view.failure.clone()));
                let input = ReleaseInput { checkout_id, owner: release_owner, stage, failure };
                release_ctx.execute_local_activity(ReleaseStock, input, database_step()).await.map_err(|e| e.to_string())
            }
            .boxed_local(),
        );
        // 1–2. price the cart and reserve every line, all or nothing
        let reserve = ReserveCheckoutInput {
            checkout_id: input.checkout_id.clone(),
            user_id: input.user_id.clone(),
            owner: owner.clone(),
            reserved_until_ms,
        };
        match ctx.execute_local_activity(ReserveCheckout, reserve, database_step()).await {
            Ok(reserved) => ctx.state_mut(|s| {
                s.view.lines = reserved.lines;
                s.view.totals = reserved.totals;
            }),
            Err(err) => {
                let (kind, shortages) = failure_of(&err);
                let stage = match kind.as_str() {
                    OUT_OF_STOCK => CheckoutStage::OutOfStock,
                    CART_EMPTY => CheckoutStage::CartEmpty,
                    _ => CheckoutStage::Failed,
                };
                ctx.state_mut(|s| s.view.shortages = shortages);
                abandon(ctx, &mut saga, stage, PaymentOutcome::Failed { reason: kind.clone() }, Some(kind)).await;
                return Self::finish(ctx).await;
            }
        }
        set_stage(ctx, CheckoutStage::AwaitingPayment);

        // 3. whichever comes first: payment, cancellation, or the reservation running out
        let now_ms = ctx.workflow_time().unwrap_or(UNIX_EPOCH).duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let timeout = Duration::from_millis(reserved_until_ms.saturating_sub(now_ms).max(1));
        // A Temporal cancellation of the workflow counts as the shopper cancelling: the stock
        // still has to go back.
        let expired = select! {
            woke = ctx.wait_condition(|s| s.payment.is_some() || s.cancel_requested) => {
                if woke.is_err() { ctx.state_mut(|s| s.cancel_requested = true); }
                false
            }
            _ = ctx.timer(timeout) => true,
        };
        let payment = ctx.state(|s| s.payment.clone());
        let payment = match payment {
            Some(payment) => payment,
            None if expired => {
                abandon(ctx, &mut saga, CheckoutStage::Expired, PaymentOutcome::Expired, None).await;
                return Self::finish(ctx).await;
            }
            None => {
                abandon(ctx, &mut saga, CheckoutStage::Cancelled, PaymentOutcome::Cancelled, None).await;
                return Self::finish(ctx).await;
            }
        };

        // 4. charge
        set_stage(ctx, CheckoutStage::Paying);
        let totals = ctx.state(|s| s.view.totals.clone());
        let charge = ChargeInput {
            checkout_id: input.checkout_id.clone(),
            idempotency_key: charge_key(&input.checkout_id),
            amount_minor: totals.total_minor,
            currency: totals.currency.clone(),
            payment_method: payment.payment_method.clone(),
            flash_claim_id: None,
        };
        let payment_id = match ctx.execute_activity(ChargePayment, charge, steps::charge_step()).await {
            Ok(ChargeResult::Charged { payment_id }) => payment_id,
            Ok(ChargeResult::Declined { code, message }) => {
                let outcome = PaymentOutcome::Declined { code: code.clone(), message };
                abandon(ctx, &mut saga, CheckoutStage::Declined, outcome, Some(code)).await;
                return Self::finish(ctx).await;
            }
            Err(err) => {
                let (reason, _) = failure_of(&err);
                if reason == RESERVATION_LOST {
                    // the sweeper ended the reservation just before the charge: nothing charged
                    abandon(ctx, &mut saga, CheckoutStage::Expired, PaymentOutcome::Expired, None).await;
                } else {
                    let outcome = PaymentOutcome::Failed { reason: reason.clone() };
                    abandon(ctx, &mut saga, CheckoutStage::Failed, outcome, Some(reason)).await;
                }
                return Self::finish(ctx).await;
            }
        };
        let refund_ctx = ctx.clone();
        let refund = RefundInput {
            payment_id: payment_id.clone(),
            idempotency_key: refund_key(&input.checkout_id),
            reason: "checkout_failed".to_owned(),
            amount_minor: None,
        };
        saga.push(
            "refund_payment",
            async move { refund_ctx.execute_activity(RefundPayment, refund, steps::refund_step(&[])).await.map_err(|e| e.to_string()) }
                .boxed_local(),
        );

        // 5–6. order + confirm reservations + clear the bought units from the cart, one step
        let create = CreateOrderInput {
            checkout_id: input.checkout_id.clone(),
            user_id: input.user_id.clone(),
            owner,
            payment_id,
            lines: ctx.state(|s| s.view.lines.clone()),
            totals: totals.clone(),
            shipping_address: payment.shipping_address,
        };
        let order = match ctx.execute_local_activity(CreateOrder, create, database_step()).await {
            Ok(order) => order,
            Err(err) => {
                let (reason, _) = failure_of(&err);
                let outcome = PaymentOutcome::Failed { reason: reason.clone() };
                abandon(ctx, &mut saga, CheckoutStage::Failed, outcome, Some(reason)).await;
                return Self::finish(ctx).await;
            }
        };
        saga.commit();
        set_stage(ctx, CheckoutStage::Completed);
        ctx.state_mut(|s| {
            s.view.order = Some(order.clone());
            s.outcome = Some(PaymentOutcome::Paid { order: order.clone() });
        });

        // The order's own workflow takes over from here (shipping, cancellation, returns,
        // notifications, starting with the confirmation queued with the order). It outlives the
        // checkout; failing to start it never undoes the order.
        let order_input = OrderInput {
            order_id: order.order_id.clone(),
            user_id: input.user_id.clone(),
            payment_id: order.payment_id.clone(),
            lines: ctx.state(|s| {
                s.view
                    .lines
                    .iter()
                    .map(|l| OrderLine { product_id: l.product_id, quantity: l.quantity, unit_price_minor: l.unit_price_minor })
                    .collect()
            }),
            totals,
            return_window_secs: input.return_window_secs.unwrap_or(DEFAULT_RETURN_WINDOW_SECS),
        };
        if let Err(failure) = steps::start_order_workflow(ctx, order_input).await {
            ctx.state_mut(|s| s.view.failure = Some(failure));
        }
        Self::finish(ctx).await
    }

    /// Lets in-flight update handlers answer before the workflow closes.
    async fn finish(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<CheckoutView> {
        let handlers = ctx.clone();
        ctx.wait_condition(move |_| handlers.all_handlers_finished()).await?;
        Ok(ctx.state(|s| s.view.clone()))
    }

    /// The shopper gives up; honoured while the checkout waits for payment.
    #[signal(name = "cancel")]
    pub fn cancel(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _input: ()) {
        if matches!(self.view.stage, CheckoutStage::Reserving | CheckoutStage::AwaitingPayment) && self.payment.is_none() {
            self.cancel_requested = true;
        }
    }

    #[query(name = "status")]
    pub fn status(&self, _ctx: &WorkflowContextView) -> CheckoutView {
        self.view.clone()
    }

    /// Answers once the stock is reserved (or could not be).
    #[update(name = "reservation")]
    pub async fn reservation(ctx: &mut WorkflowContext<Self>, _input: ()) -> Result<CheckoutView, HandlerError> {
        ctx.wait_condition(|s| s.view.stage != CheckoutStage::Reserving).await?;
        Ok(ctx.state(|s| s.view.clone()))
    }

    #[update_validator(submit_payment)]
    fn validate_submit_payment(&self, _ctx: &WorkflowContextView, _input: &PaymentRequest) -> Result<(), HandlerError> {
        let refusal = match self.view.stage {
            CheckoutStage::Reserving => Some(REFUSAL_NOT_READY),
            CheckoutStage::AwaitingPayment if self.cancel_requested => Some(REFUSAL_CANCELLED),
            CheckoutStage::Expired => Some(REFUSAL_EXPIRED),
            CheckoutStage::Cancelled => Some(REFUSAL_CANCELLED),
            CheckoutStage::OutOfStock | CheckoutStage::CartEmpty => Some(REFUSAL_CLOSED),
            // waiting, paying, or done: the handler answers with the (first) outcome
            _ => None,
        };
        match refusal {
            Some(code) => Err(code.into()),
            None => Ok(()),
        }
    }

    /// Pays for the checkout and answers with the order or why there is none. A second
    /// submission gets the answer of the first: there is one charge per checkout.
    #[update(name = "submit_payment")]
    pub async fn submit_payment(ctx: &mut WorkflowContext<Self>, input: PaymentRequest) -> Result<PaymentOutcome, HandlerError> {
        ctx.state_mut(|s| {
            if s.payment.is_none() && s.view.stage == CheckoutStage::AwaitingPayment {
                s.payment = Some(input);
            }
        });
        ctx.wait_condition(|s| s.outcome.is_some()).await?;
        Ok(ctx.state(|s| s.outcome.clone()).unwrap_or(PaymentOutcome::Failed { reason: "no outcome".to_owned() }))
    }
}

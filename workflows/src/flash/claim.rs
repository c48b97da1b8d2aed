use std::time::{Duration, UNIX_EPOCH};

use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{LocalActivityOptions, WorkflowContext, WorkflowContextView, WorkflowResult, workflows::select};

use super::contract::*;
use crate::{
    checkout::contract::{ChargeInput, ChargePayment, ChargeResult, RefundInput, RefundPayment},
    order::contract::{OrderInput, OrderLine, Totals},
    steps,
};

type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// One won unit: held until the buyer pays (a workflow update, answered with the order) or the
/// claim expires, when the unit goes back to the counter for the next buyer. Paying charges
/// and creates the order with the same activities as a checkout.
#[workflow]
#[derive(Default)]
pub struct FlashSaleClaimWorkflow {
    view: ClaimView,
    return_window_secs: u64,
    payment: Option<PaymentRequest>,
    outcome: Option<PaymentOutcome>,
}

fn database_step() -> LocalActivityOptions {
    steps::database_step(&["invalid_input", "claim_not_found"])
}

fn claim_ref(view: &ClaimView) -> ClaimRef {
    ClaimRef { sale_id: view.sale_id.clone(), user_id: view.user_id.clone(), claim_id: view.claim_id.clone() }
}

/// Ends the claim without an order: its unit goes back, waiting updates get `outcome`.
async fn release(
    ctx: &WorkflowContext<FlashSaleClaimWorkflow>,
    stage: ClaimStage,
    outcome: PaymentOutcome,
    even_paying: bool,
) -> WorkflowResult<()> {
    let claim = ctx.state(|s| claim_ref(&s.view));
    ctx.execute_local_activity(ReleaseClaim, ReleaseClaimInput { claim, even_paying }, database_step()).await?;
    ctx.state_mut(|s| {
        s.view.stage = stage;
        s.outcome = Some(outcome);
    });
    Ok(())
}

#[workflow_methods]
impl FlashSaleClaimWorkflow {
    /// The claim as won. Set here, before any handler runs: a payment can arrive with the
    /// workflow's first task, ahead of `run` (see `OrderWorkflow::new`).
    #[init]
    pub fn new(_ctx: &WorkflowContextView, input: ClaimInput) -> Self {
        Self {
            view: ClaimView {
                claim_id: input.claim_id,
                sale_id: input.sale_id,
                user_id: input.user_id,
                stage: ClaimStage::Held,
                expires_at_ms: input.expires_at_ms,
                order: None,
                failure: None,
            },
            return_window_secs: input.return_window_secs,
            ..Self::default()
        }
    }

    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<ClaimView> {
        let (claim_id, user_id, expires_at_ms, return_window_secs) =
            ctx.state(|s| (s.view.claim_id.clone(), s.view.user_id.clone(), s.view.expires_at_ms, s.return_window_secs));
        let now = ctx.workflow_time().unwrap_or(UNIX_EPOCH).duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let hold = Duration::from_millis(expires_at_ms.saturating_sub(now).max(1));
        let expired = select! {
            _ = ctx.wait_condition(|s| s.payment.is_some()) => false,
            _ = ctx.timer(hold) => true,
        };
        let payment = ctx.state(|s| s.payment.clone());
        let Some(payment) = payment.filter(|_| !expired) else {
            release(ctx, ClaimStage::Expired, PaymentOutcome::Expired, false).await?;
            return Self::finish(ctx).await;
        };

        ctx.state_mut(|s| s.view.stage = ClaimStage::Paying);
        let claim = ctx.state(|s| claim_ref(&s.view));
        let purchase = match ctx.execute_local_activity(BeginClaimPayment, claim.clone(), database_step()).await? {
            BeginPayment::Ready { purchase } => purchase,
            BeginPayment::Expired => {
                release(ctx, ClaimStage::Expired, PaymentOutcome::Expired, false).await?;
                return Self::finish(ctx).await;
            }
        };
        let charge = ChargeInput {
            checkout_id: String::new(),
            idempotency_key: charge_key(&claim_id),
            amount_minor: purchase.total_minor,
            currency: purchase.currency.clone(),
            payment_method: payment.payment_method.clone(),
            flash_claim_id: Some(claim_id.clone()),
        };
        let payment_id = match ctx.execute_activity(ChargePayment, charge, steps::charge_step()).await {
            Ok(ChargeResult::Charged { payment_id }) => payment_id,
            Ok(ChargeResult::Declined { code, message }) => {
                ctx.state_mut(|s| s.view.failure = Some(code.clone()));
                release(ctx, ClaimStage::Declined, PaymentOutcome::Declined { code, message }, true).await?;
                return Self::finish(ctx).await;
            }
            Err(err) => {
                let reason = steps::failure_type(&err);
                ctx.state_mut(|s| s.view.failure = Some(reason.clone()));
                release(ctx, ClaimStage::Failed, PaymentOutcome::Failed { reason }, true).await?;
                return Self::finish(ctx).await;
            }
        };
        let create = CreateClaimOrderInput {
            claim: claim.clone(),
            payment_id: payment_id.clone(),
            purchase: purchase.clone(),
            shipping_address: payment.shipping_address,
        };
        let order = match ctx.execute_local_activity(CreateClaimOrder, create, database_step()).await {
            Ok(order) => order,
            Err(err) => {
                // charged but no order: refund, then the unit goes back
                let reason = steps::failure_type(&err);
                let refund = RefundInput {
                    payment_id,
                    idempotency_key: refund_key(&claim_id),
                    reason: "claim_order_failed".to_owned(),
                    amount_minor: None,
                };
                ctx.execute_activity(RefundPayment, refund, steps::refund_step(&[])).await?;
                ctx.state_mut(|s| s.view.failure = Some(reason.clone()));
                release(ctx, ClaimStage::Failed, PaymentOutcome::Failed { reason }, true).await?;
                return Self::finish(ctx).await;
            }
        };
        ctx.state_mut(|s| {
            s.view.stage = ClaimStage::Paid;
            s.view.order = Some(order.clone());
            s.outcome = Some(PaymentOutcome::Paid { order: order.clone() });
        });

        // the order's own workflow takes over, as after a checkout
        let order_input = OrderInput {
            order_id: order.order_id.clone(),
            user_id: user_id.clone(),
            payment_id: order.payment_id.clone(),
            lines: vec![OrderLine {
                product_id: purchase.product_id,
                quantity: purchase.quantity,
                unit_price_minor: purchase.unit_price_minor,
            }],
            totals: Totals {
                currency: purchase.currency,
                subtotal_minor: purchase.subtotal_minor,
                tax_minor: purchase.tax_minor,
                shipping_minor: purchase.shipping_minor,
                total_minor: purchase.total_minor,
            },
            return_window_secs,
        };
        if let Err(failure) = steps::start_order_workflow(ctx, order_input).await {
            ctx.state_mut(|s| s.view.failure = Some(failure));
        }
        Self::finish(ctx).await
    }

    async fn finish(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<ClaimView> {
        let handlers = ctx.clone();
        ctx.wait_condition(move |_| handlers.all_handlers_finished()).await?;
        Ok(ctx.state(|s| s.view.clone()))
    }

    #[query(name = "status")]
    pub fn status(&self, _ctx: &WorkflowContextView) -> ClaimView {
        self.view.clone()
    }

    #[update_validator(submit_payment)]
    fn validate_submit_payment(&self, _ctx: &WorkflowContextView, input: &ClaimPayment) -> Result<(), HandlerError> {
        if input.claim_id.as_ref().is_some_and(|id| *id != self.view.claim_id) {
            // for an earlier claim of this buyer, which has expired
            return Err(REFUSAL_CLAIM_EXPIRED.into());
        }
        match self.view.stage {
            ClaimStage::Expired => Err(REFUSAL_CLAIM_EXPIRED.into()),
            ClaimStage::Held | ClaimStage::Paying | ClaimStage::Paid => Ok(()),
            _ if self.outcome.is_some() => Ok(()),
            _ => Err(REFUSAL_CLAIM_CLOSED.into()),
        }
    }

    /// Pays for the claimed unit; a second submission gets the answer of the first.
    #[update(name = "submit_payment")]
    pub async fn submit_payment(ctx: &mut WorkflowContext<Self>, input: ClaimPayment) -> Result<PaymentOutcome, HandlerError> {
        ctx.state_mut(|s| {
            if s.payment.is_none() && s.view.stage == ClaimStage::Held {
                s.payment = Some(input.request);
            }
        });
        ctx.wait_condition(|s| s.outcome.is_some()).await?;
        Ok(ctx.state(|s| s.outcome.clone()).unwrap_or(PaymentOutcome::Failed { reason: "no outcome".to_owned() }))
    }
}

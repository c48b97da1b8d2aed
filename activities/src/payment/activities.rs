use std::sync::Arc;

use sea_orm::{DatabaseConnection, TransactionTrait};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use uuid::Uuid;

use emporium_entities::store::{
    checkouts,
    payments::{self, Purchase},
};
use emporium_workflows::checkout::contract::{ChargeInput, ChargeResult, RESERVATION_LOST, RefundInput};

use super::{ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway, RefundRequest};
use crate::business_failure;

/// Charges and refunds through the configured gateway, keeping our ledger in `payments`.
pub struct PaymentActivities {
    db: DatabaseConnection,
    gateway: Arc<dyn PaymentGateway>,
}

impl PaymentActivities {
    pub fn new(db: DatabaseConnection, gateway: Arc<dyn PaymentGateway>) -> Self {
        Self { db, gateway }
    }
}

#[activities]
impl PaymentActivities {
    /// Implements `ChargePayment`.
    #[activity]
    pub async fn charge_payment(self: Arc<Self>, _ctx: ActivityContext, input: ChargeInput) -> Result<ChargeResult, ActivityError> {
        self.charge_payment_now(input).await
    }

    /// Implements `RefundPayment`.
    #[activity]
    pub async fn refund_payment(self: Arc<Self>, _ctx: ActivityContext, input: RefundInput) -> Result<(), ActivityError> {
        self.refund_payment_now(input).await
    }
}

impl PaymentActivities {
    /// The work of `charge_payment`, callable without Temporal (the benchmark runs the saga this way).
    pub async fn charge_payment_now(&self, input: ChargeInput) -> Result<ChargeResult, ActivityError> {
        let parse = |raw: &str| Uuid::parse_str(raw).map_err(|e| business_failure("invalid_input", e.to_string(), None::<()>));
        let purchase = match &input.flash_claim_id {
            // the claim is PAYING already (BeginClaimPayment), so its expiry cannot race this
            Some(claim_id) => Purchase::FlashClaim(parse(claim_id)?),
            None => {
                let checkout_id = parse(&input.checkout_id)?;
                let payment_exists = payments::find_by_key(&self.db, &input.idempotency_key).await?.is_some();
                // The sweeper and this step serialise on the checkout's status: once it has
                // expired the stock may be sold to someone else, so there must be no charge.
                if !payment_exists && !checkouts::start_paying(&self.db, checkout_id).await? {
                    return Err(business_failure(RESERVATION_LOST, "the checkout no longer holds its stock".to_owned(), None::<()>));
                }
                Purchase::Checkout(checkout_id)
            }
        };
        let payment =
            payments::begin_charge(&self.db, &input.idempotency_key, purchase, input.amount_minor, &input.currency, self.gateway.name())
                .await?;
        match payment.status.as_str() {
            "COMPLETED" | "REFUNDED" | "PARTIALLY_REFUNDED" => return Ok(ChargeResult::Charged { payment_id: payment.id.to_string() }),
            "FAILED" => {
                return Ok(ChargeResult::Declined {
                    code: payment.failure_code.unwrap_or_default(),
                    message: payment.failure_message.unwrap_or_default(),
                });
            }
            _ => {}
        }
        let request = ChargeRequest {
            idempotency_key: input.idempotency_key.clone(),
            amount_minor: input.amount_minor,
            currency: input.currency.clone(),
            payment_method: input.payment_method.clone(),
            description: match &input.flash_claim_id {
                Some(claim_id) => format!("Emporium flash sale claim {claim_id}"),
                None => format!("Emporium checkout {}", input.checkout_id),
            },
        };
        match self.gateway.charge(&request).await {
            Ok(ChargeOutcome::Succeeded { reference }) => {
                payments::mark_completed(&self.db, payment.id, &reference).await?;
                tracing::info!(checkout_id = %input.checkout_id, payment_id = %payment.id, "payment charged");
                Ok(ChargeResult::Charged { payment_id: payment.id.to_string() })
            }
            Ok(ChargeOutcome::Declined { code, message }) => {
                payments::mark_failed(&self.db, payment.id, &code, &message).await?;
                tracing::info!(checkout_id = %input.checkout_id, code, "payment declined");
                Ok(ChargeResult::Declined { code, message })
            }
            Err(GatewayError::Rejected(reason)) => {
                payments::mark_failed(&self.db, payment.id, "gateway_rejected", &reason).await?;
                Ok(ChargeResult::Declined { code: "gateway_rejected".to_owned(), message: reason })
            }
            Err(err @ GatewayError::Transient(_)) => {
                tracing::warn!(checkout_id = %input.checkout_id, error = %err, "charge failed transiently; will retry");
                Err(err.into())
            }
        }
    }

    /// The work of `refund_payment`, callable without Temporal (the benchmark runs the saga this way).
    pub async fn refund_payment_now(&self, input: RefundInput) -> Result<(), ActivityError> {
        let payment_id = Uuid::parse_str(&input.payment_id).map_err(|e| business_failure("invalid_input", e.to_string(), None::<()>))?;
        let Some(payment) = payments::find(&self.db, payment_id).await? else {
            return Err(business_failure("payment_not_found", format!("payment {payment_id} does not exist"), None::<()>));
        };
        // A retry after a commit whose answer was lost: this refund is recorded already.
        if payments::refund_recorded(&self.db, &input.idempotency_key).await? {
            return Ok(());
        }
        let remaining = payment.amount_minor - payment.refunded_minor;
        let amount = input.amount_minor.map_or(remaining, |wanted| wanted.min(remaining));
        let Some(reference) = payment.gateway_reference.filter(|_| payment.status == "COMPLETED" || payment.status == "PARTIALLY_REFUNDED")
        else {
            return Ok(()); // nothing was charged, or it is refunded already
        };
        if amount <= 0 {
            return Ok(());
        }
        let request = RefundRequest {
            idempotency_key: input.idempotency_key.clone(),
            charge_reference: reference,
            amount_minor: amount,
            currency: payment.currency.clone(),
        };
        let refund_reference = self.gateway.refund(&request).await?;
        let tx = self.db.begin().await?;
        payments::record_refund(&tx, payment_id, &input.idempotency_key, amount, &payment.currency, &input.reason, &refund_reference)
            .await?;
        tx.commit().await?;
        tracing::info!(payment_id = %payment_id, amount, "payment refunded");
        Ok(())
    }
}

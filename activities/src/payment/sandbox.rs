//! A gateway that behaves like Stripe test mode and keeps its ledger in Postgres:
//! `pm_card_visa` succeeds, `pm_card_chargeDeclined` is declined, `pm_card_processingError`
//! fails transiently on its first two attempts and then succeeds, `pm_card_refundProcessingError`
//! charges but each of its refunds fails transiently three times before it succeeds, and a
//! repeated idempotency key returns the first result without charging again.

use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, FromQueryResult, Statement, TransactionTrait, Value};
use uuid::Uuid;

use super::{ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway, RefundRequest};

/// Attempts of `pm_card_processingError` that fail before one succeeds.
const PROCESSING_ERROR_ATTEMPTS: i32 = 2;
/// Attempts of a refund of a `pm_card_refundProcessingError` charge that fail.
const REFUND_ERROR_ATTEMPTS: i32 = 3;
const REFUND_ERROR_METHOD: &str = "pm_card_refundProcessingError";

pub struct SandboxGateway {
    db: DatabaseConnection,
}

impl SandboxGateway {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Records one more attempt under `key` (locking its row until `tx` ends, so concurrent
    /// requests with one key are answered one after the other) and returns the request.
    async fn attempt(
        &self,
        tx: &DatabaseTransaction,
        key: &str,
        operation: &str,
        method: Option<&str>,
        amount: i64,
        currency: &str,
    ) -> Result<Recorded, GatewayError> {
        let stmt = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO sandbox_gateway_requests (idempotency_key, operation, payment_method, amount_minor, currency, attempts) \
             VALUES ($1, $2, $3, $4, $5, 1) ON CONFLICT (idempotency_key) DO UPDATE \
             SET attempts = sandbox_gateway_requests.attempts + 1, updated_at = now() \
             RETURNING operation, payment_method, amount_minor, attempts, outcome, reference",
            [key.into(), operation.into(), method.map(str::to_owned).into(), amount.into(), currency.into()],
        );
        Recorded::find_by_statement(stmt)
            .one(tx)
            .await
            .map_err(ledger)?
            .ok_or_else(|| GatewayError::Transient("sandbox ledger returned no row".to_owned()))
    }

    async fn settle(&self, tx: &DatabaseTransaction, key: &str, outcome: &str, reference: Option<&str>) -> Result<(), GatewayError> {
        let values: Vec<Value> = vec![key.into(), outcome.into(), reference.map(str::to_owned).into()];
        tx.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "UPDATE sandbox_gateway_requests SET outcome = $2, reference = $3, updated_at = now() WHERE idempotency_key = $1",
            values,
        ))
        .await
        .map_err(ledger)?;
        Ok(())
    }
}

#[derive(Debug, FromQueryResult)]
struct Recorded {
    operation: String,
    payment_method: Option<String>,
    amount_minor: i64,
    attempts: i32,
    outcome: Option<String>,
    reference: Option<String>,
}

const DECLINED_CODE: &str = "card_declined";
const DECLINED_MESSAGE: &str = "Your card was declined.";

#[async_trait::async_trait]
impl PaymentGateway for SandboxGateway {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, GatewayError> {
        let tx = self.db.begin().await.map_err(ledger)?;
        let outcome = self.charge_in(&tx, request).await;
        // the attempt is counted even when it fails transiently
        tx.commit().await.map_err(ledger)?;
        outcome
    }

    async fn refund(&self, request: &RefundRequest) -> Result<String, GatewayError> {
        let tx = self.db.begin().await.map_err(ledger)?;
        let recorded = self.attempt(&tx, &request.idempotency_key, "refund", None, request.amount_minor, &request.currency).await?;
        let reference = match (recorded.outcome.as_deref(), recorded.reference) {
            (Some("succeeded"), Some(reference)) => reference,
            _ if recorded.attempts <= REFUND_ERROR_ATTEMPTS
                && self.charged_with(&tx, &request.charge_reference).await?.as_deref() == Some(REFUND_ERROR_METHOD) =>
            {
                // the failed attempt is counted, as at a real provider
                tx.commit().await.map_err(ledger)?;
                return Err(GatewayError::Transient("processing_error: the refund could not be processed; try again".to_owned()));
            }
            _ => {
                let reference = format!("re_sandbox_{}", Uuid::new_v4().simple());
                self.settle(&tx, &request.idempotency_key, "succeeded", Some(&reference)).await?;
                reference
            }
        };
        tx.commit().await.map_err(ledger)?;
        Ok(reference)
    }
}

impl SandboxGateway {
    /// The payment method of the charge with this reference.
    async fn charged_with(&self, tx: &DatabaseTransaction, charge_reference: &str) -> Result<Option<String>, GatewayError> {
        let row = tx
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT payment_method FROM sandbox_gateway_requests WHERE operation = 'charge' AND reference = $1",
                [charge_reference.into()],
            ))
            .await
            .map_err(ledger)?;
        row.map(|r| r.try_get::<Option<String>>("", "payment_method")).transpose().map(Option::flatten).map_err(ledger)
    }
}

fn ledger(err: sea_orm::DbErr) -> GatewayError {
    GatewayError::Transient(format!("sandbox ledger: {err}"))
}

impl SandboxGateway {
    async fn charge_in(&self, tx: &DatabaseTransaction, request: &ChargeRequest) -> Result<ChargeOutcome, GatewayError> {
        let recorded = self
            .attempt(tx, &request.idempotency_key, "charge", Some(&request.payment_method), request.amount_minor, &request.currency)
            .await?;
        // Stripe refuses a key reused for a different request.
        if recorded.operation != "charge"
            || recorded.payment_method.as_deref() != Some(request.payment_method.as_str())
            || recorded.amount_minor != request.amount_minor
        {
            return Err(GatewayError::Rejected("idempotency key reused with different parameters".to_owned()));
        }
        match (recorded.outcome.as_deref(), recorded.reference) {
            (Some("succeeded"), Some(reference)) => return Ok(ChargeOutcome::Succeeded { reference }),
            (Some("declined"), _) => {
                return Ok(ChargeOutcome::Declined { code: DECLINED_CODE.to_owned(), message: DECLINED_MESSAGE.to_owned() });
            }
            _ => {}
        }
        match request.payment_method.as_str() {
            "pm_card_chargeDeclined" => {
                self.settle(tx, &request.idempotency_key, "declined", None).await?;
                Ok(ChargeOutcome::Declined { code: DECLINED_CODE.to_owned(), message: DECLINED_MESSAGE.to_owned() })
            }
            "pm_card_processingError" if recorded.attempts <= PROCESSING_ERROR_ATTEMPTS => Err(GatewayError::Transient(
                "processing_error: An error occurred while processing your card. Try again in a little bit.".to_owned(),
            )),
            "pm_card_visa" | "pm_card_mastercard" | "pm_card_processingError" | REFUND_ERROR_METHOD => {
                let reference = format!("ch_sandbox_{}", Uuid::new_v4().simple());
                self.settle(tx, &request.idempotency_key, "succeeded", Some(&reference)).await?;
                Ok(ChargeOutcome::Succeeded { reference })
            }
            _ => {
                self.settle(tx, &request.idempotency_key, "declined", None).await?;
                Ok(ChargeOutcome::Declined {
                    code: "payment_method_invalid".to_owned(),
                    message: format!("No such payment method: {}", request.payment_method),
                })
            }
        }
    }
}

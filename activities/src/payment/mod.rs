//! Payments: the gateway interface, its implementations, and the payment activities.

mod activities;
mod sandbox;
mod stripe;

pub use self::stripe::{StripeGateway, StripeGatewayBuilder};
pub use activities::PaymentActivities;
pub use sandbox::SandboxGateway;

/// A charge as the provider sees it. `payment_method` is a token such as `pm_card_visa`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub idempotency_key: String,
    pub amount_minor: i64,
    pub currency: String,
    pub payment_method: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Succeeded {
        reference: String,
    },
    /// Final: retrying will not help.
    Declined {
        code: String,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    pub idempotency_key: String,
    pub charge_reference: String,
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Network fault, timeout, provider hiccup: retry with the same idempotency key.
    #[error("transient payment gateway error: {0}")]
    Transient(String),
    /// The provider refused the request itself; retrying the same request cannot succeed.
    #[error("payment gateway rejected the request: {0}")]
    Rejected(String),
}

/// A payment provider. Every call carries an idempotency key, so a repeated call returns the
/// first result and never charges or refunds twice.
#[async_trait::async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// Stored with each payment, e.g. "sandbox" or "stripe".
    fn name(&self) -> &'static str;
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, GatewayError>;
    /// Returns the provider's refund reference.
    async fn refund(&self, request: &RefundRequest) -> Result<String, GatewayError>;
}

//! The Stripe gateway: a charge is a PaymentIntent created and confirmed in one request with a
//! payment-method token (`pm_...`; card data never passes through us), a refund is a Refund of
//! that PaymentIntent. Every request carries the caller's idempotency key as `Idempotency-Key`,
//! so a retried activity gets Stripe's first answer back instead of charging or refunding again.
//!
//! async-stripe makes each request exactly once here (`RequestStrategy::Idempotent`): retries
//! belong to the workflow's activity retry policy, which reuses the same key.

use std::{fmt, time::Duration};

use ::stripe::{
    ApiErrors, ApiErrorsCode, ApiErrorsType, Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest,
};
use stripe_core::{
    PaymentIntent, PaymentIntentStatus,
    payment_intent::{
        CreatePaymentIntent, CreatePaymentIntentAutomaticPaymentMethods, CreatePaymentIntentAutomaticPaymentMethodsAllowRedirects,
        RetrievePaymentIntent,
    },
    refund::CreateRefund,
};
use stripe_types::Currency;

use super::{ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway, RefundRequest};

/// Stripe's production API.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// Per HTTP attempt; below the charge and refund activities' 30 s start-to-close timeout, so a
/// hung connection ends as a retryable error rather than an activity timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

pub struct StripeGateway {
    client: Client,
    api_base: String,
}

/// Shows where requests go, never the secret key.
impl fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeGateway").field("api_base", &self.api_base).finish_non_exhaustive()
    }
}

impl StripeGateway {
    /// A gateway talking to the production API (`DEFAULT_API_BASE`) with `secret_key`
    /// (`sk_live_...`, `sk_test_...` or a restricted `rk_...` key).
    pub fn new(secret_key: impl Into<String>) -> anyhow::Result<Self> {
        Self::builder(secret_key).build()
    }

    /// A gateway sending its requests to `api_base` instead (e.g. a local stand-in in tests);
    /// paths are appended as `{api_base}/v1/...`.
    pub fn with_api_base(secret_key: impl Into<String>, api_base: &str) -> anyhow::Result<Self> {
        Self::builder(secret_key).api_base(api_base).build()
    }

    pub fn builder(secret_key: impl Into<String>) -> StripeGatewayBuilder {
        StripeGatewayBuilder { secret_key: secret_key.into(), api_base: DEFAULT_API_BASE.to_owned(), timeout: DEFAULT_TIMEOUT }
    }

    /// Where requests go, e.g. `https://api.stripe.com/`.
    pub fn api_base(&self) -> &str {
        &self.api_base
    }
}

/// Settings for a `StripeGateway`. No `Debug`: it holds the secret key.
pub struct StripeGatewayBuilder {
    secret_key: String,
    api_base: String,
    timeout: Duration,
}

impl StripeGatewayBuilder {
    pub fn api_base(mut self, api_base: impl Into<String>) -> Self {
        self.api_base = api_base.into();
        self
    }

    /// Per HTTP attempt (default `DEFAULT_TIMEOUT`); running out is a transient error.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn build(self) -> anyhow::Result<StripeGateway> {
        let secret_key = self.secret_key.trim().to_owned();
        anyhow::ensure!(!secret_key.is_empty(), "the Stripe secret key is empty");
        let api_base = normalise_api_base(&self.api_base)?;
        let client = ClientBuilder::new(secret_key)
            .url(api_base.clone())
            .request_strategy(RequestStrategy::Once)
            .timeout(self.timeout)
            .app_info("emporium", Some(env!("CARGO_PKG_VERSION").to_owned()), None)
            .build()
            // async-stripe's message names the setting, never the key's value
            .map_err(|err| anyhow::anyhow!("invalid Stripe client settings: {err}"))?;
        Ok(StripeGateway { client, api_base })
    }
}

/// async-stripe joins the base and the path as `{base}v1/...`: the base must end with one `/`.
fn normalise_api_base(api_base: &str) -> anyhow::Result<String> {
    let trimmed = api_base.trim().trim_end_matches('/');
    anyhow::ensure!(
        trimmed.starts_with("https://") || trimmed.starts_with("http://"),
        "the Stripe API base {api_base:?} is not an http(s) URL"
    );
    anyhow::ensure!(!trimmed.contains(['?', '#']), "the Stripe API base {api_base:?} must not have a query or fragment");
    Ok(format!("{trimmed}/"))
}

/// The strategy that sends `key` as the `Idempotency-Key` header, once.
fn idempotent(key: &str) -> Result<RequestStrategy, GatewayError> {
    // Stripe's limits (1 to 255 characters): better refused here than sent without the key.
    IdempotencyKey::new(key)
        .map(RequestStrategy::Idempotent)
        .map_err(|err| GatewayError::Rejected(format!("unusable idempotency key: {err}")))
}

#[async_trait::async_trait]
impl PaymentGateway for StripeGateway {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, GatewayError> {
        let strategy = idempotent(&request.idempotency_key)?;
        let currency: Currency = request.currency.to_ascii_lowercase().parse().unwrap_or_else(|never| match never {});
        let create = CreatePaymentIntent::new(request.amount_minor, currency)
            .payment_method(request.payment_method.clone())
            .confirm(true)
            // Only methods that complete without sending the customer elsewhere, and no waiting
            // in `requires_action` (3-D Secure) that nothing here could complete: Stripe
            // declines such a payment with `authentication_required` instead.
            .automatic_payment_methods(CreatePaymentIntentAutomaticPaymentMethods {
                enabled: true,
                allow_redirects: Some(CreatePaymentIntentAutomaticPaymentMethodsAllowRedirects::Never),
            })
            .error_on_requires_action(true)
            .description(request.description.clone());
        let intent = match create.customize().request_strategy(strategy).send(&self.client).await {
            Ok(intent) => intent,
            Err(StripeError::Stripe(error, _)) if error.type_ == ApiErrorsType::CardError => return Ok(declined(&error)),
            Err(err) => return Err(gateway_error(err)),
        };
        if intent.status == PaymentIntentStatus::Processing {
            // A replayed request returns the answer Stripe first gave; ask for the state now.
            let current = RetrievePaymentIntent::new(intent.id.clone()).send(&self.client).await.map_err(gateway_error)?;
            return charge_outcome(current);
        }
        charge_outcome(intent)
    }

    async fn refund(&self, request: &RefundRequest) -> Result<String, GatewayError> {
        let strategy = idempotent(&request.idempotency_key)?;
        let create = CreateRefund::new().payment_intent(request.charge_reference.clone()).amount(request.amount_minor);
        let refund = create.customize().request_strategy(strategy).send(&self.client).await.map_err(gateway_error)?;
        match refund.status.as_deref() {
            Some("failed" | "canceled") => Err(GatewayError::Rejected(format!(
                "refund {} {}: {}",
                refund.id.as_str(),
                refund.status.as_deref().unwrap_or_default(),
                refund.failure_reason.as_deref().unwrap_or("no reason given")
            ))),
            // `succeeded`, or `pending` / `requires_action`: accepted, Stripe completes it
            _ => Ok(refund.id.as_str().to_owned()),
        }
    }
}

/// What a confirmed PaymentIntent's status means for the checkout.
fn charge_outcome(intent: PaymentIntent) -> Result<ChargeOutcome, GatewayError> {
    match intent.status {
        PaymentIntentStatus::Succeeded => Ok(ChargeOutcome::Succeeded { reference: intent.id.as_str().to_owned() }),
        PaymentIntentStatus::Processing => {
            Err(GatewayError::Transient(format!("payment intent {} is still processing", intent.id.as_str())))
        }
        PaymentIntentStatus::RequiresPaymentMethod => Ok(match intent.last_payment_error.as_deref() {
            Some(error) => declined(error),
            None => ChargeOutcome::Declined { code: "payment_failed".to_owned(), message: "The payment failed.".to_owned() },
        }),
        PaymentIntentStatus::RequiresAction => Ok(ChargeOutcome::Declined {
            code: "authentication_required".to_owned(),
            message: "The payment needs the customer to authenticate it.".to_owned(),
        }),
        PaymentIntentStatus::Canceled => Ok(ChargeOutcome::Declined {
            code: intent.cancellation_reason.map_or_else(|| "canceled".to_owned(), |reason| reason.as_str().to_owned()),
            message: "The payment was canceled.".to_owned(),
        }),
        other => Err(GatewayError::Rejected(format!("payment intent {} is in unexpected status {}", intent.id.as_str(), other.as_str()))),
    }
}

/// A card error: the issuer's reason (`decline_code`, e.g. `generic_decline`) when given, else
/// Stripe's code (e.g. `card_declined`, `expired_card`).
fn declined(error: &ApiErrors) -> ChargeOutcome {
    let code = error
        .decline_code
        .clone()
        .or_else(|| error.code.as_ref().map(|code| code.as_str().to_owned()))
        .unwrap_or_else(|| "card_declined".to_owned());
    let message = error.message.clone().unwrap_or_else(|| "Your card was declined.".to_owned());
    ChargeOutcome::Declined { code, message }
}

/// Network faults, timeouts, 5xx and 429 are worth retrying with the same key; what Stripe
/// refused as a request (400 invalid_request, 401/403 keys, 404, 409 idempotency) is not.
fn gateway_error(err: StripeError) -> GatewayError {
    match err {
        StripeError::Stripe(error, status) => {
            let text = describe(&error, status);
            let busy = matches!(error.code, Some(ApiErrorsCode::IdempotencyKeyInUse | ApiErrorsCode::LockTimeout));
            if status == 429 || status == 424 || status >= 500 || busy || error.type_ == ApiErrorsType::ApiError {
                GatewayError::Transient(text)
            } else {
                GatewayError::Rejected(text)
            }
        }
        StripeError::Timeout => GatewayError::Transient("timed out waiting for Stripe".to_owned()),
        StripeError::ClientError(message) => GatewayError::Transient(format!("could not reach Stripe: {message}")),
        // Also what a non-2xx answer whose body is not a Stripe error (a proxy's HTML page)
        // becomes: the status is lost, and retrying with the same key cannot charge twice.
        StripeError::JSONDeserialize(message) => GatewayError::Transient(format!("unreadable answer from Stripe: {message}")),
        StripeError::ConfigError(message) => GatewayError::Rejected(format!("Stripe client configuration: {message}")),
    }
}

fn describe(error: &ApiErrors, status: u16) -> String {
    let code = error.code.as_ref().map_or("", |code| code.as_str());
    let message = error.message.as_deref().unwrap_or("no message");
    format!("HTTP {status} {} {code}: {message}", error.type_.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_base_ends_with_exactly_one_slash() {
        assert_eq!(normalise_api_base("https://api.stripe.com").unwrap(), "https://api.stripe.com/");
        assert_eq!(normalise_api_base("http://127.0.0.1:9/stripe//").unwrap(), "http://127.0.0.1:9/stripe/");
        assert!(normalise_api_base("api.stripe.com").is_err());
        assert!(normalise_api_base("https://api.stripe.com/?x=1").is_err());
    }

    #[test]
    fn the_secret_key_is_not_in_debug_output() {
        let gateway = StripeGateway::with_api_base("sk_test_do_not_print", "http://127.0.0.1:9").unwrap();
        let shown = format!("{gateway:?}");
        assert!(!shown.contains("sk_test_do_not_print"), "{shown}");
    }

    #[test]
    fn an_empty_or_oversized_idempotency_key_is_refused() {
        assert!(matches!(idempotent(""), Err(GatewayError::Rejected(_))));
        assert!(matches!(idempotent(&"k".repeat(256)), Err(GatewayError::Rejected(_))));
        assert!(matches!(idempotent("checkout:abc:charge"), Ok(RequestStrategy::Idempotent(_))));
    }
}

use chrono::{DateTime, TimeZone, Utc};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi,
    param::{Header, Path},
    payload::Json,
};
use uuid::Uuid;

use emporium_workflows::checkout::contract::{
    CheckoutStage, CheckoutView, PaymentOutcome, PaymentRequest, ShippingAddress as ContractAddress,
};

use super::{
    ApiTags, Money,
    orders::{Order, load_order},
};
use crate::{
    auth::BearerAuth,
    checkout::checkout_id_for,
    error::{ApiError, ApiResult, ErrorCode},
    state::AppState,
};

pub struct CheckoutApi;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckoutStatus {
    Reserving,
    AwaitingPayment,
    Paying,
    Completed,
    OutOfStock,
    CartEmpty,
    Declined,
    Cancelled,
    Expired,
    Failed,
}

impl From<CheckoutStage> for CheckoutStatus {
    fn from(stage: CheckoutStage) -> Self {
        match stage {
            CheckoutStage::Reserving => CheckoutStatus::Reserving,
            CheckoutStage::AwaitingPayment => CheckoutStatus::AwaitingPayment,
            CheckoutStage::Paying => CheckoutStatus::Paying,
            CheckoutStage::Completed => CheckoutStatus::Completed,
            CheckoutStage::OutOfStock => CheckoutStatus::OutOfStock,
            CheckoutStage::CartEmpty => CheckoutStatus::CartEmpty,
            CheckoutStage::Declined => CheckoutStatus::Declined,
            CheckoutStage::Cancelled => CheckoutStatus::Cancelled,
            CheckoutStage::Expired => CheckoutStatus::Expired,
            CheckoutStage::Failed => CheckoutStatus::Failed,
        }
    }
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct CheckoutLine {
    product_id: i64,
    sku: String,
    title: String,
    quantity: i32,
    unit_price: Money,
    line_total: Money,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct Totals {
    pub subtotal: Money,
    pub tax: Money,
    pub shipping: Money,
    pub total: Money,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct Checkout {
    checkout_id: Uuid,
    status: CheckoutStatus,
    lines: Vec<CheckoutLine>,
    totals: Totals,
    /// Until when the stock is held for payment.
    reserved_until: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    order_id: Option<String>,
    /// Why a checkout did not complete (decline code, failure).
    #[oai(skip_serializing_if_is_none)]
    failure: Option<String>,
}

/// 402 `payment_declined` with the provider's decline code.
pub(crate) fn payment_declined(code: String, message: &str) -> ApiError {
    ApiError::with_details(
        ErrorCode::PaymentDeclined,
        format!("the payment was declined: {message}"),
        Some(serde_json::json!({ "declineCode": code })),
    )
}

/// 402 `payment_failed`: nothing was charged (or it was refunded) and `held` went back.
pub(crate) fn payment_failed(reason: String, held: &str) -> ApiError {
    ApiError::with_details(
        ErrorCode::PaymentFailed,
        format!("the payment could not be taken; {held} was released"),
        Some(serde_json::json!({ "reason": public_failure(reason) })),
    )
}

/// A failure as clients may see it: machine codes (`card_declined`) pass, anything else (an
/// internal message) becomes `internal_error`; operators find the detail in the workflow.
fn public_failure(failure: String) -> String {
    if !failure.is_empty() && failure.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') { failure } else { "internal_error".to_owned() }
}

fn money(amount: i64, currency: &str) -> Money {
    Money { amount, currency: currency.to_owned() }
}

impl From<CheckoutView> for Checkout {
    fn from(view: CheckoutView) -> Self {
        let currency = view.totals.currency.clone();
        Checkout {
            checkout_id: Uuid::parse_str(&view.checkout_id).unwrap_or_default(),
            status: view.stage.into(),
            lines: view
                .lines
                .into_iter()
                .map(|l| CheckoutLine {
                    product_id: l.product_id,
                    sku: l.sku,
                    title: l.title,
                    quantity: l.quantity,
                    unit_price: money(l.unit_price_minor, &currency),
                    line_total: money(l.unit_price_minor * i64::from(l.quantity), &currency),
                })
                .collect(),
            totals: Totals {
                subtotal: money(view.totals.subtotal_minor, &currency),
                tax: money(view.totals.tax_minor, &currency),
                shipping: money(view.totals.shipping_minor, &currency),
                total: money(view.totals.total_minor, &currency),
            },
            reserved_until: Utc.timestamp_millis_opt(view.reserved_until_ms as i64).single().unwrap_or_default(),
            order_id: view.order.map(|o| o.order_id),
            failure: view.failure.map(public_failure),
        }
    }
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct ShippingAddress {
    name: String,
    line1: String,
    city: String,
    postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. "US".
    country: String,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub(crate) struct SubmitPayment {
    /// A payment-method token such as `pm_card_visa` (never card numbers).
    payment_method: String,
    shipping_address: ShippingAddress,
}

#[derive(ApiResponse)]
enum StartCheckoutResponse {
    /// The stock is reserved until `reservedUntil`; pay before then.
    #[oai(status = 201)]
    Created(Json<Checkout>),
}

#[derive(ApiResponse)]
enum GetCheckoutResponse {
    /// Where the checkout is.
    #[oai(status = 200)]
    Ok(Json<Checkout>),
}

#[derive(ApiResponse)]
enum PayResponse {
    /// Paid: the order.
    #[oai(status = 201)]
    Created(Json<Order>),
}

#[derive(ApiResponse)]
enum CancelCheckoutResponse {
    /// The cancellation was accepted; the stock is released shortly.
    #[oai(status = 202)]
    Accepted(Json<Checkout>),
}

fn idempotency_key(raw: Option<&str>) -> ApiResult<Option<&str>> {
    match raw {
        None => Ok(None),
        Some(key) if !key.is_empty() && key.len() <= 200 && key.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(key)),
        Some(_) => Err(ApiError::new(ErrorCode::InvalidIdempotencyKey, "Idempotency-Key must be 1 to 200 visible ASCII characters")),
    }
}

fn field(value: &str, name: &str, max: usize) -> ApiResult<String> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(ApiError::new(ErrorCode::InvalidShippingAddress, format!("shippingAddress.{name} must be 1 to {max} characters")));
    }
    Ok(value.to_owned())
}

pub(crate) fn payment_request(body: SubmitPayment) -> ApiResult<PaymentRequest> {
    let method = body.payment_method.trim();
    let method_ok = !method.is_empty() && method.len() <= 100 && method.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !method_ok {
        return Err(ApiError::new(ErrorCode::InvalidPaymentMethod, "paymentMethod must be a payment-method token like pm_card_visa"));
    }
    let a = body.shipping_address;
    let country = a.country.trim().to_ascii_uppercase();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::new(ErrorCode::InvalidShippingAddress, "shippingAddress.country must be a two-letter country code"));
    }
    Ok(PaymentRequest {
        payment_method: method.to_owned(),
        shipping_address: ContractAddress {
            name: field(&a.name, "name", 200)?,
            line1: field(&a.line1, "line1", 200)?,
            city: field(&a.city, "city", 100)?,
            postal_code: field(&a.postal_code, "postalCode", 20)?,
            country,
        },
    })
}

/// A checkout that could not reserve: the error the client gets.
fn unreserved(view: &CheckoutView) -> Option<ApiError> {
    match view.stage {
        CheckoutStage::OutOfStock => Some(ApiError::with_details(
            ErrorCode::OutOfStock,
            "some products are not in stock in the quantities asked for",
            Some(serde_json::json!({ "products": view.shortages })),
        )),
        CheckoutStage::CartEmpty => Some(ApiError::new(ErrorCode::CartEmpty, "the cart is empty")),
        CheckoutStage::Failed if view.order.is_none() && view.lines.is_empty() => {
            Some(ApiError::internal(anyhow::anyhow!("checkout {} failed to reserve: {:?}", view.checkout_id, view.failure)))
        }
        _ => None,
    }
}

#[OpenApi(tag = "ApiTags::Checkout")]
impl CheckoutApi {
    /// Check out the signed-in user's cart: prices it, reserves every line (all or nothing)
    /// and holds the stock for payment. The same `Idempotency-Key` returns the same checkout.
    #[oai(path = "/checkout", method = "post")]
    async fn start_checkout(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
    ) -> ApiResult<StartCheckoutResponse> {
        let checkout_id = checkout_id_for(auth.user_id(), idempotency_key(key.0.as_deref())?);
        let view = state.checkouts.start(auth.user_id(), checkout_id).await?;
        if let Some(err) = unreserved(&view) {
            return Err(err);
        }
        Ok(StartCheckoutResponse::Created(Json(view.into())))
    }

    /// Where a checkout is.
    #[oai(path = "/checkout/:id", method = "get")]
    async fn get_checkout(&self, state: Data<&AppState>, auth: BearerAuth, id: Path<Uuid>) -> ApiResult<GetCheckoutResponse> {
        let view = state.checkouts.status(auth.user_id(), id.0).await?;
        Ok(GetCheckoutResponse::Ok(Json(view.into())))
    }

    /// Pay for a checkout; answers with the order. Submitting twice charges once.
    #[oai(path = "/checkout/:id/payment", method = "post")]
    async fn pay_checkout(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<SubmitPayment>,
    ) -> ApiResult<PayResponse> {
        let request = payment_request(body.0)?;
        let user = auth.user_id();
        match state.checkouts.pay(user, id.0, request).await? {
            PaymentOutcome::Paid { order } => {
                state.carts.refresh_user(user).await;
                let order_id = Uuid::parse_str(&order.order_id).map_err(ApiError::internal)?;
                Ok(PayResponse::Created(Json(load_order(&state, Some(user), order_id).await?)))
            }
            PaymentOutcome::Declined { code, message } => Err(payment_declined(code, &message)),
            PaymentOutcome::Failed { reason } => Err(payment_failed(reason, "the stock")),
            PaymentOutcome::Expired => Err(ApiError::new(ErrorCode::CheckoutExpired, "the reservation expired; start a new checkout")),
            PaymentOutcome::Cancelled => Err(ApiError::new(ErrorCode::CheckoutCancelled, "the checkout was cancelled")),
        }
    }

    /// Cancel a checkout that is waiting for payment; its stock goes back on sale.
    #[oai(path = "/checkout/:id/cancel", method = "post")]
    async fn cancel_checkout(&self, state: Data<&AppState>, auth: BearerAuth, id: Path<Uuid>) -> ApiResult<CancelCheckoutResponse> {
        let view = state.checkouts.cancel(auth.user_id(), id.0).await?;
        Ok(CancelCheckoutResponse::Accepted(Json(view.into())))
    }
}

//! The checkout contract: ids, message names, inputs, outputs and the activities it calls.

use serde::{Deserialize, Serialize};
use temporalio_common::search_attributes::SearchAttributeKey;

use crate::activity_contract;

/// Search attribute: the shopper's user id, set when the workflow starts.
pub const CUSTOMER_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("CustomerId");
/// Search attribute: the checkout stage, kept current by the workflow.
pub const CHECKOUT_STATUS: SearchAttributeKey<String> = SearchAttributeKey::keyword("CheckoutStatus");

/// Workflow id of a checkout; also the owner of its stock reservations.
pub fn workflow_id(checkout_id: &str) -> String {
    format!("checkout:{checkout_id}")
}

/// Idempotency key of the charge of a checkout: stable across activity retries and replays.
pub fn charge_key(checkout_id: &str) -> String {
    format!("checkout:{checkout_id}:charge")
}

pub fn refund_key(checkout_id: &str) -> String {
    format!("checkout:{checkout_id}:refund")
}

/// Failure type names (ApplicationFailure `type`) of business outcomes.
pub const OUT_OF_STOCK: &str = "out_of_stock";
pub const CART_EMPTY: &str = "cart_empty";
pub const RESERVATION_LOST: &str = "reservation_lost";

/// Why an update was refused (the validator's message is exactly one of these).
pub const REFUSAL_NOT_READY: &str = "checkout_not_ready";
pub const REFUSAL_EXPIRED: &str = "checkout_expired";
pub const REFUSAL_CANCELLED: &str = "checkout_cancelled";
pub const REFUSAL_CLOSED: &str = "checkout_closed";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckoutInput {
    pub checkout_id: String,
    pub user_id: String,
    /// How long stock stays reserved while waiting for payment.
    pub reservation_timeout_secs: u64,
    /// How long after delivery the order accepts returns (default 30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_window_secs: Option<u64>,
}

/// Where a checkout is. Terminal stages never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckoutStage {
    #[default]
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

impl CheckoutStage {
    /// The name used in Postgres, the API and the `CheckoutStatus` search attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckoutStage::Reserving => "RESERVING",
            CheckoutStage::AwaitingPayment => "AWAITING_PAYMENT",
            CheckoutStage::Paying => "PAYING",
            CheckoutStage::Completed => "COMPLETED",
            CheckoutStage::OutOfStock => "OUT_OF_STOCK",
            CheckoutStage::CartEmpty => "CART_EMPTY",
            CheckoutStage::Declined => "DECLINED",
            CheckoutStage::Cancelled => "CANCELLED",
            CheckoutStage::Expired => "EXPIRED",
            CheckoutStage::Failed => "FAILED",
        }
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, CheckoutStage::Reserving | CheckoutStage::AwaitingPayment | CheckoutStage::Paying)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PricedLine {
    pub product_id: i64,
    pub sku: String,
    pub title: String,
    pub quantity: i32,
    /// Today's price, from the catalogue, never from the client.
    pub unit_price_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub currency: String,
    pub subtotal_minor: i64,
    pub tax_minor: i64,
    pub shipping_minor: i64,
    pub total_minor: i64,
}

/// A product a checkout could not reserve enough of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shortage {
    pub product_id: i64,
    pub requested: i32,
    pub available: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShippingAddress {
    pub name: String,
    pub line1: String,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequest {
    /// A payment-method token, e.g. `pm_card_visa`; never card data.
    pub payment_method: String,
    pub shipping_address: ShippingAddress,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    pub order_id: String,
    pub payment_id: String,
}

/// What `status` answers, and the reservation update returns.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckoutView {
    pub checkout_id: String,
    pub user_id: String,
    pub stage: CheckoutStage,
    pub lines: Vec<PricedLine>,
    pub totals: Totals,
    /// Unix milliseconds until which the stock is held.
    pub reserved_until_ms: u64,
    pub shortages: Vec<Shortage>,
    pub order: Option<OrderPlaced>,
    /// Decline code or failure reason of a checkout that did not complete.
    pub failure: Option<String>,
}

/// The answer to a payment submission. Business outcomes are values, not errors, so their
/// codes reach the caller intact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum PaymentOutcome {
    Paid { order: OrderPlaced },
    Declined { code: String, message: String },
    Expired,
    Cancelled,
    Failed { reason: String },
}

// ---- activities ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReserveCheckoutInput {
    pub checkout_id: String,
    pub user_id: String,
    /// The reservation owner (the workflow id).
    pub owner: String,
    pub reserved_until_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservedCheckout {
    pub lines: Vec<PricedLine>,
    pub totals: Totals,
}

activity_contract! {
    /// Prices the signed-in cart and reserves every line, all or nothing, in one transaction;
    /// records the checkout. Fails `out_of_stock` (details: `Vec<Shortage>`) or `cart_empty`.
    pub ReserveCheckout = "CheckoutActivities::reserve_checkout", ReserveCheckoutInput => ReservedCheckout
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseInput {
    pub checkout_id: String,
    pub owner: String,
    /// The stage the checkout ends in.
    pub stage: CheckoutStage,
    pub failure: Option<String>,
}

activity_contract! {
    /// Returns every still-reserved unit of `owner` to stock and records the checkout's end.
    pub ReleaseStock = "CheckoutActivities::release_stock", ReleaseInput => ()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeInput {
    pub checkout_id: String,
    pub idempotency_key: String,
    pub amount_minor: i64,
    pub currency: String,
    pub payment_method: String,
    /// Set when paying for a flash-sale claim (then `checkout_id` is empty): the claim's
    /// PAYING status, not the checkout's, guards the charge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flash_claim_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum ChargeResult {
    Charged { payment_id: String },
    Declined { code: String, message: String },
}

activity_contract! {
    /// Charges through the payment gateway with the given idempotency key. A decline is a
    /// result (final); network faults are retryable errors.
    pub ChargePayment = "PaymentActivities::charge_payment", ChargeInput => ChargeResult
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundInput {
    pub payment_id: String,
    pub idempotency_key: String,
    pub reason: String,
    /// How much; everything not yet refunded when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
}

activity_contract! {
    /// Refunds a completed payment (in full, or `amount_minor` of it), once per idempotency key.
    pub RefundPayment = "PaymentActivities::refund_payment", RefundInput => ()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrderInput {
    pub checkout_id: String,
    pub user_id: String,
    pub owner: String,
    pub payment_id: String,
    pub lines: Vec<PricedLine>,
    pub totals: Totals,
    pub shipping_address: ShippingAddress,
}

activity_contract! {
    /// Creates the order, its items and events, confirms the reservations and takes the bought
    /// units out of the cart, in one transaction; idempotent on the checkout id.
    pub CreateOrder = "CheckoutActivities::create_order", CreateOrderInput => OrderPlaced
}

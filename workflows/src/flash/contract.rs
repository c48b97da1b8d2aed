//! The flash-sale contract: ids, inputs, outputs and the activities the sale and claim
//! workflows call.

use serde::{Deserialize, Serialize};
use temporalio_common::search_attributes::SearchAttributeKey;

use crate::activity_contract;
pub use crate::checkout::contract::{OrderPlaced, PaymentOutcome, PaymentRequest, ShippingAddress};

/// Search attribute on both workflows of a sale.
pub const FLASH_SALE_ID: SearchAttributeKey<String> = SearchAttributeKey::keyword("FlashSaleId");

/// How long a won unit is held for payment, unless the sale is configured otherwise.
pub const CLAIM_TTL_MS: u64 = 120_000;
/// The sale is loaded into Redis this long before it starts.
pub const PREWARM_LEAD_MS: u64 = 60_000;

pub fn sale_workflow_id(sale_id: &str) -> String {
    format!("flash-sale:{sale_id}")
}

/// One claim workflow per user and sale at a time.
pub fn claim_workflow_id(sale_id: &str, user_id: &str) -> String {
    format!("flash-claim:{sale_id}:{user_id}")
}

pub fn charge_key(claim_id: &str) -> String {
    format!("flash-claim:{claim_id}:charge")
}

pub fn refund_key(claim_id: &str) -> String {
    format!("flash-claim:{claim_id}:refund")
}

/// Why a payment update was refused (the validator's message is one of these).
pub const REFUSAL_CLAIM_EXPIRED: &str = "claim_expired";
pub const REFUSAL_CLAIM_CLOSED: &str = "claim_closed";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaleInput {
    pub sale_id: String,
    pub starts_at_ms: u64,
    pub ends_at_ms: u64,
    /// How long claims are held: reconciliation waits this long after the end.
    #[serde(default = "default_claim_ttl_ms")]
    pub claim_ttl_ms: u64,
}

fn default_claim_ttl_ms() -> u64 {
    CLAIM_TTL_MS
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaleRef {
    pub sale_id: String,
}

/// Reconciliation as the workflow reports it (also stored on the sale in Postgres).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SaleOutcome {
    pub reconciled: bool,
    pub paid_claims: i64,
    pub returned_to_stock: i64,
    pub consistent: bool,
}

activity_contract! {
    /// Loads the sale's settings and counter into Redis from Postgres (unless Redis has them).
    pub LoadSale = "FlashSaleActivities::load_sale", SaleRef => ()
}

activity_contract! {
    /// Marks the sale ended.
    pub EndSale = "FlashSaleActivities::end_sale", SaleRef => ()
}

activity_contract! {
    /// Compares Redis and Postgres and returns unsold units to normal stock; `reconciled` is
    /// false while claims are still open.
    pub ReconcileSale = "FlashSaleActivities::reconcile_sale", SaleRef => SaleOutcome
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimInput {
    pub sale_id: String,
    pub user_id: String,
    pub claim_id: String,
    pub expires_at_ms: u64,
    /// How long after delivery the order accepts returns.
    pub return_window_secs: u64,
}

/// A payment for one claim. The workflow id names the sale and the buyer, not the claim: after
/// a claim expires, the buyer's next claim has the same workflow id, and a payment for the old
/// one must not pay the new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimPayment {
    #[serde(flatten)]
    pub request: PaymentRequest,
    /// Absent in histories recorded before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClaimStage {
    #[default]
    Held,
    Paying,
    Paid,
    Expired,
    Declined,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimView {
    pub claim_id: String,
    pub sale_id: String,
    pub user_id: String,
    pub stage: ClaimStage,
    pub expires_at_ms: u64,
    pub order: Option<OrderPlaced>,
    pub failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRef {
    pub sale_id: String,
    pub user_id: String,
    pub claim_id: String,
}

/// What the claim's buyer pays, fixed by the sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimPurchase {
    pub product_id: i64,
    pub sku: String,
    pub title: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
    pub currency: String,
    pub subtotal_minor: i64,
    pub tax_minor: i64,
    pub shipping_minor: i64,
    pub total_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum BeginPayment {
    Ready {
        purchase: ClaimPurchase,
    },
    /// The claim ran out before payment began.
    Expired,
}

activity_contract! {
    /// Moves the claim to PAYING (so its expiry can no longer release it) and prices it.
    pub BeginClaimPayment = "FlashSaleActivities::begin_claim_payment", ClaimRef => BeginPayment
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseClaimInput {
    pub claim: ClaimRef,
    /// Also release a claim whose payment began (it was declined or failed).
    pub even_paying: bool,
}

activity_contract! {
    /// Ends an unpaid claim in Postgres and puts its unit back on the Redis counter, once.
    pub ReleaseClaim = "FlashSaleActivities::release_claim", ReleaseClaimInput => ()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateClaimOrderInput {
    pub claim: ClaimRef,
    pub payment_id: String,
    pub purchase: ClaimPurchase,
    pub shipping_address: ShippingAddress,
}

activity_contract! {
    /// Creates the order, marks the claim PAID and sells the unit from the sale's stock, in one
    /// transaction; idempotent on the claim.
    pub CreateClaimOrder = "FlashSaleActivities::create_claim_order", CreateClaimOrderInput => OrderPlaced
}

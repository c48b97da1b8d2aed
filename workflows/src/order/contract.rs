//! The order contract: ids, message names, inputs, outputs and the activities it calls.

use serde::{Deserialize, Serialize};
use temporalio_common::search_attributes::SearchAttributeKey;

use crate::activity_contract;

/// Search attribute: the order's status, kept current by the workflow.
pub const ORDER_STATUS: SearchAttributeKey<String> = SearchAttributeKey::keyword("OrderStatus");
/// The order's totals are the checkout's, as paid.
pub use crate::checkout::contract::{CUSTOMER_ID, Totals};

/// Returns are accepted for this long after delivery unless configured otherwise.
pub const DEFAULT_RETURN_WINDOW_SECS: u64 = 30 * 24 * 3600;

/// Workflow id of an order.
pub fn workflow_id(order_id: &str) -> String {
    format!("order:{order_id}")
}

/// Idempotency key of the refund that goes with a cancellation.
pub fn cancel_refund_key(order_id: &str) -> String {
    format!("order:{order_id}:refund:cancel")
}

/// Idempotency key of the refund of the `n`th return (from 1).
pub fn return_refund_key(order_id: &str, n: u32) -> String {
    format!("order:{order_id}:refund:return-{n}")
}

/// The order's state, as stored in `orders.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    #[default]
    Placed,
    Shipped,
    Delivered,
    /// A cancellation or a received return waits for its refund.
    RefundPending,
    Cancelled,
    ReturnRequested,
    Returned,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::Placed,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::RefundPending,
        OrderStatus::Cancelled,
        OrderStatus::ReturnRequested,
        OrderStatus::Returned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "PLACED",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Delivered => "DELIVERED",
            OrderStatus::RefundPending => "REFUND_PENDING",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::ReturnRequested => "RETURN_REQUESTED",
            OrderStatus::Returned => "RETURNED",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// Why a command was refused. Each is an API error code of the same name (409 unless noted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderRefusal {
    /// Cancelling after the parcel left.
    OrderAlreadyShipped,
    OrderAlreadyDelivered,
    OrderCancelled,
    OrderNotShipped,
    OrderNotDelivered,
    ReturnWindowClosed,
    /// A return is already open, or a refund is still being paid out.
    ReturnInProgress,
    NoReturnRequested,
    /// More units than were bought and not yet returned (400 in the API: the request is wrong).
    ReturnQuantityExceeded,
    /// A product that is not in the order (400 in the API).
    ProductNotInOrder,
}

impl OrderRefusal {
    pub const ALL: [OrderRefusal; 10] = [
        OrderRefusal::OrderAlreadyShipped,
        OrderRefusal::OrderAlreadyDelivered,
        OrderRefusal::OrderCancelled,
        OrderRefusal::OrderNotShipped,
        OrderRefusal::OrderNotDelivered,
        OrderRefusal::ReturnWindowClosed,
        OrderRefusal::ReturnInProgress,
        OrderRefusal::NoReturnRequested,
        OrderRefusal::ReturnQuantityExceeded,
        OrderRefusal::ProductNotInOrder,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderRefusal::OrderAlreadyShipped => "order_already_shipped",
            OrderRefusal::OrderAlreadyDelivered => "order_already_delivered",
            OrderRefusal::OrderCancelled => "order_cancelled",
            OrderRefusal::OrderNotShipped => "order_not_shipped",
            OrderRefusal::OrderNotDelivered => "order_not_delivered",
            OrderRefusal::ReturnWindowClosed => "return_window_closed",
            OrderRefusal::ReturnInProgress => "return_in_progress",
            OrderRefusal::NoReturnRequested => "no_return_requested",
            OrderRefusal::ReturnQuantityExceeded => "return_quantity_exceeded",
            OrderRefusal::ProductNotInOrder => "product_not_in_order",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == raw)
    }

    pub fn message(self) -> &'static str {
        match self {
            OrderRefusal::OrderAlreadyShipped => "the order has shipped and can no longer be cancelled",
            OrderRefusal::OrderAlreadyDelivered => "the order is delivered already",
            OrderRefusal::OrderCancelled => "the order is cancelled",
            OrderRefusal::OrderNotShipped => "the order has not shipped yet",
            OrderRefusal::OrderNotDelivered => "the order has not been delivered yet",
            OrderRefusal::ReturnWindowClosed => "the return window of this order has closed",
            OrderRefusal::ReturnInProgress => "a return or refund of this order is still in progress",
            OrderRefusal::NoReturnRequested => "no return of this order is waiting to be received",
            OrderRefusal::ReturnQuantityExceeded => "more units than were bought and not yet returned",
            OrderRefusal::ProductNotInOrder => "a product of the return is not in the order",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub product_id: i64,
    pub quantity: i32,
    /// The price paid.
    pub unit_price_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderInput {
    pub order_id: String,
    pub user_id: String,
    pub payment_id: String,
    pub lines: Vec<OrderLine>,
    pub totals: Totals,
    /// How long after delivery a return may be requested.
    pub return_window_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shipment {
    pub carrier: String,
    pub tracking_number: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReturnItem {
    pub product_id: i64,
    pub quantity: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReturnRequest {
    pub items: Vec<ReturnItem>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineState {
    pub product_id: i64,
    pub quantity: i32,
    pub unit_price_minor: i64,
    /// Units received back (or cancelled before shipping).
    pub returned: i32,
}

/// What the `status` query answers and every command returns.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub order_id: String,
    pub user_id: String,
    pub status: OrderStatus,
    pub lines: Vec<LineState>,
    pub totals: Totals,
    pub refunded_minor: i64,
    /// The open return, if any.
    pub open_return: Option<ReturnRequest>,
    /// Returns received so far.
    pub returns_received: u32,
    pub return_window_open: bool,
    /// Delivered-at + window, Unix ms; 0 until delivered.
    pub return_deadline_ms: u64,
}

/// The answer to a command. Refusals are values, not update failures, so their codes reach the
/// API intact even when found by the handler rather than the validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum CommandOutcome {
    Accepted { order: OrderView },
    Refused { refusal: OrderRefusal },
}

// ---- activities ----

/// A notification to queue with a transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationSpec {
    /// ORDER_PLACED, ORDER_SHIPPED, ...
    pub kind: String,
    pub dedupe_key: String,
    pub payload: serde_json::Value,
}

/// One step of the order's state machine, applied in one transaction exactly once (the
/// `dedupe_key` of its event makes a retry a no-op).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordTransitionInput {
    pub order_id: String,
    pub user_id: String,
    pub dedupe_key: String,
    /// `order_events.kind`: SHIPPED, DELIVERED, CANCELLED, REFUNDED, RETURN_REQUESTED, RETURNED.
    pub event: String,
    pub data: serde_json::Value,
    pub status: OrderStatus,
    pub shipment: Option<Shipment>,
    /// Units going back on sale (cancelled or returned), by product.
    pub restock: Vec<ReturnItem>,
    /// Whether `restock` counts as returned units of the order's items.
    pub count_as_returned: bool,
    pub notification: Option<NotificationSpec>,
}

activity_contract! {
    /// Appends the event, sets the status, restocks and queues the notification, in one
    /// transaction; a repeated call changes nothing.
    pub RecordTransition = "OrderActivities::record_transition", RecordTransitionInput => ()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliverNotificationInput {
    pub dedupe_key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryResult {
    Delivered,
    /// No webhook is configured: written to the log instead.
    Logged,
    /// Gave up after the last attempt.
    Failed,
    /// Nothing queued under that key.
    Missing,
}

/// Attempts at a webhook before a notification is marked FAILED.
pub const WEBHOOK_MAX_ATTEMPTS: u32 = 8;

activity_contract! {
    /// Delivers a queued notification to the webhook (HMAC-signed), or logs it without one.
    pub DeliverNotification = "NotificationActivities::deliver_notification", DeliverNotificationInput => DeliveryResult
}

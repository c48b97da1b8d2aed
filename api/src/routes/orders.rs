use chrono::{DateTime, Utc};
use emporium_workflows::order::contract::{ReturnItem as ContractReturnItem, ReturnRequest};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use uuid::Uuid;

use emporium_entities::store::orders::{self, OrderSummary as StoredSummary};

use super::{ApiTags, Money, checkout::Totals, page_request};
use crate::{
    auth::BearerAuth,
    error::{ApiError, ApiResult, ErrorCode},
    orders::OrderCommand,
    state::AppState,
};

pub struct OrdersApi;

#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct OrderItem {
    product_id: i64,
    sku: String,
    title: String,
    quantity: i32,
    /// The price paid.
    unit_price: Money,
    line_total: Money,
    returned_quantity: i32,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct OrderEvent {
    /// ORDER_CREATED, PAYMENT_CONFIRMED, SHIPPED, ...
    kind: String,
    data: serde_json::Value,
    at: DateTime<Utc>,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct OrderSummary {
    order_id: Uuid,
    status: String,
    item_count: i64,
    totals: Totals,
    created_at: DateTime<Utc>,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct OrderPayment {
    /// PROCESSING, COMPLETED, REFUNDED or PARTIALLY_REFUNDED.
    status: String,
    amount: Money,
    /// Everything refunded so far (cancellation, returns).
    refunded: Money,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct Shipment {
    carrier: String,
    tracking_number: String,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct Order {
    order_id: Uuid,
    user_id: Uuid,
    /// PLACED, SHIPPED, DELIVERED, REFUND_PENDING, CANCELLED, RETURN_REQUESTED or RETURNED.
    status: String,
    items: Vec<OrderItem>,
    totals: Totals,
    payment: Option<OrderPayment>,
    shipment: Option<Shipment>,
    shipping_address: serde_json::Value,
    /// The order's timeline, oldest first.
    events: Vec<OrderEvent>,
    created_at: DateTime<Utc>,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct OrderPage {
    items: Vec<OrderSummary>,
    total: u64,
    page: u64,
    limit: u64,
}

#[derive(ApiResponse)]
enum ListOrdersResponse {
    /// The user's orders, newest first.
    #[oai(status = 200)]
    Ok(Json<OrderPage>),
}

#[derive(ApiResponse)]
enum GetOrderResponse {
    /// The order with its items and timeline.
    #[oai(status = 200)]
    Ok(Json<Order>),
}

fn totals(o: &StoredSummary) -> Totals {
    let m = |amount| Money { amount, currency: o.currency.clone() };
    Totals { subtotal: m(o.subtotal_minor), tax: m(o.tax_minor), shipping: m(o.shipping_minor), total: m(o.total_minor) }
}

/// An order; with `owner`, 404 for anyone else's.
pub async fn load_order(state: &AppState, owner: Option<Uuid>, order_id: Uuid) -> ApiResult<Order> {
    let (order, items, events) = orders::find(&state.db, order_id, owner)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::OrderNotFound, format!("order {order_id} does not exist")))?;
    let payment = orders::payment_of(&state.db, order_id).await?.map(|p| OrderPayment {
        status: p.status,
        amount: Money { amount: p.amount_minor, currency: p.currency.clone() },
        refunded: Money { amount: p.refunded_minor, currency: p.currency },
    });
    Ok(Order {
        order_id: order.id,
        user_id: order.user_id,
        status: order.status.clone(),
        totals: totals(&order),
        payment,
        shipment: order
            .carrier
            .clone()
            .zip(order.tracking_number.clone())
            .map(|(carrier, tracking_number)| Shipment { carrier, tracking_number }),
        items: items
            .into_iter()
            .map(|i| OrderItem {
                product_id: i.product_id,
                sku: i.sku,
                title: i.title,
                quantity: i.quantity,
                unit_price: Money { amount: i.unit_price_minor, currency: i.currency.clone() },
                line_total: Money { amount: i.unit_price_minor * i64::from(i.quantity), currency: i.currency },
                returned_quantity: i.returned_quantity,
            })
            .collect(),
        shipping_address: order.shipping_address,
        events: events.into_iter().map(|e| OrderEvent { kind: e.kind, data: e.data, at: e.created_at }).collect(),
        created_at: order.created_at,
    })
}

#[OpenApi(tag = "ApiTags::Orders")]
impl OrdersApi {
    /// The signed-in user's orders, newest first.
    #[oai(path = "/orders", method = "get")]
    async fn list_orders(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Page number, from 1.
        page: Query<Option<i64>>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<i64>>,
    ) -> ApiResult<ListOrdersResponse> {
        let page = page_request(page.0, limit.0)?;
        let (orders, total) = orders::list_for_user(&state.db, auth.user_id(), page).await?;
        Ok(ListOrdersResponse::Ok(Json(OrderPage {
            items: orders
                .iter()
                .map(|o| OrderSummary {
                    order_id: o.id,
                    status: o.status.clone(),
                    item_count: o.item_count,
                    totals: totals(o),
                    created_at: o.created_at,
                })
                .collect(),
            total,
            page: page.page,
            limit: page.limit,
        })))
    }

    /// One order: items at the price paid, status and event timeline.
    #[oai(path = "/orders/:id", method = "get")]
    async fn get_order(&self, state: Data<&AppState>, auth: BearerAuth, id: Path<Uuid>) -> ApiResult<GetOrderResponse> {
        Ok(GetOrderResponse::Ok(Json(load_order(&state, Some(auth.user_id()), id.0).await?)))
    }

    /// Cancels an order that has not shipped: its units go back on sale at once and the
    /// payment is refunded in full (the order shows REFUND_PENDING until the refund is paid
    /// out, then CANCELLED). Repeating the request changes nothing.
    #[oai(path = "/orders/:id/cancel", method = "post")]
    async fn cancel_order(&self, state: Data<&AppState>, auth: BearerAuth, id: Path<Uuid>) -> ApiResult<OrderCommandResponse> {
        state.orders.command(id.0, Some(auth.user_id()), OrderCommand::Cancel).await?;
        Ok(OrderCommandResponse::Ok(Json(load_order(&state, Some(auth.user_id()), id.0).await?)))
    }

    /// Asks to return some units of a delivered order, within the return window. They are
    /// restocked and refunded (price plus its share of tax) when the warehouse receives them.
    #[oai(path = "/orders/:id/return", method = "post")]
    async fn return_order(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<ReturnBody>,
    ) -> ApiResult<OrderCommandResponse> {
        let request = parse_return(body.0)?;
        state.orders.command(id.0, Some(auth.user_id()), OrderCommand::RequestReturn(request)).await?;
        Ok(OrderCommandResponse::Ok(Json(load_order(&state, Some(auth.user_id()), id.0).await?)))
    }
}

#[derive(ApiResponse)]
pub enum OrderCommandResponse {
    /// The order after the change was recorded.
    #[oai(status = 200)]
    Ok(Json<Order>),
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct ReturnItem {
    product_id: i64,
    quantity: i64,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
pub struct ReturnBody {
    items: Vec<ReturnItem>,
    /// Why, in the customer's words (1 to 500 characters).
    reason: String,
}

const MAX_RETURN_REASON: usize = 500;
const MAX_RETURN_LINES: usize = 100;

/// A return request that names each product once, with a positive quantity and a reason.
fn parse_return(body: ReturnBody) -> ApiResult<ReturnRequest> {
    let invalid = |message: &str| ApiError::new(ErrorCode::InvalidReturn, message.to_owned());
    if body.items.is_empty() || body.items.len() > MAX_RETURN_LINES {
        return Err(invalid("items must name 1 to 100 products"));
    }
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_RETURN_REASON {
        return Err(invalid("reason must be 1 to 500 characters"));
    }
    let mut items = Vec::with_capacity(body.items.len());
    for item in body.items {
        if !(1..=i64::from(i32::MAX)).contains(&item.quantity) {
            return Err(invalid("each quantity must be at least 1"));
        }
        if items.iter().any(|i: &ContractReturnItem| i.product_id == item.product_id) {
            return Err(invalid("each product may appear once"));
        }
        items.push(ContractReturnItem { product_id: item.product_id, quantity: item.quantity as i32 });
    }
    Ok(ReturnRequest { items, reason: reason.to_owned() })
}

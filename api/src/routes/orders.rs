use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, param::{Path, Query}, payload::Json};
use uuid::Uuid;

use emporium_entities::store::orders::{self, OrderSummary as StoredSummary};

use super::{ApiTags, Money, checkout::Totals, page_request};
use crate::{
    auth::BearerAuth,
    error::{ApiError, ApiResult, ErrorCode},
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
pub struct Order {
    order_id: Uuid,
    status: String,
    items: Vec<OrderItem>,
    totals: Totals,
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

/// One of `user`'s orders; 404 for anyone else's.
pub async fn load_order(state: &AppState, user: Uuid, order_id: Uuid) -> ApiResult<Order> {
    let (order, items, events) = orders::find_for_user(&state.db, user, order_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::OrderNotFound, format!("order {order_id} does not exist")))?;
    Ok(Order {
        order_id: order.id,
        status: order.status.clone(),
        totals: totals(&order),
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
        Ok(GetOrderResponse::Ok(Json(load_order(&state, auth.user_id(), id.0).await?)))
    }
}

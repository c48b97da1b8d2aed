use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};
use uuid::Uuid;

use emporium_entities::store::{orders, users};
use emporium_workflows::order::contract::{OrderStatus, Shipment};

use super::{
    ApiTags, Money,
    orders::{Order, OrderCommandResponse, load_order},
    page_request,
};
use crate::{
    auth::BearerAuth,
    error::{ApiError, ApiResult, ErrorCode},
    orders::OrderCommand,
    state::AppState,
};

/// The back office's side of orders (admin role).
pub struct AdminOrdersApi;

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct ShipBody {
    carrier: String,
    tracking_number: String,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct AdminOrderSummary {
    order_id: Uuid,
    customer_id: Uuid,
    customer_email: String,
    status: String,
    item_count: i64,
    total: Money,
    created_at: DateTime<Utc>,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct AdminOrderPage {
    items: Vec<AdminOrderSummary>,
    total: u64,
    page: u64,
    limit: u64,
}

#[derive(ApiResponse)]
enum ListAllOrdersResponse {
    /// Orders, newest first.
    #[oai(status = 200)]
    Ok(Json<AdminOrderPage>),
}

#[derive(ApiResponse)]
enum AdminGetOrderResponse {
    /// The order with its items, payment and timeline.
    #[oai(status = 200)]
    Ok(Json<Order>),
}

const MAX_SHIPMENT_FIELD: usize = 100;

fn parse_shipment(body: ShipBody) -> ApiResult<Shipment> {
    let field = |value: &str, name: &str| {
        let value = value.trim();
        if value.is_empty() || value.chars().count() > MAX_SHIPMENT_FIELD || value.chars().any(char::is_control) {
            Err(ApiError::new(ErrorCode::InvalidShipment, format!("{name} must be 1 to 100 printable characters")))
        } else {
            Ok(value.to_owned())
        }
    };
    Ok(Shipment { carrier: field(&body.carrier, "carrier")?, tracking_number: field(&body.tracking_number, "trackingNumber")? })
}

#[OpenApi(tag = "ApiTags::Admin")]
impl AdminOrdersApi {
    /// Every customer's orders, newest first; filter by status and/or customer (a user id or an
    /// email address).
    #[oai(path = "/admin/orders", method = "get")]
    async fn list_all_orders(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// PLACED, SHIPPED, DELIVERED, REFUND_PENDING, CANCELLED, RETURN_REQUESTED or RETURNED.
        status: Query<Option<String>>,
        /// The customer's user id or email address.
        customer: Query<Option<String>>,
        /// Page number, from 1.
        page: Query<Option<i64>>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<i64>>,
    ) -> ApiResult<ListAllOrdersResponse> {
        auth.require_admin()?;
        let page = page_request(page.0, limit.0)?;
        let status = match status.0.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(raw) => Some(
                OrderStatus::parse(&raw.to_ascii_uppercase())
                    .ok_or_else(|| ApiError::new(ErrorCode::InvalidParameter, format!("status {raw:?} is not an order status")))?,
            ),
        };
        let customer = match customer.0.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
            None => None,
            Some(raw) => match Uuid::parse_str(raw) {
                Ok(id) => Some(id),
                // an unknown email has no orders; the nil id matches none
                Err(_) => Some(users::find_user_by_email(&state.db, &raw.to_ascii_lowercase()).await?.map_or(Uuid::nil(), |u| u.id)),
            },
        };
        let (found, total) = orders::list_all(&state.db, status.map(OrderStatus::as_str), customer, page).await?;
        Ok(ListAllOrdersResponse::Ok(Json(AdminOrderPage {
            items: found
                .into_iter()
                .map(|o| AdminOrderSummary {
                    order_id: o.id,
                    customer_id: o.user_id,
                    customer_email: o.email,
                    status: o.status,
                    item_count: o.item_count,
                    total: Money { amount: o.total_minor, currency: o.currency },
                    created_at: o.created_at,
                })
                .collect(),
            total,
            page: page.page,
            limit: page.limit,
        })))
    }

    /// Any order, with items, payment and timeline.
    #[oai(path = "/admin/orders/:id", method = "get")]
    async fn admin_get_order(&self, state: Data<&AppState>, auth: BearerAuth, id: Path<Uuid>) -> ApiResult<AdminGetOrderResponse> {
        auth.require_admin()?;
        Ok(AdminGetOrderResponse::Ok(Json(load_order(&state, None, id.0).await?)))
    }

    /// Marks a placed order shipped, with its carrier and tracking number.
    #[oai(path = "/admin/orders/:id/ship", method = "post")]
    async fn ship_order(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<ShipBody>,
    ) -> ApiResult<OrderCommandResponse> {
        auth.require_admin()?;
        let shipment = parse_shipment(body.0)?;
        state.orders.command(id.0, None, OrderCommand::Ship(shipment)).await?;
        Ok(OrderCommandResponse::Ok(Json(load_order(&state, None, id.0).await?)))
    }

    /// Marks a shipped order delivered; its return window opens.
    #[oai(path = "/admin/orders/:id/deliver", method = "post")]
    async fn deliver_order(&self, state: Data<&AppState>, auth: BearerAuth, id: Path<Uuid>) -> ApiResult<OrderCommandResponse> {
        auth.require_admin()?;
        state.orders.command(id.0, None, OrderCommand::Deliver).await?;
        Ok(OrderCommandResponse::Ok(Json(load_order(&state, None, id.0).await?)))
    }

    /// The warehouse received the requested return: restock those units and refund them.
    #[oai(path = "/admin/orders/:id/receive-return", method = "post")]
    async fn receive_return(&self, state: Data<&AppState>, auth: BearerAuth, id: Path<Uuid>) -> ApiResult<OrderCommandResponse> {
        auth.require_admin()?;
        state.orders.command(id.0, None, OrderCommand::ReceiveReturn).await?;
        Ok(OrderCommandResponse::Ok(Json(load_order(&state, None, id.0).await?)))
    }
}

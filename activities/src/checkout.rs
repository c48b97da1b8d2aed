use std::sync::Arc;

use chrono::{TimeZone, Utc};
use sea_orm::{DatabaseConnection, TransactionTrait};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use uuid::Uuid;

use emporium_entities::store::{
    carts, checkouts,
    checkouts::CheckoutRecord,
    inventory::{self, ReserveLine},
    orders::{self, NewOrder, NewOrderItem},
    payments::Purchase,
};
use emporium_workflows::checkout::contract::{
    CART_EMPTY, CheckoutStage, CreateOrderInput, OUT_OF_STOCK, OrderPlaced, PricedLine, RESERVATION_LOST, ReleaseInput,
    ReserveCheckoutInput, ReservedCheckout, Shortage, Totals,
};

use crate::business_failure;

/// Sales tax in basis points of the subtotal (8%).
pub const TAX_BASIS_POINTS: i64 = 800;
/// Orders from this subtotal ship free; below it shipping costs `SHIPPING_MINOR`.
pub const FREE_SHIPPING_FROM_MINOR: i64 = 5_000;
pub const SHIPPING_MINOR: i64 = 499;

/// Totals of priced lines: tax rounded half up, flat shipping under the free-shipping line.
pub fn totals(lines: &[PricedLine], currency: &str) -> Totals {
    let subtotal: i64 = lines.iter().map(|l| l.unit_price_minor * i64::from(l.quantity)).sum();
    let tax = (subtotal * TAX_BASIS_POINTS + 5_000) / 10_000;
    let shipping = if subtotal >= FREE_SHIPPING_FROM_MINOR { 0 } else { SHIPPING_MINOR };
    Totals {
        currency: currency.to_owned(),
        subtotal_minor: subtotal,
        tax_minor: tax,
        shipping_minor: shipping,
        total_minor: subtotal + tax + shipping,
    }
}

fn parse_id(raw: &str) -> Result<Uuid, ActivityError> {
    Uuid::parse_str(raw).map_err(|e| business_failure("invalid_input", format!("{raw:?}: {e}"), None::<()>))
}

/// The database steps of a checkout. Each is one transaction and safe to retry.
pub struct CheckoutActivities {
    db: DatabaseConnection,
    /// Holds the API's read cache of carts, which an order changes.
    redis: fred::clients::Client,
}

impl CheckoutActivities {
    pub fn new(db: DatabaseConnection, redis: fred::clients::Client) -> Self {
        Self { db, redis }
    }
}

#[activities]
impl CheckoutActivities {
    /// Implements `ReserveCheckout`.
    #[activity]
    pub async fn reserve_checkout(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: ReserveCheckoutInput,
    ) -> Result<ReservedCheckout, ActivityError> {
        self.reserve_checkout_now(input).await
    }

    /// Implements `ReleaseStock`.
    #[activity]
    pub async fn release_stock(self: Arc<Self>, _ctx: ActivityContext, input: ReleaseInput) -> Result<(), ActivityError> {
        self.release_stock_now(input).await
    }

    /// Implements `CreateOrder`.
    #[activity]
    pub async fn create_order(self: Arc<Self>, _ctx: ActivityContext, input: CreateOrderInput) -> Result<OrderPlaced, ActivityError> {
        self.create_order_now(input).await
    }
}

impl CheckoutActivities {
    /// The work of `reserve_checkout`, callable without Temporal (the benchmark runs the saga this way).
    pub async fn reserve_checkout_now(&self, input: ReserveCheckoutInput) -> Result<ReservedCheckout, ActivityError> {
        let checkout_id = parse_id(&input.checkout_id)?;
        let user_id = parse_id(&input.user_id)?;
        let tx = self.db.begin().await?;
        // One attempt at a time: an attempt that timed out may still be running.
        checkouts::lock_id(&tx, checkout_id).await?;
        // A retry after a commit whose answer was lost: the checkout is recorded, nothing to redo.
        if let Some(record) = checkouts::find(&tx, checkout_id).await? {
            tx.commit().await?;
            return match record.status.as_str() {
                "AWAITING_PAYMENT" | "PAYING" | "COMPLETED" => Ok(reserved_from(&record)?),
                ended => Err(business_failure(RESERVATION_LOST, format!("the checkout already ended ({ended})"), None::<()>)),
            };
        }
        let cart = carts::load_user_cart(&tx, user_id).await?;
        if cart.lines.is_empty() {
            return Err(business_failure(CART_EMPTY, "the cart is empty".to_owned(), None::<()>));
        }
        let ids: Vec<i64> = cart.lines.iter().map(|l| l.product_id).collect();
        let products = carts::cart_products(&tx, &ids).await?;
        let mut lines = Vec::new();
        let mut gone = Vec::new();
        // A product repriced in another currency than the cart's since it was added cannot be
        // charged with the rest: it is refused like one that left the catalogue (the cart
        // shows it as not purchasable).
        let cart_currency = cart.lines[0].currency.clone();
        for line in &cart.lines {
            match products.iter().find(|p| p.id == line.product_id && !p.deleted && p.currency == cart_currency) {
                Some(p) => lines.push(PricedLine {
                    product_id: p.id,
                    sku: p.sku.clone(),
                    title: p.title.clone(),
                    quantity: line.quantity,
                    unit_price_minor: p.price_minor,
                }),
                None => gone.push(Shortage { product_id: line.product_id, requested: line.quantity, available: 0 }),
            }
        }
        let currency = cart_currency;
        let expires_at = Utc.timestamp_millis_opt(input.reserved_until_ms as i64).single().unwrap_or_else(Utc::now);
        let reserve: Vec<ReserveLine> = lines.iter().map(|l| ReserveLine { product_id: l.product_id, quantity: l.quantity }).collect();
        let short = inventory::reserve_lines(&tx, &input.owner, reserve, expires_at).await?;
        let mut shortages: Vec<Shortage> = short
            .into_iter()
            .map(|s| Shortage { product_id: s.product_id, requested: s.requested, available: s.available })
            .chain(gone)
            .collect();
        if !shortages.is_empty() {
            tx.rollback().await?;
            shortages.sort_by_key(|s| s.product_id);
            let names: Vec<String> = shortages.iter().map(|s| s.product_id.to_string()).collect();
            return Err(business_failure(OUT_OF_STOCK, format!("not enough stock of products {}", names.join(", ")), Some(shortages)));
        }
        let totals = totals(&lines, &currency);
        let record = CheckoutRecord {
            id: checkout_id,
            user_id,
            status: CheckoutStage::AwaitingPayment.as_str().to_owned(),
            currency: totals.currency.clone(),
            subtotal_minor: totals.subtotal_minor,
            tax_minor: totals.tax_minor,
            shipping_minor: totals.shipping_minor,
            total_minor: totals.total_minor,
            lines: serde_json::to_value(&lines)?,
            reserved_until: Some(expires_at),
            order_id: None,
            failure_code: None,
        };
        checkouts::insert(&tx, &record).await?;
        tx.commit().await?;
        Ok(ReservedCheckout { lines, totals })
    }

    /// The work of `release_stock`, callable without Temporal (the benchmark runs the saga this way).
    pub async fn release_stock_now(&self, input: ReleaseInput) -> Result<(), ActivityError> {
        let checkout_id = parse_id(&input.checkout_id)?;
        let tx = self.db.begin().await?;
        let units = inventory::release_reservations(&tx, &input.owner).await?;
        checkouts::set_status(&tx, checkout_id, input.stage.as_str(), input.failure.as_deref()).await?;
        tx.commit().await?;
        tracing::info!(checkout_id = %checkout_id, units, stage = input.stage.as_str(), "reserved stock released");
        Ok(())
    }

    /// The work of `create_order`, callable without Temporal (the benchmark runs the saga this way).
    pub async fn create_order_now(&self, input: CreateOrderInput) -> Result<OrderPlaced, ActivityError> {
        let checkout_id = parse_id(&input.checkout_id)?;
        let user_id = parse_id(&input.user_id)?;
        let payment_id = parse_id(&input.payment_id)?;
        let tx = self.db.begin().await?;
        // One attempt at a time: a timed-out attempt may still be committing this very order.
        checkouts::lock_id(&tx, checkout_id).await?;
        if let Some(order_id) = orders::order_of_checkout(&tx, checkout_id).await? {
            tx.commit().await?;
            // an earlier attempt made the order, and may have stopped before the cache
            if let Err(err) = emporium_entities::redis::forget_user_cart(&self.redis, user_id).await {
                tracing::warn!(error = %err, user_id = %user_id, "could not drop the cached cart after an order; it expires within the hour");
            }
            return Ok(OrderPlaced { order_id: order_id.to_string(), payment_id: input.payment_id });
        }
        let reserved: Vec<ReserveLine> =
            input.lines.iter().map(|l| ReserveLine { product_id: l.product_id, quantity: l.quantity }).collect();
        if !inventory::confirm_reservations(&tx, &input.owner, &reserved).await? {
            tx.rollback().await?;
            return Err(business_failure(RESERVATION_LOST, "the reserved stock is no longer held".to_owned(), None::<()>));
        }
        let order = NewOrder {
            user_id,
            source: Purchase::Checkout(checkout_id),
            payment_id,
            currency: input.totals.currency.clone(),
            subtotal_minor: input.totals.subtotal_minor,
            tax_minor: input.totals.tax_minor,
            shipping_minor: input.totals.shipping_minor,
            total_minor: input.totals.total_minor,
            shipping_address: serde_json::to_value(&input.shipping_address)?,
            items: input
                .lines
                .iter()
                .map(|l| NewOrderItem {
                    product_id: l.product_id,
                    sku: l.sku.clone(),
                    title: l.title.clone(),
                    quantity: l.quantity,
                    unit_price_minor: l.unit_price_minor,
                })
                .collect(),
        };
        let order_id = orders::insert_order(&tx, &order).await?;
        let bought: Vec<(i64, i32)> = input.lines.iter().map(|l| (l.product_id, l.quantity)).collect();
        let cart_version = carts::remove_bought(&tx, user_id, &bought).await?;
        checkouts::complete(&tx, checkout_id, order_id).await?;
        // The confirmation is queued with the order; the order's workflow delivers it.
        emporium_entities::store::notifications::enqueue(
            &tx,
            user_id,
            Some(order_id),
            "ORDER_PLACED",
            &format!("order:{order_id}:notify:placed"),
            &serde_json::json!({ "orderId": order_id, "userId": user_id, "details": { "total": input.totals.total_minor, "currency": input.totals.currency } }),
        )
        .await?;
        tx.commit().await?;
        // The API refreshes the cart when it answers the payment, but the answer may never be
        // given (the client went away, the API restarted): the cache must not keep the lines.
        if let Some(version) = cart_version
            && let Err(err) = emporium_entities::redis::supersede_user_cart(&self.redis, user_id, version).await
        {
            tracing::warn!(error = %err, user_id = %user_id, "could not drop the cached cart after an order; it expires within the hour");
        }
        tracing::info!(checkout_id = %checkout_id, order_id = %order_id, "order created");
        Ok(OrderPlaced { order_id: order_id.to_string(), payment_id: input.payment_id })
    }
}

fn reserved_from(record: &CheckoutRecord) -> Result<ReservedCheckout, ActivityError> {
    Ok(ReservedCheckout {
        lines: serde_json::from_value(record.lines.clone())?,
        totals: Totals {
            currency: record.currency.clone(),
            subtotal_minor: record.subtotal_minor,
            tax_minor: record.tax_minor,
            shipping_minor: record.shipping_minor,
            total_minor: record.total_minor,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(price: i64, quantity: i32) -> PricedLine {
        PricedLine { product_id: 1, sku: "S".into(), title: "T".into(), quantity, unit_price_minor: price }
    }

    #[test]
    fn totals_round_tax_half_up_and_ship_free_from_the_threshold() {
        let small = totals(&[line(1_000, 2)], "USD");
        assert_eq!((small.subtotal_minor, small.tax_minor, small.shipping_minor, small.total_minor), (2_000, 160, 499, 2_659));
        let big = totals(&[line(2_500, 2)], "USD");
        assert_eq!((big.tax_minor, big.shipping_minor, big.total_minor), (400, 0, 5_400));
        assert_eq!(totals(&[line(6, 1)], "USD").tax_minor, 0, "0.48 rounds down");
        assert_eq!(totals(&[line(7, 1)], "USD").tax_minor, 1, "0.56 rounds up");
    }
}

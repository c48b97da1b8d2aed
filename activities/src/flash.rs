//! The side effects of flash sales: Redis loading and give-backs, claims and their orders in
//! Postgres.

use std::sync::Arc;

use fred::clients::Client as RedisClient;
use sea_orm::{DatabaseConnection, TransactionTrait};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use uuid::Uuid;

use emporium_entities::{
    flash_redis,
    store::{
        flash_sales, notifications,
        orders::{self, NewOrder, NewOrderItem},
        payments::Purchase,
    },
};
use emporium_workflows::{
    checkout::contract::PricedLine,
    flash::contract::{BeginPayment, ClaimPurchase, ClaimRef, CreateClaimOrderInput, OrderPlaced, ReleaseClaimInput, SaleOutcome, SaleRef},
};

use crate::{business_failure, checkout::totals};

pub struct FlashSaleActivities {
    db: DatabaseConnection,
    redis: RedisClient,
}

impl FlashSaleActivities {
    pub fn new(db: DatabaseConnection, redis: RedisClient) -> Self {
        Self { db, redis }
    }
}

/// Attempts of `LoadSale` that treat a missing sale as one whose creation has not committed.
const SALE_COMMIT_ATTEMPTS: u32 = 6;

fn parse(raw: &str) -> Result<Uuid, ActivityError> {
    Uuid::parse_str(raw).map_err(|e| business_failure("invalid_input", format!("{raw:?}: {e}"), None::<()>))
}

fn redis_error(err: fred::error::Error) -> ActivityError {
    anyhow::Error::new(err).context("redis").into()
}

#[activities]
impl FlashSaleActivities {
    /// Implements `LoadSale`.
    #[activity]
    pub async fn load_sale(self: Arc<Self>, ctx: ActivityContext, input: SaleRef) -> Result<(), ActivityError> {
        let sale_id = parse(&input.sale_id)?;
        let Some(sale) = flash_sales::find(&self.db, sale_id).await? else {
            // The API starts this workflow just before it commits the sale: a sale starting
            // within the pre-warm lead is looked for before that commit is visible. Missing for
            // the first attempts (about 15 s of backoff) means "not yet"; after that, "never".
            if ctx.info().attempt < SALE_COMMIT_ATTEMPTS {
                return Err(anyhow::anyhow!("flash sale {sale_id} is not committed yet").into());
            }
            return Err(business_failure("sale_not_found", format!("flash sale {sale_id} does not exist"), None::<()>));
        };
        let state = flash_sales::redis_state(&self.db, &sale).await?;
        let loaded = flash_redis::load(&self.redis, sale_id, &state).await.map_err(redis_error)?;
        flash_sales::set_status(&self.db, sale_id, "LIVE").await?;
        tracing::info!(sale_id = %sale_id, loaded, remaining = state.remaining, "flash sale pre-warmed");
        Ok(())
    }

    /// Implements `EndSale`.
    #[activity]
    pub async fn end_sale(self: Arc<Self>, _ctx: ActivityContext, input: SaleRef) -> Result<(), ActivityError> {
        let sale_id = parse(&input.sale_id)?;
        flash_sales::set_status(&self.db, sale_id, "ENDED").await?;
        flash_redis::forget(&self.redis, sale_id).await.map_err(redis_error)?;
        tracing::info!(sale_id = %sale_id, "flash sale ended");
        Ok(())
    }

    /// Implements `ReconcileSale`.
    #[activity]
    pub async fn reconcile_sale(self: Arc<Self>, _ctx: ActivityContext, input: SaleRef) -> Result<SaleOutcome, ActivityError> {
        let sale_id = parse(&input.sale_id)?;
        // Postgres first, as in `release_claim`; then every expired claim's unit is made sure
        // to be back (once per claim id), so a give-back that failed after the expiry, here or
        // in a claim's workflow, is made good by this activity's retry.
        let abandoned = flash_sales::expire_abandoned_claims(&self.db, sale_id, None).await?;
        if abandoned > 0 {
            tracing::warn!(sale_id = %sale_id, abandoned, "abandoned flash sale claims expired at reconciliation");
        }
        // sent together: one round trip's wait, not one per claim, and this repeats while claims
        // are still open
        let expired = flash_sales::expired_claims(&self.db, sale_id, None).await?;
        futures::future::try_join_all(
            expired.into_iter().map(|(claim_id, user_id)| flash_redis::give_back(&self.redis, sale_id, user_id, claim_id)),
        )
        .await
        .map_err(redis_error)?;
        let remaining = flash_redis::remaining(&self.redis, sale_id).await.map_err(redis_error)?;
        let tx = self.db.begin().await?;
        let outcome = flash_sales::reconcile(&tx, sale_id, remaining).await?;
        tx.commit().await?;
        Ok(match outcome {
            Some(r) => {
                tracing::info!(sale_id = %sale_id, ?r, "flash sale reconciled");
                SaleOutcome {
                    reconciled: true,
                    paid_claims: r.paid_claims,
                    returned_to_stock: r.returned_to_stock,
                    consistent: r.consistent,
                }
            }
            None => SaleOutcome::default(),
        })
    }

    /// Implements `BeginClaimPayment`.
    #[activity]
    pub async fn begin_claim_payment(self: Arc<Self>, _ctx: ActivityContext, input: ClaimRef) -> Result<BeginPayment, ActivityError> {
        let claim_id = parse(&input.claim_id)?;
        let Some(claim) = flash_sales::begin_payment(&self.db, claim_id).await? else {
            return Ok(BeginPayment::Expired);
        };
        let sale = flash_sales::find(&self.db, claim.sale_id)
            .await?
            .ok_or_else(|| business_failure("sale_not_found", format!("flash sale {} does not exist", claim.sale_id), None::<()>))?;
        let product = emporium_entities::store::carts::cart_products(&self.db, &[sale.product_id]).await?;
        let product =
            product.first().ok_or_else(|| business_failure("product_not_found", "the sale's product is gone".to_owned(), None::<()>))?;
        let line = PricedLine {
            product_id: sale.product_id,
            sku: product.sku.clone(),
            title: product.title.clone(),
            quantity: claim.quantity,
            unit_price_minor: sale.price_minor,
        };
        let t = totals(std::slice::from_ref(&line), &sale.currency);
        Ok(BeginPayment::Ready {
            purchase: ClaimPurchase {
                product_id: line.product_id,
                sku: line.sku,
                title: line.title,
                quantity: line.quantity,
                unit_price_minor: line.unit_price_minor,
                currency: t.currency,
                subtotal_minor: t.subtotal_minor,
                tax_minor: t.tax_minor,
                shipping_minor: t.shipping_minor,
                total_minor: t.total_minor,
            },
        })
    }

    /// Implements `ReleaseClaim`.
    #[activity]
    pub async fn release_claim(self: Arc<Self>, _ctx: ActivityContext, input: ReleaseClaimInput) -> Result<(), ActivityError> {
        let (sale_id, user_id, claim_id) = (parse(&input.claim.sale_id)?, parse(&input.claim.user_id)?, parse(&input.claim.claim_id)?);
        let ended_now = flash_sales::expire_claim(&self.db, claim_id, input.even_paying).await?;
        // Postgres first: once the claim is EXPIRED there, a rebuilt counter counts its unit as
        // free; the Redis give-back is once per claim id whatever the retries.
        let expired = flash_sales::find_claim(&self.db, claim_id).await?.is_some_and(|c| c.status == "EXPIRED");
        if expired {
            flash_redis::give_back(&self.redis, sale_id, user_id, claim_id).await.map_err(redis_error)?;
        }
        tracing::info!(sale_id = %sale_id, claim_id = %claim_id, ended_now, "flash sale claim released");
        Ok(())
    }

    /// Implements `CreateClaimOrder`.
    #[activity]
    pub async fn create_claim_order(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: CreateClaimOrderInput,
    ) -> Result<OrderPlaced, ActivityError> {
        let (sale_id, user_id, claim_id) = (parse(&input.claim.sale_id)?, parse(&input.claim.user_id)?, parse(&input.claim.claim_id)?);
        let payment_id = parse(&input.payment_id)?;
        let tx = self.db.begin().await?;
        let claim = flash_sales::lock_claim(&tx, claim_id)
            .await?
            .ok_or_else(|| business_failure("claim_not_found", format!("claim {claim_id} does not exist"), None::<()>))?;
        if let Some(order_id) = claim.order_id {
            tx.commit().await?;
            return Ok(OrderPlaced { order_id: order_id.to_string(), payment_id: input.payment_id });
        }
        if claim.status != "PAYING" {
            return Err(business_failure("claim_not_paying", format!("claim {claim_id} is {}", claim.status), None::<()>));
        }
        let p = &input.purchase;
        let order = NewOrder {
            user_id,
            source: Purchase::FlashClaim(claim_id),
            payment_id,
            currency: p.currency.clone(),
            subtotal_minor: p.subtotal_minor,
            tax_minor: p.tax_minor,
            shipping_minor: p.shipping_minor,
            total_minor: p.total_minor,
            shipping_address: serde_json::to_value(&input.shipping_address)?,
            items: vec![NewOrderItem {
                product_id: p.product_id,
                sku: p.sku.clone(),
                title: p.title.clone(),
                quantity: p.quantity,
                unit_price_minor: p.unit_price_minor,
            }],
        };
        let order_id = orders::insert_order(&tx, &order).await?;
        flash_sales::complete_claim(&tx, &claim, p.product_id, order_id).await?;
        notifications::enqueue(
            &tx,
            user_id,
            Some(order_id),
            "ORDER_PLACED",
            &format!("order:{order_id}:notify:placed"),
            &serde_json::json!({ "orderId": order_id, "userId": user_id, "details": { "total": p.total_minor, "currency": p.currency, "flashSaleId": sale_id } }),
        )
        .await?;
        tx.commit().await?;
        if let Err(err) = flash_redis::claim_paid(&self.redis, sale_id, user_id, claim_id).await {
            // only tidies the user's entry: it expires with the claim anyway
            tracing::warn!(error = %err, claim_id = %claim_id, "could not clear the paid claim in redis");
        }
        tracing::info!(sale_id = %sale_id, claim_id = %claim_id, order_id = %order_id, "flash sale order created");
        Ok(OrderPlaced { order_id: order_id.to_string(), payment_id: input.payment_id })
    }
}

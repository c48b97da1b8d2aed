//! Flash sales: admin creation and live figures, the public view, entry and claim payment.

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, param::Path, payload::Json};
use sea_orm::TransactionTrait;
use temporalio_client::{
    WorkflowExecuteUpdateOptions, WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowStartOptions,
    errors::{WorkflowStartError, WorkflowUpdateError},
};
use temporalio_common::search_attributes::SearchAttributes;
use uuid::Uuid;

use emporium_entities::{
    flash_redis::{self, Entry},
    store::flash_sales::{self, ClaimDecision, CreateSaleError, FlashSale as StoredSale, NewSale},
};
use emporium_workflows::{
    checkout::contract::PaymentOutcome,
    flash::{
        FlashSaleClaimWorkflow, FlashSaleWorkflow,
        contract::{
            ClaimInput, ClaimPayment, FLASH_SALE_ID, REFUSAL_CLAIM_CLOSED, REFUSAL_CLAIM_EXPIRED, SaleInput, claim_workflow_id,
            sale_workflow_id,
        },
    },
};

use super::{
    ApiTags, Money,
    checkout::{SubmitPayment, payment_declined, payment_failed, payment_request},
    orders::{Order, load_order},
};
use crate::{
    auth::BearerAuth,
    error::{ApiError, ApiResult, ErrorCode},
    state::AppState,
};

pub struct FlashSalesApi;

const MAX_QUANTITY: i64 = 1_000_000;
const MAX_PER_USER: i64 = 100;
const MAX_ADMISSION: i64 = 1_000_000;

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct CreateFlashSale {
    product_id: i64,
    price: Money,
    quantity: i64,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    /// Units one user may buy (default 1).
    per_user_limit: Option<i64>,
    /// Entries admitted per second before the waiting room queues the rest; 0 turns the
    /// waiting room off. Default: `FLASH_SALE_ADMISSION_PER_SEC`.
    admission_per_second: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
enum SaleStatus {
    Upcoming,
    Live,
    Ended,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct PublicFlashSale {
    id: Uuid,
    product_id: i64,
    status: SaleStatus,
    price: Money,
    quantity: i32,
    /// Units not yet claimed.
    remaining: i64,
    per_user_limit: i32,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct AdminFlashSale {
    #[oai(flatten)]
    sale: PublicFlashSale,
    /// SCHEDULED, LIVE, ENDED or RECONCILED.
    lifecycle: String,
    admission_per_second: i32,
    /// Units held by claims waiting for payment.
    claimed: i64,
    sold: i64,
    expired_claims: i64,
    /// Users in the waiting room.
    queued: i64,
    /// After the sale: Redis against Postgres, and the units returned to normal stock.
    reconciliation: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
enum EntryResult {
    Claimed,
    Queued,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct EntryAnswer {
    result: EntryResult,
    #[oai(skip_serializing_if_is_none)]
    claim_id: Option<Uuid>,
    /// Pay before this.
    #[oai(skip_serializing_if_is_none)]
    expires_at: Option<DateTime<Utc>>,
    /// Place in the waiting room, from 1; it never goes up.
    #[oai(skip_serializing_if_is_none)]
    position: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    retry_after_ms: Option<i64>,
}

#[derive(ApiResponse)]
enum CreateFlashSaleResponse {
    /// Created; its units are set aside from the product's stock.
    #[oai(status = 201)]
    Created(Json<AdminFlashSale>),
}

#[derive(ApiResponse)]
enum AdminFlashSaleResponse {
    /// The sale with live figures.
    #[oai(status = 200)]
    Ok(Json<AdminFlashSale>),
}

#[derive(ApiResponse)]
enum PublicFlashSaleResponse {
    #[oai(status = 200)]
    Ok(Json<PublicFlashSale>),
}

#[derive(ApiResponse)]
enum EnterResponse {
    /// A unit is held for you: pay before `expiresAt`.
    #[oai(status = 200)]
    Claimed(Json<EntryAnswer>),
    /// You are in the waiting room: try again after `retryAfterMs`.
    #[oai(status = 202)]
    Queued(Json<EntryAnswer>),
}

#[derive(ApiResponse)]
enum PayClaimResponse {
    /// Paid: the order.
    #[oai(status = 201)]
    Created(Json<Order>),
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::new(ErrorCode::SaleNotFound, format!("flash sale {id} does not exist"))
}

fn invalid(message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidFlashSale, message.to_owned())
}

fn status_of(sale: &StoredSale, now: DateTime<Utc>) -> SaleStatus {
    if now < sale.starts_at {
        SaleStatus::Upcoming
    } else if now < sale.ends_at && sale.status != "ENDED" && sale.status != "RECONCILED" {
        SaleStatus::Live
    } else {
        SaleStatus::Ended
    }
}

async fn public_view(state: &AppState, sale: &StoredSale) -> ApiResult<PublicFlashSale> {
    // Redis has the live counter; before the pre-warm or after a loss, Postgres answers.
    let remaining = match flash_redis::remaining(&state.redis, sale.id).await {
        Ok(Some(remaining)) if sale.status != "RECONCILED" => remaining,
        _ => flash_sales::redis_state(&state.db, sale).await?.remaining,
    };
    Ok(PublicFlashSale {
        id: sale.id,
        product_id: sale.product_id,
        status: status_of(sale, Utc::now()),
        price: Money { amount: sale.price_minor, currency: sale.currency.clone() },
        quantity: sale.quantity,
        remaining: if sale.status == "RECONCILED" { 0 } else { remaining },
        per_user_limit: sale.per_user_limit,
        starts_at: sale.starts_at,
        ends_at: sale.ends_at,
    })
}

async fn admin_view(state: &AppState, sale: StoredSale) -> ApiResult<AdminFlashSale> {
    let figures = flash_sales::figures(&state.db, sale.id).await?;
    let queued = flash_redis::queue_length(&state.redis, sale.id).await.unwrap_or(0);
    state.metrics.flash_queue_length(sale.id, queued);
    Ok(AdminFlashSale {
        sale: public_view(state, &sale).await?,
        lifecycle: sale.status.clone(),
        admission_per_second: sale.admission_per_sec,
        claimed: figures.open,
        sold: figures.paid,
        expired_claims: figures.expired,
        queued,
        reconciliation: sale.reconciliation,
    })
}

/// Loads a sale Redis does not have (not yet pre-warmed, or lost in a restart) from Postgres.
async fn rebuild(state: &AppState, sale: &StoredSale) -> ApiResult<()> {
    // A stampede that finds the counter gone waits here for one rebuild, instead of every
    // request reading the sale's claims from Postgres at the moment it is busiest.
    let _rebuilding = state.flash_rebuilds.lock(sale.id).await;
    let redis = |e| ApiError::unavailable("Redis", e);
    if flash_redis::remaining(&state.redis, sale.id).await.map_err(redis)?.is_some() {
        return Ok(());
    }
    let loaded = flash_sales::redis_state(&state.db, sale).await?;
    // another API instance may have loaded it meanwhile; a live counter is never overwritten
    if flash_redis::load(&state.redis, sale.id, &loaded).await.map_err(redis)? {
        state.metrics.flash_counter_rebuilt();
        tracing::warn!(sale_id = %sale.id, remaining = loaded.remaining, "flash sale counter loaded from Postgres");
    }
    Ok(())
}

/// One rebuild of a sale's Redis state at a time in this process.
#[derive(Default)]
pub struct RebuildGate {
    sales: std::sync::Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

impl RebuildGate {
    pub async fn lock(&self, sale: Uuid) -> tokio::sync::OwnedMutexGuard<()> {
        let gate = {
            let mut sales = self.sales.lock().expect("rebuild gate lock");
            // forget the gates nobody holds or waits for
            sales.retain(|_, gate| Arc::strong_count(gate) > 1);
            sales.entry(sale).or_default().clone()
        };
        gate.lock_owned().await
    }
}

/// Records a claim Redis granted; Postgres decides under the sale's lock, so a counter that
/// believes in too many units still cannot oversell. A refused claim's unit goes back.
async fn record_claim(state: &AppState, sale: &StoredSale, user: Uuid, claim_id: Uuid, expires_at_ms: i64) -> ApiResult<(Uuid, i64)> {
    let expires_at = DateTime::from_timestamp_millis(expires_at_ms).unwrap_or_else(Utc::now);
    let tx = state.db.begin().await.map_err(emporium_entities::StoreError::from)?;
    let decision = flash_sales::record_claim(&tx, sale, user, claim_id, expires_at).await?;
    tx.commit().await.map_err(emporium_entities::StoreError::from)?;
    match decision {
        ClaimDecision::Recorded(_) => {}
        ClaimDecision::Existing(open) => {
            give_back(state, sale.id, user, claim_id).await;
            return Ok((open.id, open.expires_at.timestamp_millis()));
        }
        ClaimDecision::SoldOut => {
            // the counter believed in a unit Postgres does not have: it keeps the decrement
            tracing::warn!(sale_id = %sale.id, "the flash-sale counter granted a unit Postgres does not have");
            if let Err(err) = flash_redis::withdraw_phantom_claim(&state.redis, sale.id, user, claim_id).await {
                tracing::error!(error = %err, sale_id = %sale.id, "could not withdraw a refused claim from Redis");
            }
            state.metrics.flash_entry("sold_out");
            return Err(ApiError::new(ErrorCode::SoldOut, "the sale is sold out"));
        }
        ClaimDecision::LimitReached => {
            give_back(state, sale.id, user, claim_id).await;
            state.metrics.flash_entry("limit_reached");
            return Err(limit_reached(sale));
        }
    }
    let client = state.temporal.client().await.map_err(|e| ApiError::unavailable("the workflow service", e))?;
    let input = ClaimInput {
        sale_id: sale.id.to_string(),
        user_id: user.to_string(),
        claim_id: claim_id.to_string(),
        expires_at_ms: expires_at_ms as u64,
        return_window_secs: state.config.order_return_window.as_secs(),
    };
    let options = WorkflowStartOptions::new(state.config.task_queue.clone(), claim_workflow_id(&input.sale_id, &input.user_id))
        .id_conflict_policy(WorkflowIdConflictPolicy::Fail)
        .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicate)
        .search_attributes(SearchAttributes::new([FLASH_SALE_ID.value_set(sale.id.to_string())]))
        .build();
    if let Err(err) = client.start_workflow(FlashSaleClaimWorkflow::run, input, options).await {
        // nobody would release the unit: give it back now and let the buyer try again
        if let Err(expire) = flash_sales::expire_claim(&state.db, claim_id, false).await {
            // reconciliation expires it once the sale has ended
            tracing::error!(error = ?anyhow::Error::new(expire), claim_id = %claim_id, "could not expire a claim whose workflow did not start");
        }
        give_back(state, sale.id, user, claim_id).await;
        return Err(match err {
            WorkflowStartError::AlreadyStarted { .. } => ApiError::new(ErrorCode::PurchaseLimitReached, "a claim of yours is still open"),
            other => ApiError::unavailable("the workflow service", other),
        });
    }
    Ok((claim_id, expires_at_ms))
}

async fn give_back(state: &AppState, sale: Uuid, user: Uuid, claim_id: Uuid) {
    if let Err(err) = flash_redis::give_back(&state.redis, sale, user, claim_id).await {
        // the counter is low by one until the sale is reconciled; never high
        tracing::error!(error = %err, sale_id = %sale, "could not give a refused claim's unit back to the counter");
    }
}

/// A user at their limit may be held there by a claim nobody will end: the API died between
/// recording it and starting its workflow. Such a claim (still CLAIMED a minute past its expiry)
/// is expired now and its unit given back; `true` if there was one. Bounded by the rate limit:
/// at most a few Postgres queries per user a minute.
async fn release_abandoned_claims(state: &AppState, sale: Uuid, user: Uuid) -> ApiResult<bool> {
    let abandoned = flash_sales::expire_abandoned_claims(&state.db, sale, Some(user)).await?;
    if abandoned > 0 {
        tracing::warn!(sale_id = %sale, user_id = %user, abandoned, "abandoned flash sale claims expired");
    }
    // Every expired claim of the user, not only those expired just now: a give-back that
    // failed after an earlier expiry is made good here (it is once per claim id).
    let mut released = false;
    for (claim_id, _) in flash_sales::expired_claims(&state.db, sale, Some(user)).await? {
        released |= flash_redis::give_back(&state.redis, sale, user, claim_id).await.map_err(|e| ApiError::unavailable("Redis", e))?;
    }
    Ok(released)
}

fn limit_reached(sale: &StoredSale) -> ApiError {
    ApiError::new(ErrorCode::PurchaseLimitReached, format!("at most {} per customer", sale.per_user_limit))
}

fn claimed(claim_id: Uuid, expires_at_ms: i64) -> EnterResponse {
    EnterResponse::Claimed(Json(EntryAnswer {
        result: EntryResult::Claimed,
        claim_id: Some(claim_id),
        expires_at: DateTime::from_timestamp_millis(expires_at_ms),
        position: None,
        retry_after_ms: None,
    }))
}

#[OpenApi(tag = "ApiTags::FlashSales")]
impl FlashSalesApi {
    /// Create a flash sale (admin). Its units are set aside from the product's stock at once
    /// (409 `insufficient_stock` if there are not enough); a workflow loads it into Redis before
    /// it starts, ends it, and returns the unsold units afterwards.
    #[oai(path = "/admin/flash-sales", method = "post", tag = "ApiTags::Admin")]
    async fn create_flash_sale(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<CreateFlashSale>,
    ) -> ApiResult<CreateFlashSaleResponse> {
        auth.require_admin()?;
        let b = body.0;
        if !(1..=MAX_QUANTITY).contains(&b.quantity) {
            return Err(invalid("quantity must be 1 to 1000000"));
        }
        let per_user = b.per_user_limit.unwrap_or(1);
        if !(1..=MAX_PER_USER).contains(&per_user) {
            return Err(invalid("perUserLimit must be 1 to 100"));
        }
        let admission = b.admission_per_second.unwrap_or(state.config.flash_sale_admission_per_sec);
        if !(0..=MAX_ADMISSION).contains(&admission) {
            return Err(invalid("admissionPerSecond must be 0 to 1000000"));
        }
        if b.price.amount < 0 || b.price.amount > 100_000_000_000 {
            return Err(ApiError::new(ErrorCode::InvalidPrice, "price.amount must be 0 or more minor units"));
        }
        if b.ends_at <= b.starts_at {
            return Err(invalid("endsAt must be after startsAt"));
        }
        if b.ends_at <= Utc::now() {
            return Err(invalid("endsAt must be in the future"));
        }
        let product = emporium_entities::store::carts::cart_products(&state.db, &[b.product_id]).await?;
        let product = product
            .into_iter()
            .find(|p| !p.deleted)
            .ok_or_else(|| ApiError::new(ErrorCode::ProductNotFound, format!("product {} does not exist", b.product_id)))?;
        if product.currency != b.price.currency {
            return Err(ApiError::new(ErrorCode::CurrencyMismatch, format!("the product is priced in {}", product.currency)));
        }
        let tx = state.db.begin().await.map_err(emporium_entities::StoreError::from)?;
        let created = flash_sales::create(
            &tx,
            &NewSale {
                product_id: b.product_id,
                price_minor: b.price.amount,
                currency: b.price.currency.clone(),
                quantity: b.quantity as i32,
                per_user_limit: per_user as i32,
                admission_per_sec: admission as i32,
                starts_at: b.starts_at,
                ends_at: b.ends_at,
            },
        )
        .await;
        let sale = match created {
            Ok(sale) => sale,
            Err(CreateSaleError::ProductNotFound) => {
                return Err(ApiError::new(ErrorCode::ProductNotFound, format!("product {} does not exist", b.product_id)));
            }
            Err(CreateSaleError::NotEnoughStock { available }) => {
                return Err(ApiError::with_details(
                    ErrorCode::InsufficientStock,
                    format!("only {available} units are available"),
                    Some(serde_json::json!({ "productId": b.product_id, "available": available })),
                ));
            }
            Err(CreateSaleError::Store(err)) => return Err(err.into()),
        };
        // The workflow starts before the commit: a sale never exists without its timeline. A
        // workflow whose sale did not commit ends when it still finds none after a few tries
        // (`LoadSale` waits out the moment between this start and the commit).
        let client = state.temporal.client().await.map_err(|e| ApiError::unavailable("the workflow service", e))?;
        let input = SaleInput {
            sale_id: sale.id.to_string(),
            starts_at_ms: sale.starts_at.timestamp_millis().max(0) as u64,
            ends_at_ms: sale.ends_at.timestamp_millis().max(0) as u64,
            claim_ttl_ms: state.config.flash_sale_claim_ttl.as_millis() as u64,
        };
        let options = WorkflowStartOptions::new(state.config.task_queue.clone(), sale_workflow_id(&input.sale_id))
            .search_attributes(SearchAttributes::new([FLASH_SALE_ID.value_set(sale.id.to_string())]))
            .build();
        client
            .start_workflow(FlashSaleWorkflow::run, input, options)
            .await
            .map_err(|e| ApiError::unavailable("the workflow service", e))?;
        tx.commit().await.map_err(emporium_entities::StoreError::from)?;
        Ok(CreateFlashSaleResponse::Created(Json(admin_view(&state, sale).await?)))
    }

    /// A flash sale with live figures (admin): remaining, claimed, sold, queued, and its
    /// reconciliation once it has ended.
    #[oai(path = "/admin/flash-sales/:id", method = "get", tag = "ApiTags::Admin")]
    async fn admin_flash_sale(&self, state: Data<&AppState>, auth: BearerAuth, id: Path<Uuid>) -> ApiResult<AdminFlashSaleResponse> {
        auth.require_admin()?;
        let sale = flash_sales::find(&state.db, id.0).await?.ok_or_else(|| not_found(id.0))?;
        Ok(AdminFlashSaleResponse::Ok(Json(admin_view(&state, sale).await?)))
    }

    /// A flash sale: upcoming, live or ended, its price and the units left.
    #[oai(path = "/flash-sales/:id", method = "get")]
    async fn flash_sale(&self, state: Data<&AppState>, id: Path<Uuid>) -> ApiResult<PublicFlashSaleResponse> {
        let sale = flash_sales::find(&state.db, id.0).await?.ok_or_else(|| not_found(id.0))?;
        Ok(PublicFlashSaleResponse::Ok(Json(public_view(&state, &sale).await?)))
    }

    /// Try to win a unit. 200 with a claim held for two minutes (the same claim again if you
    /// hold one), 202 in the waiting room, 429 `rate_limited` after 5 attempts a minute,
    /// 409 `sold_out`, `purchase_limit_reached`, `sale_not_started`, `sale_ended`.
    #[oai(path = "/flash-sales/:id/enter", method = "post")]
    async fn enter_flash_sale(&self, state: Data<&AppState>, auth: BearerAuth, id: Path<Uuid>) -> ApiResult<EnterResponse> {
        let user = auth.user_id();
        let claim_ttl_ms = state.config.flash_sale_claim_ttl.as_millis() as u64;
        let redis = |e| ApiError::unavailable("Redis", e);
        let mut entry = flash_redis::enter(&state.redis, id.0, user, claim_ttl_ms, false).await.map_err(redis)?;
        let mut sale = None;
        if entry == Entry::NotLoaded {
            let found = flash_sales::find(&state.db, id.0).await?.ok_or_else(|| not_found(id.0))?;
            if status_of(&found, Utc::now()) == SaleStatus::Live {
                rebuild(&state, &found).await?;
                entry = flash_redis::enter(&state.redis, id.0, user, claim_ttl_ms, true).await.map_err(redis)?;
            } else {
                entry = if Utc::now() < found.starts_at { Entry::NotStarted } else { Entry::Ended };
            }
            sale = Some(found);
        }
        if entry == Entry::LimitReached && release_abandoned_claims(&state, id.0, user).await? {
            entry = flash_redis::enter(&state.redis, id.0, user, claim_ttl_ms, true).await.map_err(redis)?;
        }
        let outcome = match &entry {
            Entry::Claimed { new: true, .. } => "claimed",
            Entry::Claimed { new: false, .. } => "existing_claim",
            Entry::Queued { .. } => "queued",
            Entry::RateLimited { .. } => "rate_limited",
            Entry::NotLoaded => "not_loaded",
            Entry::NotStarted => "not_started",
            Entry::Ended => "ended",
            Entry::LimitReached => "limit_reached",
            Entry::SoldOut => "sold_out",
        };
        match entry {
            Entry::Claimed { claim_id, expires_at_ms, new: false } => {
                state.metrics.flash_entry(outcome);
                Ok(claimed(claim_id, expires_at_ms))
            }
            Entry::Claimed { claim_id, expires_at_ms, new: true } => {
                let sale = match sale {
                    Some(sale) => sale,
                    None => flash_sales::find(&state.db, id.0).await?.ok_or_else(|| not_found(id.0))?,
                };
                let (claim_id, expires_at_ms) = record_claim(&state, &sale, user, claim_id, expires_at_ms).await?;
                state.metrics.flash_entry(outcome);
                Ok(claimed(claim_id, expires_at_ms))
            }
            Entry::Queued { position, retry_after_ms } => {
                state.metrics.flash_entry(outcome);
                Ok(EnterResponse::Queued(Json(EntryAnswer {
                    result: EntryResult::Queued,
                    claim_id: None,
                    expires_at: None,
                    position: Some(position),
                    retry_after_ms: Some(retry_after_ms),
                })))
            }
            other => {
                state.metrics.flash_entry(outcome);
                Err(match other {
                    Entry::RateLimited { retry_after_ms } => {
                        ApiError::rate_limited(retry_after_ms, "more than 5 attempts in a minute; wait before trying again")
                    }
                    Entry::NotStarted => ApiError::new(ErrorCode::SaleNotStarted, "the sale has not started"),
                    Entry::Ended => ApiError::new(ErrorCode::SaleEnded, "the sale has ended"),
                    Entry::LimitReached => ApiError::new(ErrorCode::PurchaseLimitReached, "you have bought as many as a customer may"),
                    Entry::SoldOut => ApiError::new(ErrorCode::SoldOut, "the sale is sold out"),
                    // Redis lost the sale again between the rebuild and the retry
                    _ => ApiError::unavailable("the flash-sale counter", anyhow::anyhow!("sale {} not loaded after a rebuild", id.0)),
                })
            }
        }
    }

    /// Pay for a claimed unit; same body and outcomes as a checkout payment. Paying twice
    /// charges once.
    #[oai(path = "/flash-sales/:id/claims/:claim_id/payment", method = "post")]
    async fn pay_flash_claim(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<Uuid>,
        claim_id: Path<Uuid>,
        body: Json<SubmitPayment>,
    ) -> ApiResult<PayClaimResponse> {
        let request = payment_request(body.0)?;
        let user = auth.user_id();
        let claim = flash_sales::find_claim(&state.db, claim_id.0)
            .await?
            .filter(|c| c.sale_id == id.0 && c.user_id == user)
            .ok_or_else(|| ApiError::new(ErrorCode::ClaimNotFound, format!("claim {} does not exist", claim_id.0)))?;
        if let Some(order_id) = claim.order_id {
            return Ok(PayClaimResponse::Created(Json(load_order(&state, Some(user), order_id).await?)));
        }
        let expired = || ApiError::new(ErrorCode::ClaimExpired, "the claim expired; enter again");
        // Past its expiry, an EXPIRED claim has nothing to answer but this, and its buyer's next
        // claim may own the workflow id now. Before it (a declined charge), the workflow may
        // still give the first answer again; the claim id keeps it from paying another claim.
        if claim.status == "EXPIRED" && claim.expires_at <= Utc::now() {
            return Err(expired());
        }
        let request = ClaimPayment { request, claim_id: Some(claim.id.to_string()) };
        let client = state.temporal.client().await.map_err(|e| ApiError::unavailable("the workflow service", e))?;
        let handle = client.get_workflow_handle::<FlashSaleClaimWorkflow>(claim_workflow_id(&id.0.to_string(), &user.to_string()));
        let options = WorkflowExecuteUpdateOptions::builder().update_id(format!("flash-payment:{}", claim.id)).build();
        let outcome = match handle.execute_update(FlashSaleClaimWorkflow::submit_payment, request, options).await {
            Ok(outcome) => outcome,
            Err(WorkflowUpdateError::Failed(f)) if f.message == REFUSAL_CLAIM_EXPIRED || f.message == REFUSAL_CLAIM_CLOSED => {
                return Err(expired());
            }
            // the claim's workflow has closed (or is another claim's now): answer from Postgres
            Err(WorkflowUpdateError::NotFound(_) | WorkflowUpdateError::Failed(_)) => {
                return match flash_sales::find_claim(&state.db, claim.id).await?.and_then(|c| c.order_id) {
                    Some(order_id) => Ok(PayClaimResponse::Created(Json(load_order(&state, Some(user), order_id).await?))),
                    None => Err(expired()),
                };
            }
            Err(err) => return Err(ApiError::unavailable("the workflow service", err)),
        };
        match outcome {
            PaymentOutcome::Paid { order } => {
                let order_id = Uuid::parse_str(&order.order_id).map_err(ApiError::internal)?;
                Ok(PayClaimResponse::Created(Json(load_order(&state, Some(user), order_id).await?)))
            }
            PaymentOutcome::Declined { code, message } => Err(payment_declined(code, &message)),
            PaymentOutcome::Failed { reason } => Err(payment_failed(reason, "the unit")),
            PaymentOutcome::Expired | PaymentOutcome::Cancelled => Err(expired()),
        }
    }
}

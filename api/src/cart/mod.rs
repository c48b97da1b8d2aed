//! Carts: anonymous ones in Redis keyed by a session id, signed-in ones in Postgres with a Redis
//! read cache, and live updates to every device of a user through Redis pub/sub.

mod anonymous;
mod cache;
mod events;
mod view;
mod writer;

use std::collections::HashMap;

use fred::clients::Client as RedisClient;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use emporium_entities::store::carts::{self, CartChange, CartError, CartLine, MergeLine, MergeReport, PricedCart, SkipReason, UserCart};

pub use anonymous::SessionId;
pub use events::{CartEvent, CartEventStream, CartEvents};
pub use view::{CartLineView, CartView};
pub use writer::{CartWriter, WriterMetrics};

use crate::error::{ApiError, ApiResult, ErrorCode};

/// Most units of one product in one cart.
pub const MAX_LINE_QUANTITY: i32 = 99;

/// Whose cart a request is about.
#[derive(Debug, Clone)]
pub enum CartOwner {
    User(Uuid),
    /// An anonymous shopper; `None` until the first write issues a session id.
    Session(Option<SessionId>),
}

#[derive(Clone)]
pub struct CartService {
    db: DatabaseConnection,
    redis: RedisClient,
    events: CartEvents,
    /// `None`: each change is its own statement on the pool (`write_batches` 0).
    writer: Option<writer::CartWriter>,
}

impl CartService {
    /// `write_batches`: batches of signed-in changes sent to Postgres at once (see `writer`);
    /// 0 sends each change on its own. `writer_metrics` records each batch.
    pub fn new(
        db: DatabaseConnection,
        redis: RedisClient,
        events: CartEvents,
        write_batches: usize,
        writer_metrics: Option<WriterMetrics>,
    ) -> Self {
        let writer = (write_batches > 0).then(|| writer::CartWriter::spawn(db.clone(), write_batches, writer_metrics));
        Self { db, redis, events, writer }
    }

    pub fn events(&self) -> &CartEvents {
        &self.events
    }

    /// The cart with current prices. Reading never creates a session.
    pub async fn view(&self, owner: &CartOwner) -> ApiResult<CartView> {
        match owner {
            CartOwner::User(user) => self.user_view(*user).await,
            CartOwner::Session(None) => Ok(CartView::empty(None)),
            CartOwner::Session(Some(session)) => {
                let lines = anonymous::lines(&self.redis, session).await.map_err(|e| ApiError::unavailable("the cart store", e))?;
                self.price(lines, Some(session)).await
            }
        }
    }

    /// Applies a change; an anonymous shopper without a session gets one.
    pub async fn change(&self, owner: &CartOwner, change: CartChange) -> ApiResult<CartView> {
        match owner {
            CartOwner::User(user) => {
                // A task of its own: once the change is sent it is applied even if the client
                // goes away, and then the cache and the user's other devices must hear of it.
                let service = self.clone();
                let user = *user;
                let applied = tokio::spawn(async move {
                    let priced = match &service.writer {
                        Some(writer) => writer.change(user, change).await,
                        None => carts::change_user_cart(&service.db, user, change, MAX_LINE_QUANTITY).await,
                    };
                    Ok(service.after_priced_change(user, priced.map_err(|e| cart_error(e, change))?).await)
                });
                applied.await.map_err(ApiError::internal)?
            }
            CartOwner::Session(existing) => {
                let unavailable = |e| ApiError::unavailable("the cart store", e);
                let session = existing.clone().unwrap_or_else(SessionId::generate);
                let mut products = HashMap::new();
                let product = match change {
                    CartChange::Add { product_id, .. } | CartChange::Set { product_id, .. } => {
                        // one query for the product being added and the lines already there
                        let mut ids = match existing {
                            Some(session) => anonymous::product_ids(&self.redis, session).await.map_err(unavailable)?,
                            None => Vec::new(),
                        };
                        ids.push(product_id);
                        products = self.products(&ids).await?;
                        let found = products.get(&product_id).filter(|p| !p.deleted).cloned();
                        Some(found.ok_or_else(|| cart_error(CartError::ProductNotFound, change))?)
                    }
                    _ => None,
                };
                let lines =
                    anonymous::change(&self.redis, &session, change, product.as_ref(), MAX_LINE_QUANTITY).await.map_err(|e| match e {
                        anonymous::ChangeError::Refused(refusal) => cart_error(refusal, change),
                        anonymous::ChangeError::Redis(e) => unavailable(e),
                    })?;
                // lines added meanwhile from another tab (or all of them, after a removal)
                let unpriced: Vec<i64> = lines.iter().map(|l| l.product_id).filter(|id| !products.contains_key(id)).collect();
                if !unpriced.is_empty() {
                    products.extend(self.products(&unpriced).await?);
                }
                Ok(CartView::build(lines, &products, Some(session.as_str().to_owned())))
            }
        }
    }

    /// Moves a wishlist item into the user's cart.
    pub async fn move_from_wishlist(&self, user: Uuid, product_id: i64, quantity: i32) -> ApiResult<CartView> {
        let change = CartChange::Add { product_id, quantity };
        let priced =
            carts::move_wishlist_item_to_cart(&self.db, user, product_id, quantity, MAX_LINE_QUANTITY).await.map_err(|e| match e {
                CartError::LineNotFound => ApiError::new(ErrorCode::NotInWishlist, format!("product {product_id} is not on the wishlist")),
                other => cart_error(other, change),
            })?;
        Ok(self.after_priced_change(user, priced).await)
    }

    /// Merges the anonymous cart of `session` into the user's: its lines are taken out of the
    /// session in one step and merged once (a retried take is recognised by its id), so lines
    /// added to the session later are merged at the next login, never deleted unmerged.
    pub async fn merge_on_login(&self, user: Uuid, session: &SessionId) -> ApiResult<MergeReport> {
        let unavailable = |e| ApiError::unavailable("the cart store", e);
        let Some(taken) = anonymous::take_for_merge(&self.redis, session).await.map_err(unavailable)? else {
            let already_merged = carts::session_merged(&self.db, session.as_str()).await?;
            return Ok(MergeReport { already_merged, ..MergeReport::default() });
        };
        let lines = taken
            .lines
            .into_iter()
            .map(|l| MergeLine {
                product_id: l.product_id,
                quantity: l.quantity,
                unit_price_minor: l.unit_price_minor,
                currency: l.currency,
            })
            .collect();
        let merge_id = format!("{}:{}", session.as_str(), taken.take_id);
        let (report, cart) =
            carts::merge_into_user_cart(&self.db, user, &merge_id, lines, MAX_LINE_QUANTITY).await.map_err(ApiError::internal)?;
        if let Err(err) = anonymous::merged(&self.redis, session, &taken.take_id).await {
            // Harmless: the merge is recorded in Postgres and the take will not merge twice.
            tracing::warn!(error = %err, "could not delete a merged anonymous cart");
        }
        if !report.already_merged {
            self.after_user_change(user, cart).await?;
        }
        Ok(report)
    }

    /// Re-reads the user's cart after a change made elsewhere (a checkout taking the bought
    /// units out), refreshing the cache and the user's devices. Best effort.
    pub async fn refresh_user(&self, user: Uuid) {
        match carts::load_user_cart(&self.db, user).await {
            Ok(cart) => {
                if let Err(err) = self.after_user_change(user, cart).await {
                    tracing::warn!(error = ?err, "cart refresh failed");
                }
            }
            Err(err) => tracing::warn!(error = %err, "cart refresh failed"),
        }
    }

    async fn user_view(&self, user: Uuid) -> ApiResult<CartView> {
        let cart = match cache::get(&self.redis, user).await {
            Some(cart) => cart,
            None => {
                let cart = carts::load_user_cart(&self.db, user).await?;
                cache::put(&self.redis, user, &cart, None).await;
                cart
            }
        };
        self.price(cart.lines, None).await
    }

    /// Prices a cart read from Postgres, then refreshes the cache and tells the user's devices.
    async fn after_user_change(&self, user: Uuid, cart: UserCart) -> ApiResult<CartView> {
        let view = self.price(cart.lines.clone(), None).await?;
        self.announce(user, &cart, &view).await;
        Ok(view)
    }

    async fn after_priced_change(&self, user: Uuid, priced: PricedCart) -> CartView {
        let products = priced.products.into_iter().map(|p| (p.id, p)).collect();
        let view = CartView::build(priced.cart.lines.clone(), &products, None);
        self.announce(user, &priced.cart, &view).await;
        view
    }

    /// Refreshes the cache and tells the user's devices, in one Redis command.
    async fn announce(&self, user: Uuid, cart: &UserCart, view: &CartView) {
        cache::put(&self.redis, user, cart, CartEvents::event(user, view)).await;
    }

    /// Prices lines at the current catalogue prices.
    async fn price(&self, lines: Vec<CartLine>, session: Option<&SessionId>) -> ApiResult<CartView> {
        let ids: Vec<i64> = lines.iter().map(|l| l.product_id).collect();
        let products = self.products(&ids).await?;
        Ok(CartView::build(lines, &products, session.map(|s| s.as_str().to_owned())))
    }

    async fn products(&self, ids: &[i64]) -> ApiResult<HashMap<i64, carts::CartProduct>> {
        Ok(carts::cart_products(&self.db, ids).await?.into_iter().map(|p| (p.id, p)).collect())
    }
}

/// The API error for a refused cart change.
fn cart_error(err: CartError, change: CartChange) -> ApiError {
    let product_id = match change {
        CartChange::Add { product_id, .. } | CartChange::Set { product_id, .. } | CartChange::Remove { product_id } => product_id,
        CartChange::Clear => 0,
    };
    match err {
        CartError::ProductNotFound => ApiError::new(ErrorCode::ProductNotFound, format!("product {product_id} does not exist")),
        CartError::LineNotFound => ApiError::new(ErrorCode::CartItemNotFound, format!("the cart has no line for product {product_id}")),
        CartError::InsufficientStock { available, in_cart } => ApiError::with_details(
            ErrorCode::InsufficientStock,
            format!("only {available} of product {product_id} available ({in_cart} already in the cart)"),
            Some(serde_json::json!({ "productId": product_id, "available": available, "inCart": in_cart })),
        ),
        CartError::LineLimit { max, in_cart } => ApiError::with_details(
            ErrorCode::LineLimitExceeded,
            format!("at most {max} units of one product per cart ({in_cart} already in the cart)"),
            Some(serde_json::json!({ "productId": product_id, "max": max, "inCart": in_cart })),
        ),
        CartError::CurrencyMismatch { cart, product } => {
            ApiError::new(ErrorCode::CurrencyMismatch, format!("the cart is priced in {cart}, this product in {product}"))
        }
        CartError::Store(err) => err.into(),
    }
}

/// How a merge is reported to the client.
pub fn skip_reason_code(reason: SkipReason) -> &'static str {
    match reason {
        SkipReason::ProductUnavailable => "product_unavailable",
        SkipReason::CurrencyMismatch => "currency_mismatch",
    }
}

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};

use emporium_entities::{StoreError, store::wishlists};

use super::{ApiTags, DirectJson, Money, cart::quantity, catalog::product_not_found};
use crate::{
    auth::BearerAuth,
    cart::CartView,
    error::{ApiError, ApiResult, ErrorCode},
    state::AppState,
};

pub struct WishlistApi;

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct WishlistItem {
    product_id: i64,
    title: String,
    price: Money,
    available: i32,
    added_at: DateTime<Utc>,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct MoveToCart {
    /// Units to add to the cart (default 1).
    quantity: Option<i64>,
}

#[derive(ApiResponse)]
enum WishlistResponse {
    /// The wishlist, newest first.
    #[oai(status = 200)]
    Ok(Json<Vec<WishlistItem>>),
}

#[derive(ApiResponse)]
enum WishlistChangedResponse {
    /// Done.
    #[oai(status = 204)]
    Done,
}

#[derive(ApiResponse)]
enum MovedToCartResponse {
    /// The cart after the move; the product left the wishlist.
    #[oai(status = 200)]
    Ok(DirectJson<CartView>),
}

#[OpenApi(tag = "ApiTags::Wishlist")]
impl WishlistApi {
    /// The signed-in user's wishlist.
    #[oai(path = "/wishlist", method = "get")]
    async fn get_wishlist(&self, state: Data<&AppState>, auth: BearerAuth) -> ApiResult<WishlistResponse> {
        let items = wishlists::list(&state.db, auth.user_id()).await?;
        Ok(WishlistResponse::Ok(Json(
            items
                .into_iter()
                .map(|i| WishlistItem {
                    product_id: i.product_id,
                    title: i.title,
                    price: Money { amount: i.price_minor, currency: i.currency },
                    available: i.available,
                    added_at: i.added_at,
                })
                .collect(),
        )))
    }

    /// Put a product on the wishlist (no-op when it is there).
    #[oai(path = "/wishlist/:product_id", method = "put")]
    async fn add_to_wishlist(&self, state: Data<&AppState>, auth: BearerAuth, product_id: Path<i64>) -> ApiResult<WishlistChangedResponse> {
        match wishlists::add(&state.db, auth.user_id(), product_id.0).await {
            Ok(()) => Ok(WishlistChangedResponse::Done),
            Err(StoreError::NotFound) => Err(product_not_found(product_id.0)),
            Err(err) => Err(ApiError::internal(err)),
        }
    }

    /// Take a product off the wishlist.
    #[oai(path = "/wishlist/:product_id", method = "delete")]
    async fn remove_from_wishlist(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        product_id: Path<i64>,
    ) -> ApiResult<WishlistChangedResponse> {
        match wishlists::remove(&state.db, auth.user_id(), product_id.0).await {
            Ok(()) => Ok(WishlistChangedResponse::Done),
            Err(StoreError::NotFound) => {
                Err(ApiError::new(ErrorCode::NotInWishlist, format!("product {} is not on the wishlist", product_id.0)))
            }
            Err(err) => Err(ApiError::internal(err)),
        }
    }

    /// Move a wishlist product into the cart, in one step.
    #[oai(path = "/wishlist/:product_id/move-to-cart", method = "post")]
    async fn move_wishlist_item_to_cart(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        product_id: Path<i64>,
        body: Json<MoveToCart>,
    ) -> ApiResult<MovedToCartResponse> {
        let units = quantity(body.quantity.unwrap_or(1))?;
        let view = state.carts.move_from_wishlist(auth.user_id(), product_id.0, units).await?;
        Ok(MovedToCartResponse::Ok(DirectJson(view)))
    }
}

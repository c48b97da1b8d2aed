use std::{borrow::Cow, sync::Arc};

use futures::{StreamExt, stream::BoxStream};
use poem::{Request, web::Data};
use poem_openapi::{
    ApiResponse, Object, OpenApi, SecurityScheme,
    param::{Header, Path},
    payload::{EventStream, Json},
    registry::{MetaSchemaRef, Registry},
    types::{ToJSON, Type},
};

use emporium_entities::store::carts::CartChange;

use super::{ApiTags, DirectJson};
use crate::{
    auth::BearerAuth,
    cart::{CartEvent, CartOwner, CartView, MAX_LINE_QUANTITY, SessionId},
    error::{ApiError, ApiResult, ErrorCode},
    state::AppState,
};

pub struct CartApi;

/// Signed in (bearer token) or anonymous (the `X-Session-Id` header, issued on the first write).
#[derive(SecurityScheme)]
pub enum CartIdentity {
    Bearer(BearerAuth),
    #[oai(fallback)]
    Anonymous,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct AddItem {
    product_id: i64,
    /// 1 to 99; added to what the cart already holds.
    quantity: i64,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct SetQuantity {
    /// 1 to 99; use DELETE to remove the line.
    quantity: i64,
}

#[derive(ApiResponse)]
enum CartResponse {
    /// The cart after the operation.
    #[oai(status = 200)]
    Ok(
        DirectJson<CartView>,
        /// The anonymous session of this cart; send it back as `X-Session-Id`.
        #[oai(header = "X-Session-Id")]
        Option<String>,
    ),
}

#[derive(ApiResponse)]
enum CartEventsResponse {
    /// Server-Sent Events: the current cart first, then the cart after every change.
    #[oai(status = 200)]
    Ok(EventStream<BoxStream<'static, CartJson>>),
}

/// A cart as JSON: what a change published (see `CartEvents::event`) goes to the devices as it
/// is, instead of being parsed into a `CartView` and written again for each of them. Documented
/// as the `CartView` it is.
struct CartJson(Arc<str>);

impl CartJson {
    fn of(view: &CartView) -> Option<Self> {
        view.serialized().map(|json| Self(Arc::from(json)))
    }

    /// A published message, if it is shaped like a cart: anyone who can reach Redis can publish
    /// on a user's channel, and devices are promised carts. Checked in one pass that keeps
    /// nothing.
    fn published(json: Arc<str>) -> Option<Self> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        #[allow(dead_code)] // read only to check they are there
        struct CartShape {
            lines: Vec<serde::de::IgnoredAny>,
            item_count: i32,
            total: serde::de::IgnoredAny,
        }
        serde_json::from_str::<CartShape>(&json).ok().map(|_| Self(json))
    }
}

impl Type for CartJson {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        CartView::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        CartView::schema_ref()
    }

    fn register(registry: &mut Registry) {
        CartView::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(std::iter::once(self))
    }
}

/// Only for `EventStream`'s bound: the stream writes each frame itself (`to_event`).
impl ToJSON for CartJson {
    fn to_json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.0).ok()
    }
}

/// A quantity from the request: 1 to the line limit.
pub fn quantity(value: i64) -> ApiResult<i32> {
    if !(1..=i64::from(MAX_LINE_QUANTITY)).contains(&value) {
        return Err(ApiError::new(ErrorCode::InvalidQuantity, format!("quantity must be 1 to {MAX_LINE_QUANTITY}")));
    }
    Ok(value as i32)
}

/// Whose cart: the token's user, else the session. A token that is present but invalid is a
/// 401, not a silent switch to an anonymous cart.
fn owner(req: &Request, identity: CartIdentity, session: Option<&str>) -> ApiResult<CartOwner> {
    match identity {
        CartIdentity::Bearer(auth) => Ok(CartOwner::User(auth.user_id())),
        CartIdentity::Anonymous if req.headers().contains_key(poem::http::header::AUTHORIZATION) => {
            Err(ApiError::new(ErrorCode::Unauthorized, "the bearer token is invalid or expired"))
        }
        CartIdentity::Anonymous => Ok(CartOwner::Session(session.map(SessionId::parse).transpose()?)),
    }
}

fn respond(view: CartView) -> CartResponse {
    let session = view.session_id.clone();
    CartResponse::Ok(DirectJson(view), session)
}

#[OpenApi(tag = "ApiTags::Cart")]
impl CartApi {
    /// The cart, priced at today's prices.
    #[oai(path = "/cart", method = "get")]
    async fn get_cart(
        &self,
        state: Data<&AppState>,
        req: &Request,
        identity: CartIdentity,
        #[oai(name = "X-Session-Id")] session: Header<Option<String>>,
    ) -> ApiResult<CartResponse> {
        let owner = owner(req, identity, session.0.as_deref())?;
        Ok(respond(state.carts.view(&owner).await?))
    }

    /// Add units of a product (to its line if there is one).
    #[oai(path = "/cart/items", method = "post")]
    async fn add_cart_item(
        &self,
        state: Data<&AppState>,
        req: &Request,
        identity: CartIdentity,
        #[oai(name = "X-Session-Id")] session: Header<Option<String>>,
        body: Json<AddItem>,
    ) -> ApiResult<CartResponse> {
        let owner = owner(req, identity, session.0.as_deref())?;
        let change = CartChange::Add { product_id: body.product_id, quantity: quantity(body.quantity)? };
        Ok(respond(state.carts.change(&owner, change).await?))
    }

    /// Set the quantity of a line.
    #[oai(path = "/cart/items/:product_id", method = "patch")]
    async fn update_cart_item(
        &self,
        state: Data<&AppState>,
        req: &Request,
        identity: CartIdentity,
        #[oai(name = "X-Session-Id")] session: Header<Option<String>>,
        product_id: Path<i64>,
        body: Json<SetQuantity>,
    ) -> ApiResult<CartResponse> {
        let owner = owner(req, identity, session.0.as_deref())?;
        let change = CartChange::Set { product_id: product_id.0, quantity: quantity(body.quantity)? };
        Ok(respond(state.carts.change(&owner, change).await?))
    }

    /// Remove a line.
    #[oai(path = "/cart/items/:product_id", method = "delete")]
    async fn remove_cart_item(
        &self,
        state: Data<&AppState>,
        req: &Request,
        identity: CartIdentity,
        #[oai(name = "X-Session-Id")] session: Header<Option<String>>,
        product_id: Path<i64>,
    ) -> ApiResult<CartResponse> {
        let owner = owner(req, identity, session.0.as_deref())?;
        Ok(respond(state.carts.change(&owner, CartChange::Remove { product_id: product_id.0 }).await?))
    }

    /// Empty the cart.
    #[oai(path = "/cart", method = "delete")]
    async fn clear_cart(
        &self,
        state: Data<&AppState>,
        req: &Request,
        identity: CartIdentity,
        #[oai(name = "X-Session-Id")] session: Header<Option<String>>,
    ) -> ApiResult<CartResponse> {
        let owner = owner(req, identity, session.0.as_deref())?;
        Ok(respond(state.carts.change(&owner, CartChange::Clear).await?))
    }

    /// Live cart updates for every device of the signed-in user.
    #[oai(path = "/cart/events", method = "get")]
    async fn cart_events(&self, state: Data<&AppState>, auth: BearerAuth) -> ApiResult<CartEventsResponse> {
        let user = auth.user_id();
        // Subscribe before reading, so no change between the two is missed.
        let events = state.carts.events().subscribe(user).await.map_err(|e| ApiError::unavailable("live cart updates", e))?;
        let initial = state.carts.view(&CartOwner::User(user)).await?;
        let carts = state.carts.clone();
        let keep_alive = state.config.cart_events_keep_alive;
        let updates = futures::stream::unfold((events, carts), move |(mut events, carts)| async move {
            loop {
                match events.receiver.recv().await {
                    Ok(CartEvent::Changed(json)) => {
                        if let Some(cart) = CartJson::published(json) {
                            return Some((cart, (events, carts)));
                        } // not a cart: nothing to send
                    }
                    // missed some: send the cart as it is now
                    Ok(CartEvent::Resync) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if let Ok(view) = carts.view(&CartOwner::User(user)).await
                            && let Some(json) = CartJson::of(&view)
                        {
                            return Some((json, (events, carts)));
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        let first = futures::stream::iter(CartJson::of(&initial));
        let stream = first.chain(updates).boxed();
        Ok(CartEventsResponse::Ok(
            EventStream::new(stream).keep_alive(keep_alive).to_event(|cart| poem::web::sse::Event::message(&*cart.0).event_type("cart")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_carts_pass_as_they_are_and_anything_else_is_dropped() {
        let cart = CartView::empty(None).serialized().unwrap();
        let passed = CartJson::published(Arc::from(cart.as_str())).expect("a cart passes");
        assert_eq!(&*passed.0, cart.as_str(), "sent as published, not rewritten");
        for noise in ["xxxx", "{}", "[]", r#"{"lines":3,"itemCount":0,"total":{}}"#, r#"{"lines":[],"total":{}}"#] {
            assert!(CartJson::published(Arc::from(noise)).is_none(), "{noise} is not a cart");
        }
    }
}

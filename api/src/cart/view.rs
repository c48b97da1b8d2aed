//! The cart as clients see it: lines at the price seen when added and at today's price.

use std::collections::HashMap;

use poem_openapi::Object;
use serde::Serialize;

use emporium_entities::store::carts::{CartLine, CartProduct};

use crate::routes::Money;

// `Serialize` writes the same JSON as `Object` (a test checks) without a `serde_json::Value`
// in between: carts are answered and published on every write.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct CartLineView {
    pub product_id: i64,
    pub sku: String,
    pub title: String,
    pub quantity: i32,
    /// The unit price when the line was added.
    pub unit_price: Money,
    /// Today's unit price; checkout charges this one.
    pub current_price: Money,
    /// Whether the price changed since the line was added.
    pub price_changed: bool,
    /// current price × quantity
    pub line_total: Money,
    /// Units available now.
    pub available: i32,
    /// False when the product left the catalogue, has fewer units than the line, or is now
    /// priced in another currency than the cart.
    pub purchasable: bool,
}

#[derive(Debug, Clone, Object, Serialize)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct CartView {
    pub lines: Vec<CartLineView>,
    /// Units over all lines.
    pub item_count: i32,
    /// Sum of the line totals in the cart's currency.
    pub total: Money,
    /// The anonymous session this cart belongs to (also in the `X-Session-Id` header).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

const DEFAULT_CURRENCY: &str = "USD";

impl CartView {
    /// The JSON clients get, written by serde; `None` (logged) only if serde fails, which a
    /// view of strings and numbers does not.
    pub fn serialized(&self) -> Option<String> {
        serde_json::to_string(self).inspect_err(|err| tracing::error!(error = %err, "cart view does not serialise")).ok()
    }

    pub fn empty(session_id: Option<String>) -> Self {
        Self::build(Vec::new(), &HashMap::new(), session_id)
    }

    pub fn build(lines: Vec<CartLine>, products: &HashMap<i64, CartProduct>, session_id: Option<String>) -> Self {
        // The cart's currency is the one its lines were added in (writes keep it to one); a
        // line whose product is priced in another currency since cannot be bought with the
        // rest, nor added to their total.
        let currency = lines.first().map_or_else(|| DEFAULT_CURRENCY.to_owned(), |l| l.currency.clone());
        let mut total = 0i64;
        let mut item_count = 0i32;
        let views = lines
            .into_iter()
            .map(|line| {
                let product = products.get(&line.product_id);
                let current = product.map_or(line.unit_price_minor, |p| p.price_minor);
                let line_currency = product.map_or_else(|| line.currency.clone(), |p| p.currency.clone());
                let same_currency = line_currency == currency;
                let line_total = current.saturating_mul(i64::from(line.quantity));
                if same_currency {
                    total = total.saturating_add(line_total);
                }
                item_count = item_count.saturating_add(line.quantity);
                let available = product.map_or(0, |p| p.available);
                CartLineView {
                    product_id: line.product_id,
                    sku: product.map_or_else(String::new, |p| p.sku.clone()),
                    title: product.map_or_else(String::new, |p| p.title.clone()),
                    quantity: line.quantity,
                    unit_price: Money { amount: line.unit_price_minor, currency: line.currency.clone() },
                    price_changed: current != line.unit_price_minor || line_currency != line.currency,
                    current_price: Money { amount: current, currency: line_currency.clone() },
                    line_total: Money { amount: line_total, currency: line_currency },
                    available,
                    purchasable: same_currency && product.is_some_and(|p| !p.deleted) && available >= line.quantity,
                }
            })
            .collect();
        CartView { lines: views, item_count, total: Money { amount: total, currency }, session_id }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use poem_openapi::types::ToJSON;

    use super::*;

    fn line(product_id: i64, quantity: i32, unit_price_minor: i64) -> CartLine {
        CartLine { product_id, quantity, unit_price_minor, currency: "USD".into(), added_at: Utc::now() }
    }

    fn product(id: i64, price_minor: i64, currency: &str, deleted: bool) -> CartProduct {
        CartProduct {
            id,
            sku: format!("SKU-{id}"),
            title: format!("Product \"{id}\" — ünïcode"),
            price_minor,
            currency: currency.into(),
            available: 5,
            deleted,
        }
    }

    /// Responses and events serialise with serde while the OpenAPI document comes from `Object`:
    /// both must write the same JSON.
    #[test]
    fn serde_writes_what_the_openapi_object_documents() {
        let products: HashMap<i64, CartProduct> =
            [product(1, 1999, "USD", false), product(2, 500, "EUR", false), product(3, 700, "USD", true)]
                .into_iter()
                .map(|p| (p.id, p))
                .collect();
        let lines = vec![line(1, 2, 1899), line(2, 1, 500), line(3, 9, 700), line(4, 1, 100)];
        for session in [None, Some("s-1".to_owned())] {
            for view in [CartView::build(lines.clone(), &products, session.clone()), CartView::empty(session)] {
                assert_eq!(serde_json::to_value(&view).unwrap(), view.to_json().unwrap());
            }
        }
        let view = CartView::build(lines, &products, None);
        let json = serde_json::to_value(&view).unwrap();
        assert!(json.get("sessionId").is_none(), "no session: no key, as documented");
        assert_eq!(json["lines"][0]["lineTotal"], serde_json::json!({ "amount": 3998, "currency": "USD" }));
    }
}

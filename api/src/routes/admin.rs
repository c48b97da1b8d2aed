use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};
use sea_orm::TransactionTrait;

use emporium_entities::{
    StoreError,
    store::catalog::{self, NewProduct, ProductChanges},
};

use super::{
    ApiTags, Money,
    catalog::{Category, Product, product_not_found},
};
use crate::{
    auth::BearerAuth,
    error::{ApiError, ApiResult, ErrorCode},
    state::AppState,
};

pub struct AdminApi;

/// Upper bounds that keep one request from storing absurd values.
const MAX_PRICE_MINOR: i64 = 100_000_000_000;
const MAX_STOCK: i64 = 10_000_000;

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct CreateProduct {
    sku: String,
    title: String,
    #[oai(default)]
    description: String,
    brand: String,
    category_id: i64,
    price: Money,
    /// Free-form attributes; must be a JSON object.
    attributes: Option<serde_json::Value>,
    #[oai(default)]
    image_keys: Vec<String>,
    /// Units available for sale from the start (default 0).
    stock: Option<i64>,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct UpdateProduct {
    title: Option<String>,
    description: Option<String>,
    brand: Option<String>,
    category_id: Option<i64>,
    price: Option<Money>,
    attributes: Option<serde_json::Value>,
    image_keys: Option<Vec<String>>,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct CreateCategory {
    name: String,
    /// Lower-case letters, digits and dashes; derived from the name when absent.
    slug: Option<String>,
    parent_id: Option<i64>,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct SetInventory {
    /// Units available for sale.
    available: i64,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct Inventory {
    product_id: i64,
    available: i32,
    reserved: i32,
    sold: i32,
    version: i64,
}

#[derive(ApiResponse)]
enum CreateProductResponse {
    /// The product was created.
    #[oai(status = 201)]
    Created(Json<Product>),
}

#[derive(ApiResponse)]
enum UpdateProductResponse {
    /// The product as it is now.
    #[oai(status = 200)]
    Ok(Json<Product>),
}

#[derive(ApiResponse)]
enum DeleteProductResponse {
    /// The product left the catalogue (orders keep it).
    #[oai(status = 204)]
    Deleted,
}

#[derive(ApiResponse)]
enum CreateCategoryResponse {
    /// The category was created.
    #[oai(status = 201)]
    Created(Json<Category>),
}

#[derive(ApiResponse)]
enum SetInventoryResponse {
    /// The stock as it is now.
    #[oai(status = 200)]
    Ok(Json<Inventory>),
}

fn bad(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message)
}

fn text(value: &str, code: ErrorCode, field: &str, max: usize) -> ApiResult<String> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(bad(code, format!("{field} must be 1 to {max} characters")));
    }
    Ok(value.to_owned())
}

fn sku(value: &str) -> ApiResult<String> {
    let ok = !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(bad(ErrorCode::InvalidSku, "sku must be 1 to 64 letters, digits, '-' or '_'"));
    }
    Ok(value.to_owned())
}

fn description(value: &str) -> ApiResult<String> {
    if value.chars().count() > 10_000 {
        return Err(bad(ErrorCode::InvalidDescription, "description must be at most 10000 characters"));
    }
    Ok(value.trim().to_owned())
}

fn price(money: &Money) -> ApiResult<(i64, String)> {
    if money.amount < 0 || money.amount > MAX_PRICE_MINOR {
        return Err(bad(ErrorCode::InvalidPrice, format!("price amount must be 0 to {MAX_PRICE_MINOR} minor units")));
    }
    let currency_ok = money.currency.len() == 3 && money.currency.bytes().all(|b| b.is_ascii_uppercase());
    if !currency_ok {
        return Err(bad(ErrorCode::InvalidCurrency, "currency must be a three-letter ISO 4217 code like USD"));
    }
    Ok((money.amount, money.currency.clone()))
}

fn attributes(value: Option<serde_json::Value>) -> ApiResult<serde_json::Value> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(serde_json::json!({})),
        Some(v @ serde_json::Value::Object(_)) => Ok(v),
        Some(_) => Err(bad(ErrorCode::InvalidAttributes, "attributes must be a JSON object")),
    }
}

fn image_keys(keys: Vec<String>) -> ApiResult<Vec<String>> {
    if keys.len() > 20 || keys.iter().any(|k| k.is_empty() || k.len() > 512) {
        return Err(bad(ErrorCode::InvalidAttributes, "imageKeys: at most 20 keys of 1 to 512 characters"));
    }
    Ok(keys)
}

fn stock(value: i64) -> ApiResult<i32> {
    if !(0..=MAX_STOCK).contains(&value) {
        return Err(bad(ErrorCode::InvalidQuantity, format!("stock must be 0 to {MAX_STOCK}")));
    }
    Ok(value as i32)
}

fn slug_from(name: &str) -> String {
    let mut slug = String::new();
    for c in name.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_owned()
}

fn slug(value: &str) -> ApiResult<String> {
    let ok = !value.is_empty()
        && value.len() <= 100
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if !ok {
        return Err(bad(ErrorCode::InvalidSlug, "slug must be 1 to 100 lower-case letters, digits and inner dashes"));
    }
    Ok(value.to_owned())
}

async fn existing_category<C: sea_orm::ConnectionTrait>(db: &C, id: i64) -> ApiResult<()> {
    match catalog::find_category(db, id).await? {
        Some(_) => Ok(()),
        None => Err(bad(ErrorCode::UnknownCategory, format!("category {id} does not exist"))),
    }
}

#[OpenApi(tag = "ApiTags::Admin")]
impl AdminApi {
    /// Create a product with its initial stock.
    #[oai(path = "/admin/products", method = "post")]
    async fn create_product(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<CreateProduct>,
    ) -> ApiResult<CreateProductResponse> {
        auth.require_admin()?;
        let body = body.0;
        let (price_minor, currency) = price(&body.price)?;
        let new = NewProduct {
            sku: sku(&body.sku)?,
            title: text(&body.title, ErrorCode::InvalidTitle, "title", 200)?,
            description: description(&body.description)?,
            brand: text(&body.brand, ErrorCode::InvalidBrand, "brand", 100)?,
            category_id: body.category_id,
            price_minor,
            currency,
            attributes: attributes(body.attributes)?,
            image_keys: image_keys(body.image_keys)?,
            initial_stock: stock(body.stock.unwrap_or(0))?,
        };
        let tx = state.db.begin().await.map_err(ApiError::internal)?;
        existing_category(&tx, new.category_id).await?;
        let product = match catalog::create_product(&tx, new).await {
            Ok(product) => product,
            Err(StoreError::Duplicate(_)) => {
                return Err(bad(ErrorCode::SkuTaken, "a product with this sku already exists"));
            }
            Err(err) => return Err(ApiError::internal(err)),
        };
        tx.commit().await.map_err(ApiError::internal)?;
        Ok(CreateProductResponse::Created(Json(product.into())))
    }

    /// Change some fields of a product.
    #[oai(path = "/admin/products/:id", method = "patch")]
    async fn update_product(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<i64>,
        body: Json<UpdateProduct>,
    ) -> ApiResult<UpdateProductResponse> {
        auth.require_admin()?;
        let body = body.0;
        let (price_minor, currency) = match &body.price {
            Some(money) => price(money).map(|(a, c)| (Some(a), Some(c)))?,
            None => (None, None),
        };
        let changes = ProductChanges {
            title: body.title.as_deref().map(|t| text(t, ErrorCode::InvalidTitle, "title", 200)).transpose()?,
            description: body.description.as_deref().map(description).transpose()?,
            brand: body.brand.as_deref().map(|b| text(b, ErrorCode::InvalidBrand, "brand", 100)).transpose()?,
            category_id: body.category_id,
            price_minor,
            currency,
            attributes: body.attributes.map(|a| attributes(Some(a))).transpose()?,
            image_keys: body.image_keys.map(image_keys).transpose()?,
        };
        let nothing = changes.title.is_none()
            && changes.description.is_none()
            && changes.brand.is_none()
            && changes.category_id.is_none()
            && changes.price_minor.is_none()
            && changes.attributes.is_none()
            && changes.image_keys.is_none();
        if nothing {
            return Err(bad(ErrorCode::EmptyUpdate, "the request changes no field"));
        }
        let tx = state.db.begin().await.map_err(ApiError::internal)?;
        if let Some(category_id) = changes.category_id {
            existing_category(&tx, category_id).await?;
        }
        let product = match catalog::update_product(&tx, id.0, changes).await {
            Ok(product) => product,
            Err(StoreError::NotFound) => return Err(product_not_found(id.0)),
            Err(err) => return Err(ApiError::internal(err)),
        };
        tx.commit().await.map_err(ApiError::internal)?;
        Ok(UpdateProductResponse::Ok(Json(product.into())))
    }

    /// Remove a product from the catalogue.
    #[oai(path = "/admin/products/:id", method = "delete")]
    async fn delete_product(&self, state: Data<&AppState>, auth: BearerAuth, id: Path<i64>) -> ApiResult<DeleteProductResponse> {
        auth.require_admin()?;
        let tx = state.db.begin().await.map_err(ApiError::internal)?;
        match catalog::delete_product(&tx, id.0).await {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(product_not_found(id.0)),
            Err(err) => return Err(ApiError::internal(err)),
        }
        tx.commit().await.map_err(ApiError::internal)?;
        Ok(DeleteProductResponse::Deleted)
    }

    /// Create a category, optionally under a parent.
    #[oai(path = "/admin/categories", method = "post")]
    async fn create_category(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        body: Json<CreateCategory>,
    ) -> ApiResult<CreateCategoryResponse> {
        auth.require_admin()?;
        let name = text(&body.name, ErrorCode::InvalidName, "name", 100)?;
        let slug = match &body.slug {
            Some(s) => slug(s)?,
            None => slug(&slug_from(&name))?,
        };
        let tx = state.db.begin().await.map_err(ApiError::internal)?;
        if let Some(parent) = body.parent_id {
            existing_category(&tx, parent).await?;
        }
        let category = match catalog::create_category(&tx, body.parent_id, &name, &slug).await {
            Ok(category) => category,
            Err(StoreError::Duplicate(_)) => {
                return Err(bad(ErrorCode::SlugTaken, format!("a category with slug {slug:?} already exists")));
            }
            Err(err) => return Err(ApiError::internal(err)),
        };
        tx.commit().await.map_err(ApiError::internal)?;
        Ok(CreateCategoryResponse::Created(Json(category.into())))
    }

    /// Set the units of a product available for sale.
    #[oai(path = "/admin/products/:id/inventory", method = "put")]
    async fn set_inventory(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<i64>,
        body: Json<SetInventory>,
    ) -> ApiResult<SetInventoryResponse> {
        auth.require_admin()?;
        let available = stock(body.available)?;
        let tx = state.db.begin().await.map_err(ApiError::internal)?;
        let level = match catalog::set_available_stock(&tx, id.0, available).await {
            Ok(level) => level,
            Err(StoreError::NotFound) => return Err(product_not_found(id.0)),
            Err(err) => return Err(ApiError::internal(err)),
        };
        tx.commit().await.map_err(ApiError::internal)?;
        Ok(SetInventoryResponse::Ok(Json(Inventory {
            product_id: level.product_id,
            available: level.available,
            reserved: level.reserved,
            sold: level.sold,
            version: level.version,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::slug_from;

    #[test]
    fn slugs_are_derived_from_names() {
        assert_eq!(slug_from("Home & Kitchen"), "home-kitchen");
        assert_eq!(slug_from("  TVs 4K "), "tvs-4k");
    }
}

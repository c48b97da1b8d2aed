use chrono::{DateTime, Utc};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Path, Query},
    payload::Json,
};

use emporium_entities::{
    entity::categories,
    store::catalog::{self, ProductView},
};

use super::{ApiTags, Money, page_request};
use crate::{
    error::{ApiError, ApiResult, ErrorCode},
    state::AppState,
};

pub struct CatalogApi;

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct CategoryRef {
    pub id: i64,
    pub slug: String,
    pub name: String,
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Product {
    pub id: i64,
    pub sku: String,
    pub title: String,
    pub description: String,
    pub brand: String,
    pub category: CategoryRef,
    pub price: Money,
    /// Units that can be bought now.
    pub available: i32,
    pub in_stock: bool,
    /// Free-form attributes (colour, size, ...).
    pub attributes: serde_json::Value,
    pub image_keys: Vec<String>,
    /// Average rating, 0 to 5, one decimal.
    pub rating: f64,
    pub rating_count: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ProductView> for Product {
    fn from(p: ProductView) -> Self {
        let image_keys = serde_json::from_value(p.image_keys).unwrap_or_default();
        Product {
            id: p.id,
            sku: p.sku,
            title: p.title,
            description: p.description,
            brand: p.brand,
            category: CategoryRef { id: p.category_id, slug: p.category_slug, name: p.category_name },
            price: Money { amount: p.price_minor, currency: p.currency },
            available: p.available,
            in_stock: p.available > 0,
            attributes: p.attributes,
            image_keys,
            rating: (f64::from(p.rating) * 10.0).round() / 10.0,
            rating_count: p.rating_count,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct Category {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub name: String,
    pub slug: String,
}

impl From<categories::Model> for Category {
    fn from(c: categories::Model) -> Self {
        Category { id: c.id, parent_id: c.parent_id, name: c.name, slug: c.slug }
    }
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct ProductPage {
    items: Vec<Product>,
    /// Products matching the filter, over all pages.
    total: u64,
    page: u64,
    limit: u64,
}

#[derive(ApiResponse)]
enum GetProductResponse {
    /// The product.
    #[oai(status = 200)]
    Ok(Json<Product>),
}

#[derive(ApiResponse)]
enum ListProductsResponse {
    /// A page of products, in catalogue order.
    #[oai(status = 200)]
    Ok(Json<ProductPage>),
}

#[derive(ApiResponse)]
enum ListCategoriesResponse {
    /// Every category; `parentId` gives the tree.
    #[oai(status = 200)]
    Ok(Json<Vec<Category>>),
}

pub fn product_not_found(id: i64) -> ApiError {
    ApiError::new(ErrorCode::ProductNotFound, format!("product {id} does not exist"))
}

#[OpenApi(tag = "ApiTags::Catalog")]
impl CatalogApi {
    /// One product with its price and stock.
    #[oai(path = "/products/:id", method = "get")]
    async fn get_product(&self, state: poem::web::Data<&AppState>, id: Path<i64>) -> ApiResult<GetProductResponse> {
        let product = catalog::get_product(&state.db, id.0).await?.ok_or_else(|| product_not_found(id.0))?;
        Ok(GetProductResponse::Ok(Json(product.into())))
    }

    /// Browse the catalogue, optionally within a category (and its sub-categories).
    #[oai(path = "/products", method = "get")]
    async fn list_products(
        &self,
        state: poem::web::Data<&AppState>,
        /// Category slug or id.
        category: Query<Option<String>>,
        /// Page number, from 1.
        page: Query<Option<i64>>,
        /// Page size, 1 to 100 (default 20).
        limit: Query<Option<i64>>,
    ) -> ApiResult<ListProductsResponse> {
        let page = page_request(page.0, limit.0)?;
        let category_id = match category.0.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
            None => None,
            Some(key) => Some(resolve_category(&state, key).await?.id),
        };
        let (items, total) = catalog::browse_products(&state.db, category_id, page).await?;
        Ok(ListProductsResponse::Ok(Json(ProductPage {
            items: items.into_iter().map(Product::from).collect(),
            total,
            page: page.page,
            limit: page.limit,
        })))
    }

    /// All categories.
    #[oai(path = "/categories", method = "get")]
    async fn list_categories(&self, state: poem::web::Data<&AppState>) -> ApiResult<ListCategoriesResponse> {
        let all = catalog::list_categories(&state.db).await?;
        Ok(ListCategoriesResponse::Ok(Json(all.into_iter().map(Category::from).collect())))
    }
}

/// A category by slug or numeric id; `unknown_category` when there is none.
async fn resolve_category(state: &AppState, key: &str) -> ApiResult<categories::Model> {
    let found = match key.parse::<i64>() {
        Ok(id) => catalog::find_category(&state.db, id).await?,
        Err(_) => catalog::find_category_by_slug(&state.db, key).await?,
    };
    found.ok_or_else(|| ApiError::new(ErrorCode::UnknownCategory, format!("category {key:?} does not exist")))
}

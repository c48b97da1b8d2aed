use poem_openapi::{ApiResponse, Object, OpenApi, param::Query, payload::Json};

use super::{ApiTags, Money};
use crate::{
    error::{ApiError, ApiResult, ErrorCode},
    search::{
        PRICE_BANDS, SearchFailure,
        query::{ParamError, RawSearch},
    },
    state::AppState,
};

pub struct SearchApi;

/// Most completions `GET /products/suggest` returns.
pub const MAX_SUGGESTIONS: usize = 10;

#[derive(Debug, Clone, Object)]
#[oai(rename_all = "camelCase")]
pub struct SearchItem {
    pub id: i64,
    pub title: String,
    pub brand: String,
    pub price: Money,
    /// Units that can be bought now (as last indexed: within a second of a change).
    pub available: i64,
    /// Slug of the product's category.
    pub category: String,
    /// BM25 relevance when sorted by relevance with a `q`; 0 otherwise (not computed).
    pub score: f64,
}

#[derive(Debug, Clone, Object)]
pub struct FacetCount {
    pub value: String,
    pub count: u64,
}

#[derive(Debug, Clone, Object)]
pub struct PriceFacet {
    /// Lowest price of the band, minor units, inclusive.
    pub from: i64,
    /// Top of the band, exclusive; absent for the last band.
    pub to: Option<i64>,
    pub count: u64,
}

/// Counts per value, each under every filter except its own (so a shopper sees what picking
/// another value would give).
#[derive(Debug, Clone, Object)]
pub struct SearchFacets {
    /// Product counts per category slug (products count in their own category).
    pub category: Vec<FacetCount>,
    pub brand: Vec<FacetCount>,
    pub price: Vec<PriceFacet>,
}

#[derive(Debug, Clone, Object)]
pub struct SearchPage {
    pub items: Vec<SearchItem>,
    /// Products matching the query and every filter, over all pages.
    pub total: u64,
    pub page: u64,
    pub limit: u64,
    pub facets: SearchFacets,
}

#[derive(Debug, Clone, Object)]
pub struct Suggestions {
    /// Up to 10 product titles completing the prefix, most reviewed first.
    pub suggestions: Vec<String>,
}

#[derive(ApiResponse)]
enum SearchResponse {
    /// A page of matching products with facet counts.
    #[oai(status = 200)]
    Ok(Json<SearchPage>),
}

#[derive(ApiResponse)]
enum SuggestResponse {
    /// Title completions.
    #[oai(status = 200)]
    Ok(Json<Suggestions>),
}

fn param_error(err: ParamError) -> ApiError {
    let code = match err {
        ParamError::InvalidSort => ErrorCode::InvalidSort,
        ParamError::InvalidPrice => ErrorCode::InvalidPrice,
        ParamError::InvalidPriceRange => ErrorCode::InvalidPriceRange,
        ParamError::InvalidPage => ErrorCode::InvalidPage,
        ParamError::InvalidLimit => ErrorCode::InvalidParameter,
        ParamError::LimitTooLarge => ErrorCode::LimitTooLarge,
        ParamError::PageTooDeep => ErrorCode::PageTooDeep,
        ParamError::QueryTooLong => ErrorCode::QueryTooLong,
        ParamError::TooManyBrands => ErrorCode::TooManyBrands,
    };
    ApiError::new(code, err.to_string())
}

#[OpenApi(tag = "ApiTags::Search")]
impl SearchApi {
    /// Full-text product search with filters, sorts and facet counts. Without `q` it browses.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/products/search", method = "get")]
    async fn search_products(
        &self,
        state: poem::web::Data<&AppState>,
        /// Words to find in title, brand and description (all must match; a word of four
        /// letters or more that no product contains is matched with a typo or two). Empty
        /// browses.
        q: Query<Option<String>>,
        /// Category slug or id; its sub-categories match too.
        category: Query<Option<String>>,
        /// Brand to keep; repeat the parameter (or separate with commas) for several.
        brand: Query<Vec<String>>,
        /// Lowest price, minor units, inclusive.
        #[oai(name = "minPrice")]
        min_price: Query<Option<i64>>,
        /// Highest price, minor units, inclusive.
        #[oai(name = "maxPrice")]
        max_price: Query<Option<i64>>,
        /// Only products with units available.
        #[oai(name = "inStock")]
        in_stock: Query<Option<bool>>,
        /// `relevance` (default), `price_asc`, `price_desc`, `newest` or `rating`.
        sort: Query<Option<String>>,
        /// Page number, from 1.
        page: Query<Option<i64>>,
        /// Page size, 1 to 100 (default 20); page × limit at most 10,000.
        limit: Query<Option<i64>>,
    ) -> ApiResult<SearchResponse> {
        let checked = RawSearch {
            q: q.0,
            brands: brand.0,
            min_price: min_price.0,
            max_price: max_price.0,
            in_stock: in_stock.0,
            sort: sort.0,
            page: page.0,
            limit: limit.0,
        }
        .check()
        .map_err(param_error)?;
        let (page, limit) = (checked.page, checked.limit);
        let category = category.0.as_deref().map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned);
        let outcome = state.search.search(checked, category.as_deref()).await.map_err(|err| match err {
            SearchFailure::UnknownCategory(key) => ApiError::new(ErrorCode::UnknownCategory, format!("category {key:?} does not exist")),
            SearchFailure::Index(err) => ApiError::unavailable("search", err),
        })?;
        let slug = |id: i64| outcome.categories.slug(id).unwrap_or_default().to_owned();
        let results = outcome.results;
        Ok(SearchResponse::Ok(Json(SearchPage {
            items: results
                .hits
                .into_iter()
                .map(|h| SearchItem {
                    category: slug(h.category_id),
                    id: h.id,
                    title: h.title,
                    brand: h.brand,
                    price: Money { amount: h.price_minor, currency: h.currency },
                    available: h.available,
                    score: f64::from(h.score),
                })
                .collect(),
            total: results.total,
            page,
            limit,
            facets: SearchFacets {
                category: results.facets.categories.into_iter().map(|(id, count)| FacetCount { value: slug(id), count }).collect(),
                brand: results.facets.brands.into_iter().map(|(value, count)| FacetCount { value, count }).collect(),
                price: PRICE_BANDS
                    .iter()
                    .zip(results.facets.price_bands.iter().copied().chain(std::iter::repeat(0)))
                    .map(|(&(from, to), count)| PriceFacet { from, to, count })
                    .collect(),
            },
        })))
    }

    /// Autocomplete: up to 10 product titles whose words start with the typed ones.
    #[oai(path = "/products/suggest", method = "get")]
    async fn suggest_products(
        &self,
        state: poem::web::Data<&AppState>,
        /// What the shopper has typed so far.
        q: Query<Option<String>>,
    ) -> ApiResult<SuggestResponse> {
        let prefix = q.0.unwrap_or_default();
        if prefix.chars().count() > crate::search::query::MAX_QUERY_CHARS {
            return Err(param_error(ParamError::QueryTooLong));
        }
        let suggestions = if prefix.trim().is_empty() {
            Vec::new()
        } else {
            state.search.suggest(prefix.trim(), MAX_SUGGESTIONS).await.map_err(|err| ApiError::unavailable("search", err))?
        };
        Ok(SuggestResponse::Ok(Json(Suggestions { suggestions })))
    }
}

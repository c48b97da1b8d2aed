//! Search parameters: parsed and checked here, so every index sees only valid queries.

use serde::{Deserialize, Serialize};

/// Price bands of the price facet, in minor units: `[from, to)`, the last open-ended.
pub const PRICE_BANDS: &[(i64, Option<i64>)] = &[
    (0, Some(1_000)),
    (1_000, Some(2_500)),
    (2_500, Some(5_000)),
    (5_000, Some(10_000)),
    (10_000, Some(25_000)),
    (25_000, Some(50_000)),
    (50_000, Some(100_000)),
    (100_000, None),
];

/// The band a price falls in.
pub fn price_band(price: i64) -> usize {
    PRICE_BANDS.iter().rposition(|(from, _)| price >= *from).unwrap_or(0)
}

pub const DEFAULT_LIMIT: u64 = 20;
pub const MAX_LIMIT: u64 = 100;
/// Deepest result asked for (page × limit): deeper pages cost a full sort and nobody reads them.
pub const MAX_WINDOW: u64 = 10_000;
pub const MAX_QUERY_CHARS: usize = 200;
pub const MAX_BRANDS: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
pub enum Sort {
    #[default]
    Relevance,
    PriceAsc,
    PriceDesc,
    Newest,
    Rating,
}

impl Sort {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "relevance" => Sort::Relevance,
            "price_asc" => Sort::PriceAsc,
            "price_desc" => Sort::PriceDesc,
            "newest" => Sort::Newest,
            "rating" => Sort::Rating,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Relevance => "relevance",
            Sort::PriceAsc => "price_asc",
            Sort::PriceDesc => "price_desc",
            Sort::Newest => "newest",
            Sort::Rating => "rating",
        }
    }
}

/// Why parameters were refused; each maps to one error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("sort must be one of relevance, price_asc, price_desc, newest, rating")]
    InvalidSort,
    #[error("minPrice and maxPrice are minor units, 0 or more")]
    InvalidPrice,
    #[error("minPrice is above maxPrice")]
    InvalidPriceRange,
    #[error("page counts from 1")]
    InvalidPage,
    #[error("limit must be at least 1")]
    InvalidLimit,
    #[error("limit must be at most {MAX_LIMIT}")]
    LimitTooLarge,
    #[error("page × limit must be at most {MAX_WINDOW}; narrow the search instead")]
    PageTooDeep,
    #[error("q must be at most {MAX_QUERY_CHARS} characters")]
    QueryTooLong,
    #[error("at most {MAX_BRANDS} brands")]
    TooManyBrands,
}

/// Raw query-string values, as the route receives them.
#[derive(Debug, Clone, Default)]
pub struct RawSearch {
    pub q: Option<String>,
    pub brands: Vec<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock: Option<bool>,
    pub sort: Option<String>,
    pub page: Option<i64>,
    pub limit: Option<i64>,
}

/// Checked parameters (the category is resolved separately: it needs the category tree).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CheckedSearch {
    pub text: String,
    pub brands: Vec<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock: bool,
    pub sort: Sort,
    pub page: u64,
    pub limit: u64,
}

impl RawSearch {
    pub fn check(self) -> Result<CheckedSearch, ParamError> {
        let text = self.q.unwrap_or_default().trim().to_owned();
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(ParamError::QueryTooLong);
        }
        let sort = match self.sort.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Sort::Relevance,
            Some(s) => Sort::parse(s).ok_or(ParamError::InvalidSort)?,
        };
        if self.min_price.is_some_and(|p| p < 0) || self.max_price.is_some_and(|p| p < 0) {
            return Err(ParamError::InvalidPrice);
        }
        if let (Some(min), Some(max)) = (self.min_price, self.max_price)
            && min > max
        {
            return Err(ParamError::InvalidPriceRange);
        }
        let page = self.page.unwrap_or(1);
        if page < 1 {
            return Err(ParamError::InvalidPage);
        }
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT as i64);
        if limit < 1 {
            return Err(ParamError::InvalidLimit);
        }
        if limit as u64 > MAX_LIMIT {
            return Err(ParamError::LimitTooLarge);
        }
        let (page, limit) = (page as u64, limit as u64);
        if page.saturating_mul(limit) > MAX_WINDOW {
            return Err(ParamError::PageTooDeep);
        }
        // one brand parameter may also hold several, comma-separated
        let mut brands: Vec<String> =
            self.brands.iter().flat_map(|b| b.split(',')).map(|b| b.trim().to_owned()).filter(|b| !b.is_empty()).collect();
        brands.sort();
        brands.dedup();
        if brands.len() > MAX_BRANDS {
            return Err(ParamError::TooManyBrands);
        }
        Ok(CheckedSearch {
            text,
            brands,
            min_price: self.min_price,
            max_price: self.max_price,
            in_stock: self.in_stock.unwrap_or(false),
            sort,
            page,
            limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawSearch {
        RawSearch::default()
    }

    #[test]
    fn defaults_are_relevance_first_page_of_twenty() {
        let checked = raw().check().unwrap();
        assert_eq!((checked.sort, checked.page, checked.limit, checked.in_stock), (Sort::Relevance, 1, 20, false));
    }

    #[test]
    fn bad_parameters_are_refused_with_their_reason() {
        let cases = [
            (RawSearch { sort: Some("cheapest".into()), ..raw() }, ParamError::InvalidSort),
            (RawSearch { min_price: Some(-1), ..raw() }, ParamError::InvalidPrice),
            (RawSearch { min_price: Some(500), max_price: Some(100), ..raw() }, ParamError::InvalidPriceRange),
            (RawSearch { page: Some(0), ..raw() }, ParamError::InvalidPage),
            (RawSearch { page: Some(-3), ..raw() }, ParamError::InvalidPage),
            (RawSearch { limit: Some(0), ..raw() }, ParamError::InvalidLimit),
            (RawSearch { limit: Some(101), ..raw() }, ParamError::LimitTooLarge),
            (RawSearch { page: Some(1000), limit: Some(100), ..raw() }, ParamError::PageTooDeep),
            (RawSearch { q: Some("x".repeat(201)), ..raw() }, ParamError::QueryTooLong),
        ];
        for (input, expected) in cases {
            assert_eq!(input.clone().check(), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn brands_may_repeat_or_be_comma_separated() {
        let checked = RawSearch { brands: vec!["Sony,Bose".into(), "Sony".into(), " ".into()], ..raw() }.check().unwrap();
        assert_eq!(checked.brands, vec!["Bose".to_owned(), "Sony".to_owned()]);
    }

    #[test]
    fn price_bands_cover_every_price() {
        assert_eq!(price_band(0), 0);
        assert_eq!(price_band(999), 0);
        assert_eq!(price_band(1_000), 1);
        assert_eq!(price_band(10_000_000), PRICE_BANDS.len() - 1);
    }
}

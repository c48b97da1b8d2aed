//! One table of error codes, each with its HTTP status; every error body is `{code, message}`.

use poem::{Error, IntoResponse, Response, http::StatusCode};
use poem_openapi::{ApiResponse, Enum, Object, payload::Json};

use emporium_entities::StoreError;
use sea_orm::DbErr;

/// Stable, machine-readable error codes. Clients branch on these, so never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ErrorCode {
    // 400: the request itself is malformed
    InvalidBody,
    InvalidParameter,
    InvalidEmail,
    InvalidPassword,
    InvalidSku,
    InvalidTitle,
    InvalidBrand,
    InvalidDescription,
    InvalidPrice,
    InvalidCurrency,
    InvalidQuantity,
    InvalidAttributes,
    InvalidName,
    InvalidSlug,
    InvalidPage,
    LimitTooLarge,
    EmptyUpdate,
    InvalidSession,
    InvalidIdempotencyKey,
    InvalidPaymentMethod,
    InvalidShippingAddress,
    CartEmpty,
    InvalidReturn,
    InvalidShipment,
    InvalidFlashSale,
    ReturnQuantityExceeded,
    ProductNotInOrder,
    InvalidSort,
    InvalidPriceRange,
    PageTooDeep,
    QueryTooLong,
    TooManyBrands,
    // 401 / 403
    Unauthorized,
    InvalidCredentials,
    InvalidToken,
    Forbidden,
    // 404 / 405 / 409 / 413 / 415 / 422
    NotFound,
    ProductNotFound,
    CategoryNotFound,
    CartItemNotFound,
    NotInWishlist,
    CheckoutNotFound,
    OrderNotFound,
    SaleNotFound,
    ClaimNotFound,
    MethodNotAllowed,
    EmailTaken,
    SkuTaken,
    SlugTaken,
    InsufficientStock,
    LineLimitExceeded,
    CurrencyMismatch,
    OutOfStock,
    CheckoutExpired,
    CheckoutCancelled,
    CheckoutClosed,
    CheckoutNotReady,
    OrderAlreadyShipped,
    OrderAlreadyDelivered,
    OrderCancelled,
    OrderNotShipped,
    OrderNotDelivered,
    ReturnWindowClosed,
    ReturnInProgress,
    NoReturnRequested,
    SaleNotStarted,
    SaleEnded,
    SoldOut,
    PurchaseLimitReached,
    ClaimExpired,
    // 429
    RateLimited,
    // 402
    PaymentDeclined,
    PaymentFailed,
    PayloadTooLarge,
    UnsupportedMediaType,
    UnknownCategory,
    // 5xx
    NotReady,
    ServiceUnavailable,
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            InvalidBody
            | InvalidParameter
            | InvalidEmail
            | InvalidPassword
            | InvalidSku
            | InvalidTitle
            | InvalidBrand
            | InvalidDescription
            | InvalidPrice
            | InvalidCurrency
            | InvalidQuantity
            | InvalidAttributes
            | InvalidName
            | InvalidSlug
            | InvalidPage
            | LimitTooLarge
            | EmptyUpdate
            | InvalidSession
            | InvalidIdempotencyKey
            | InvalidPaymentMethod
            | InvalidShippingAddress
            | CartEmpty
            | InvalidReturn
            | InvalidShipment
            | ReturnQuantityExceeded
            | ProductNotInOrder
            | InvalidFlashSale
            | InvalidSort
            | InvalidPriceRange
            | PageTooDeep
            | QueryTooLong
            | TooManyBrands => StatusCode::BAD_REQUEST,
            Unauthorized | InvalidCredentials | InvalidToken => StatusCode::UNAUTHORIZED,
            Forbidden => StatusCode::FORBIDDEN,
            NotFound | ProductNotFound | CategoryNotFound | CartItemNotFound | NotInWishlist | CheckoutNotFound | OrderNotFound
            | SaleNotFound | ClaimNotFound => StatusCode::NOT_FOUND,
            PaymentDeclined | PaymentFailed => StatusCode::PAYMENT_REQUIRED,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            EmailTaken
            | SkuTaken
            | SlugTaken
            | InsufficientStock
            | LineLimitExceeded
            | CurrencyMismatch
            | OutOfStock
            | CheckoutExpired
            | CheckoutCancelled
            | CheckoutClosed
            | CheckoutNotReady
            | OrderAlreadyShipped
            | OrderAlreadyDelivered
            | OrderCancelled
            | OrderNotShipped
            | OrderNotDelivered
            | ReturnWindowClosed
            | ReturnInProgress
            | NoReturnRequested
            | SaleNotStarted
            | SaleEnded
            | SoldOut
            | PurchaseLimitReached
            | ClaimExpired => StatusCode::CONFLICT,
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            UnknownCategory => StatusCode::UNPROCESSABLE_ENTITY,
            NotReady | ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    /// Stable snake_case code to branch on.
    pub code: ErrorCode,
    /// Human-readable explanation; wording may change.
    pub message: String,
    /// Machine-readable specifics of some errors, e.g. `{productId, available}` for
    /// `insufficient_stock`.
    #[oai(skip_serializing_if_is_none)]
    pub details: Option<serde_json::Value>,
}

/// The error side of every operation.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed or fails validation.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing, invalid or expired credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The payment was declined or could not be taken.
    #[oai(status = 402)]
    PaymentRequired(Json<ErrorBody>),
    /// Authenticated, but not allowed.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such resource (or not yours).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Conflicts with the current state, e.g. a duplicate.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// Well-formed, but refers to something that does not exist.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Too many attempts; retry after the `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    /// Something went wrong on our side; the cause is logged, not returned.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// A service this operation needs is unavailable; retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::with_details(code, message, None)
    }

    pub fn with_details(code: ErrorCode, message: impl Into<String>, details: Option<serde_json::Value>) -> Self {
        let body = Json(ErrorBody { code, message: message.into(), details });
        match code.status() {
            StatusCode::BAD_REQUEST => ApiError::BadRequest(body),
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized(body),
            StatusCode::PAYMENT_REQUIRED => ApiError::PaymentRequired(body),
            StatusCode::FORBIDDEN => ApiError::Forbidden(body),
            StatusCode::NOT_FOUND => ApiError::NotFound(body),
            StatusCode::CONFLICT => ApiError::Conflict(body),
            StatusCode::UNPROCESSABLE_ENTITY => ApiError::Unprocessable(body),
            StatusCode::TOO_MANY_REQUESTS => ApiError::TooManyRequests(body, 1),
            StatusCode::SERVICE_UNAVAILABLE => ApiError::Unavailable(body),
            _ => ApiError::Internal(body),
        }
    }

    /// 429 `rate_limited` with a `Retry-After` of whole seconds (at least one).
    pub fn rate_limited(retry_after_ms: i64, message: impl Into<String>) -> Self {
        let body = Json(ErrorBody {
            code: ErrorCode::RateLimited,
            message: message.into(),
            details: Some(serde_json::json!({ "retryAfterMs": retry_after_ms })),
        });
        ApiError::TooManyRequests(body, (retry_after_ms.max(1) as u64).div_ceil(1000))
    }

    /// Logs the whole cause chain and returns a body that reveals nothing of it.
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        let err = err.into();
        tracing::error!(error = ?err, "internal error");
        ApiError::new(ErrorCode::Internal, "internal error")
    }

    /// A dependency failed in a way the client can retry; the cause is logged.
    pub fn unavailable(what: &str, err: impl Into<anyhow::Error>) -> Self {
        let err = err.into();
        tracing::error!(error = ?err, dependency = what, "dependency unavailable");
        ApiError::new(ErrorCode::ServiceUnavailable, format!("{what} is unavailable, retry later"))
    }

    pub fn forbidden() -> Self {
        ApiError::new(ErrorCode::Forbidden, "this operation needs the admin role")
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::new(ErrorCode::NotFound, "not found"),
            // No connection to be had (the pool stayed busy, or Postgres is gone): overload or
            // an outage, which the client may retry, not a fault in the request or in us.
            StoreError::Db(err @ (DbErr::ConnectionAcquire(_) | DbErr::Conn(_))) => ApiError::unavailable("the database", err),
            other => ApiError::internal(other),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Turns every error that leaves the router (our own, poem's and poem-openapi's parse errors)
/// into a `{code, message}` body, so clients never see plain-text errors.
pub async fn render_error(err: Error) -> Response {
    use poem_openapi::error::{AuthorizationError, ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError};

    let (code, message) = if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
        (ErrorCode::InvalidBody, format!("invalid request body: {}", e.reason))
    } else if let Some(e) = err.downcast_ref::<ParseParamError>() {
        (ErrorCode::InvalidParameter, format!("invalid parameter `{}`: {}", e.name, e.reason))
    } else if let Some(e) = err.downcast_ref::<ParsePathError>() {
        (ErrorCode::InvalidParameter, format!("invalid path parameter `{}`: {}", e.name, e.reason))
    } else if err.is::<AuthorizationError>() {
        (ErrorCode::Unauthorized, "a valid bearer access token is required".to_owned())
    } else if let Some(e) = err.downcast_ref::<ContentTypeError>() {
        (ErrorCode::UnsupportedMediaType, e.to_string())
    } else if err.is::<poem::error::NotFoundError>() {
        (ErrorCode::NotFound, "no such route".to_owned())
    } else if err.is::<poem::error::MethodNotAllowedError>() {
        (ErrorCode::MethodNotAllowed, "method not allowed on this route".to_owned())
    } else {
        let status = err.status();
        let response = err.into_response();
        if is_json(&response) {
            // Already one of our bodies (an ApiError turned into a poem::Error).
            return response;
        }
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::PayloadTooLarge, "request body too large".to_owned()),
            StatusCode::UNAUTHORIZED => (ErrorCode::Unauthorized, "authentication required".to_owned()),
            s if s.is_client_error() => (ErrorCode::InvalidBody, s.canonical_reason().unwrap_or("bad request").to_owned()),
            s => {
                tracing::error!(status = %s, "unhandled error response");
                (ErrorCode::Internal, "internal error".to_owned())
            }
        }
    };
    let mut response = ApiError::new(code, message).into_response();
    // ApiError only has variants for the statuses operations return; keep the precise one.
    response.set_status(code.status());
    response
}

fn is_json(response: &Response) -> bool {
    response.content_type().is_some_and(|ct| ct.starts_with("application/json"))
}

#[cfg(test)]
mod tests {
    use sea_orm::ConnAcquireErr;

    use super::*;

    // An end-to-end test would have to hold a lock from another transaction while the pool
    // times out; that transaction's id holds back every search indexer on the server (they
    // wait for older transactions), so the mapping is checked here.
    #[test]
    fn no_database_connection_is_a_503_and_a_failed_query_a_500() {
        for err in [DbErr::ConnectionAcquire(ConnAcquireErr::Timeout), DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed)] {
            match ApiError::from(StoreError::from(err)) {
                ApiError::Unavailable(body) => assert_eq!(body.code, ErrorCode::ServiceUnavailable),
                other => panic!("expected 503, got {other:?}"),
            }
        }
        assert!(matches!(ApiError::from(StoreError::from(DbErr::Custom("bad".to_owned()))), ApiError::Internal(_)));
    }
}

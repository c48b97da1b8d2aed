use chrono::{DateTime, Utc};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, param::Header, payload::Json};
use uuid::Uuid;

use emporium_entities::{
    StoreError,
    entity::users::Role,
    store::{carts::MergeReport, users},
};

use super::ApiTags;
use crate::{
    auth::{BearerAuth, Email, Password, TokenKind, hash_password, verify_password},
    cart::{SessionId, skip_reason_code},
    error::{ApiError, ApiResult, ErrorCode},
    state::AppState,
};

pub struct AuthApi;

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct Credentials {
    email: String,
    password: String,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct RefreshRequest {
    refresh_token: String,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct TokenResponse {
    user_id: Uuid,
    access_token: String,
    refresh_token: String,
    /// Seconds until the access token expires.
    expires_in: u64,
    token_type: String,
    /// Present when `POST /auth/login` was given an `X-Session-Id`: what happened to that
    /// anonymous cart.
    #[oai(skip_serializing_if_is_none)]
    cart_merge: Option<CartMerge>,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct MergedLine {
    product_id: i64,
    quantity: i32,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct CappedLine {
    product_id: i64,
    /// Units in the anonymous cart.
    requested: i32,
    /// Units that fit (stock, line limit).
    added: i32,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct SkippedLine {
    product_id: i64,
    /// `product_unavailable` or `currency_mismatch`.
    reason: String,
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct CartMerge {
    /// This session had been merged before; nothing changed.
    already_merged: bool,
    merged: Vec<MergedLine>,
    capped: Vec<CappedLine>,
    skipped: Vec<SkippedLine>,
}

impl From<MergeReport> for CartMerge {
    fn from(r: MergeReport) -> Self {
        CartMerge {
            already_merged: r.already_merged,
            merged: r.merged.into_iter().map(|(product_id, quantity)| MergedLine { product_id, quantity }).collect(),
            capped: r.capped.into_iter().map(|(product_id, requested, added)| CappedLine { product_id, requested, added }).collect(),
            skipped: r
                .skipped
                .into_iter()
                .map(|(product_id, reason)| SkippedLine { product_id, reason: skip_reason_code(reason).to_owned() })
                .collect(),
        }
    }
}

#[derive(Object)]
#[oai(rename_all = "camelCase")]
struct Me {
    user_id: Uuid,
    email: String,
    role: UserRole,
    created_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
enum RegisterResponse {
    /// The account was created; the tokens are ready to use.
    #[oai(status = 201)]
    Created(Json<TokenResponse>),
}

#[derive(ApiResponse)]
enum LoginResponse {
    /// Signed in.
    #[oai(status = 200)]
    Ok(Json<TokenResponse>),
}

#[derive(ApiResponse)]
enum RefreshResponse {
    /// A new token pair.
    #[oai(status = 200)]
    Ok(Json<TokenResponse>),
}

#[derive(ApiResponse)]
enum MeResponse {
    /// The signed-in user.
    #[oai(status = 200)]
    Ok(Json<Me>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
enum UserRole {
    Customer,
    Admin,
}

impl From<Role> for UserRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Customer => UserRole::Customer,
            Role::Admin => UserRole::Admin,
        }
    }
}

fn tokens_for(state: &AppState, user_id: Uuid, role: Role) -> ApiResult<TokenResponse> {
    let pair = state.tokens.issue_pair(user_id, role).map_err(ApiError::internal)?;
    Ok(TokenResponse {
        user_id,
        access_token: pair.access_token,
        refresh_token: pair.refresh_token,
        expires_in: pair.expires_in,
        token_type: "Bearer".to_owned(),
        cart_merge: None,
    })
}

/// A valid argon2id hash of a random password, checked when the email is unknown so a failed
/// login takes as long whether or not the account exists.
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0bQWbFrFrCTZ7aGzi2OZVqZ3H8y1eR8ChlY+EjIW1iM";

#[OpenApi(tag = "ApiTags::Auth")]
impl AuthApi {
    /// Create a customer account.
    #[oai(path = "/auth/register", method = "post")]
    async fn register(&self, state: poem::web::Data<&AppState>, body: Json<Credentials>) -> ApiResult<RegisterResponse> {
        let email = Email::parse(&body.email)?;
        let password = Password::parse(&body.password)?;
        let hash = hash_password(password.expose()).await.map_err(ApiError::internal)?;
        let user = match users::insert_user(&state.db, email.as_str(), &hash, Role::Customer).await {
            Ok(user) => user,
            Err(StoreError::Duplicate(_)) => {
                return Err(ApiError::new(ErrorCode::EmailTaken, "an account with this email already exists"));
            }
            Err(err) => return Err(ApiError::internal(err)),
        };
        Ok(RegisterResponse::Created(Json(tokens_for(&state, user.id, user.role)?)))
    }

    /// Sign in with email and password. With an `X-Session-Id`, that anonymous cart is merged
    /// into the account's cart (once) and the response says what was merged or capped.
    #[oai(path = "/auth/login", method = "post")]
    async fn login(
        &self,
        state: poem::web::Data<&AppState>,
        #[oai(name = "X-Session-Id")] session: Header<Option<String>>,
        body: Json<Credentials>,
    ) -> ApiResult<LoginResponse> {
        let session = session.0.as_deref().map(SessionId::parse).transpose()?;
        let wrong = || ApiError::new(ErrorCode::InvalidCredentials, "email or password is incorrect");
        // A malformed email cannot belong to an account: same answer as a wrong password.
        let Ok(email) = Email::parse(&body.email) else { return Err(wrong()) };
        let user = users::find_user_by_email(&state.db, email.as_str()).await.map_err(ApiError::internal)?;
        let stored_hash = user.as_ref().map_or(DECOY_HASH, |u| u.password_hash.as_str());
        let matches = verify_password(&body.password, stored_hash).await.map_err(ApiError::internal)?;
        match user {
            Some(user) if matches => {
                let mut tokens = tokens_for(&state, user.id, user.role)?;
                if let Some(session) = session {
                    tokens.cart_merge = Some(state.carts.merge_on_login(user.id, &session).await?.into());
                }
                Ok(LoginResponse::Ok(Json(tokens)))
            }
            _ => Err(wrong()),
        }
    }

    /// Exchange a refresh token for a new token pair.
    #[oai(path = "/auth/refresh", method = "post")]
    async fn refresh(&self, state: poem::web::Data<&AppState>, body: Json<RefreshRequest>) -> ApiResult<RefreshResponse> {
        let invalid = || ApiError::new(ErrorCode::InvalidToken, "refresh token is invalid or expired");
        let claims = state.tokens.verify(&body.refresh_token, TokenKind::Refresh).ok_or_else(invalid)?;
        // The role may have changed since the token was issued; the account may be gone.
        let user = users::find_user(&state.db, claims.sub).await.map_err(ApiError::internal)?.ok_or_else(invalid)?;
        Ok(RefreshResponse::Ok(Json(tokens_for(&state, user.id, user.role)?)))
    }

    /// The signed-in user.
    #[oai(path = "/me", method = "get")]
    async fn me(&self, state: poem::web::Data<&AppState>, auth: BearerAuth) -> ApiResult<MeResponse> {
        let user = users::find_user(&state.db, auth.user_id())
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidToken, "the account of this token no longer exists"))?;
        Ok(MeResponse::Ok(Json(Me { user_id: user.id, email: user.email, role: user.role.into(), created_at: user.created_at })))
    }
}

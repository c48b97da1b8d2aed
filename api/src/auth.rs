//! Passwords (argon2id), JWT access and refresh tokens, and the bearer security scheme.

use std::time::Duration;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier, password_hash::SaltString};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use emporium_entities::entity::users::Role;

use crate::{
    config::Secret,
    error::{ApiError, ErrorCode},
    state::AppState,
};

/// An email address, trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let email = raw.trim().to_lowercase();
        let invalid = || ApiError::new(ErrorCode::InvalidEmail, "email must look like name@example.com");
        if email.len() > 254 || email.chars().any(char::is_whitespace) {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let domain_ok =
            domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.') && !domain.contains('@') && !domain.contains("..");
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 128;

/// A password of acceptable length. Never printed.
pub struct Password(Secret);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let chars = raw.chars().count();
        if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&chars) {
            return Err(ApiError::new(
                ErrorCode::InvalidPassword,
                format!("password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters"),
            ));
        }
        Ok(Self(Secret::new(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

/// Hashes with argon2id on a blocking thread: it is deliberately slow.
pub async fn hash_password(password: &str) -> anyhow::Result<String> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
    })
    .await?
}

/// Checks a password against a stored hash; `false` for a wrong password or an unusable hash.
pub async fn verify_password(password: &str, stored_hash: &str) -> anyhow::Result<bool> {
    let password = password.to_owned();
    let stored_hash = stored_hash.to_owned();
    Ok(tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored_hash)
            .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false)
    })
    .await?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    Access,
    Refresh,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    pub role: Role,
    /// Which kind of token: a refresh token is never accepted as an access token.
    pub typ: TokenKind,
    pub iat: u64,
    pub exp: u64,
    pub jti: Uuid,
}

impl Claims {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// A freshly issued access + refresh token pair.
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

/// Issues and checks HS256 tokens.
#[derive(Clone)]
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

impl TokenService {
    pub fn new(secret: &Secret, access_ttl: Duration, refresh_ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            access_ttl,
            refresh_ttl,
        }
    }

    pub fn issue_pair(&self, user_id: Uuid, role: Role) -> anyhow::Result<TokenPair> {
        Ok(TokenPair {
            access_token: self.issue(user_id, role, TokenKind::Access, self.access_ttl)?,
            refresh_token: self.issue(user_id, role, TokenKind::Refresh, self.refresh_ttl)?,
            expires_in: self.access_ttl.as_secs(),
        })
    }

    fn issue(&self, user_id: Uuid, role: Role, typ: TokenKind, ttl: Duration) -> anyhow::Result<String> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims { sub: user_id, role, typ, iat: now, exp: now + ttl.as_secs(), jti: Uuid::new_v4() };
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?)
    }

    /// The claims of a valid, unexpired token of the expected kind.
    pub fn verify(&self, token: &str, expected: TokenKind) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok()?.claims;
        (claims.typ == expected).then_some(claims)
    }
}

/// Bearer JWT access token.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_access_token")]
pub struct BearerAuth(pub Claims);

async fn check_access_token(req: &Request, bearer: Bearer) -> Option<Claims> {
    let state = req.data::<AppState>()?;
    state.tokens.verify(&bearer.token, TokenKind::Access)
}

impl BearerAuth {
    pub fn user_id(&self) -> Uuid {
        self.0.sub
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.0.is_admin() { Ok(()) } else { Err(ApiError::forbidden()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> TokenService {
        TokenService::new(&Secret::new("test-secret"), Duration::from_secs(60), Duration::from_secs(600))
    }

    #[test]
    fn refresh_tokens_are_not_access_tokens() {
        let tokens = service();
        let pair = tokens.issue_pair(Uuid::new_v4(), Role::Customer).unwrap();
        assert!(tokens.verify(&pair.access_token, TokenKind::Access).is_some());
        assert!(tokens.verify(&pair.refresh_token, TokenKind::Access).is_none());
        assert!(tokens.verify(&pair.refresh_token, TokenKind::Refresh).is_some());
    }

    #[test]
    fn tokens_signed_with_another_secret_are_rejected() {
        let other = TokenService::new(&Secret::new("other"), Duration::from_secs(60), Duration::from_secs(60));
        let pair = other.issue_pair(Uuid::new_v4(), Role::Admin).unwrap();
        assert!(service().verify(&pair.access_token, TokenKind::Access).is_none());
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(Email::parse(" Ann@Example.COM ").unwrap().as_str(), "ann@example.com");
        for bad in ["", "ann", "ann@", "@example.com", "ann@example", "a b@example.com", "ann@@example.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}

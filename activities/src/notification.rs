//! Delivery of queued notifications to the store's webhook, signed with HMAC-SHA256.

use std::{sync::Arc, time::Duration};

use hmac::{Hmac, Mac};
use sea_orm::DatabaseConnection;
use sha2::Sha256;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use emporium_entities::store::notifications::{self, DeliveryStatus, Notification};
use emporium_workflows::order::contract::{DeliverNotificationInput, DeliveryResult, WEBHOOK_MAX_ATTEMPTS};

/// Header carrying `sha256=<hex HMAC-SHA256 of the body under the shared secret>`.
pub const SIGNATURE_HEADER: &str = "X-Emporium-Signature";
/// Header carrying the notification's stable id, so a receiver can drop a repeated delivery.
pub const DELIVERY_HEADER: &str = "X-Emporium-Delivery";
pub const EVENT_HEADER: &str = "X-Emporium-Event";

/// Where notifications go: a URL and the secret both sides share.
#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("url", &self.url).field("secret", &"<redacted>").finish()
    }
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The JSON a webhook receives.
pub fn body_of(n: &Notification) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": n.dedupe_key,
        "kind": n.kind,
        "orderId": n.order_id,
        "userId": n.user_id,
        "payload": n.payload,
        "createdAt": n.created_at,
    }))
    .expect("JSON values serialise")
}

pub struct NotificationActivities {
    db: DatabaseConnection,
    webhook: Option<Webhook>,
    http: reqwest::Client,
}

impl NotificationActivities {
    pub fn new(db: DatabaseConnection, webhook: Option<Webhook>) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("an HTTP client with a timeout builds");
        Self { db, webhook, http }
    }
}

#[activities]
impl NotificationActivities {
    /// Implements `DeliverNotification`: a failed POST is a retryable error until the last
    /// attempt, which marks the notification FAILED and returns, so the order moves on.
    #[activity]
    pub async fn deliver_notification(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: DeliverNotificationInput,
    ) -> Result<DeliveryResult, ActivityError> {
        let attempt = ctx.info().attempt;
        self.deliver_now(input, attempt).await
    }
}

impl NotificationActivities {
    pub async fn deliver_now(&self, input: DeliverNotificationInput, attempt: u32) -> Result<DeliveryResult, ActivityError> {
        let Some(notification) = notifications::find_by_key(&self.db, &input.dedupe_key).await? else {
            tracing::warn!(dedupe_key = input.dedupe_key, "no notification queued under this key");
            return Ok(DeliveryResult::Missing);
        };
        match notification.status.as_str() {
            "DELIVERED" => return Ok(DeliveryResult::Delivered),
            "LOGGED" => return Ok(DeliveryResult::Logged),
            "FAILED" => return Ok(DeliveryResult::Failed),
            _ => {}
        }
        let body = body_of(&notification);
        let Some(webhook) = &self.webhook else {
            tracing::info!(
                kind = notification.kind,
                order_id = ?notification.order_id,
                body = %String::from_utf8_lossy(&body),
                "notification (no webhook configured)"
            );
            notifications::record_attempt(&self.db, notification.id, DeliveryStatus::Logged, None).await?;
            return Ok(DeliveryResult::Logged);
        };
        let sent = self
            .http
            .post(&webhook.url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, sign(&webhook.secret, &body))
            .header(DELIVERY_HEADER, &notification.dedupe_key)
            .header(EVENT_HEADER, &notification.kind)
            .body(body)
            .send()
            .await;
        let error = match sent {
            Ok(response) if response.status().is_success() => {
                notifications::record_attempt(&self.db, notification.id, DeliveryStatus::Delivered, None).await?;
                tracing::info!(kind = notification.kind, dedupe_key = notification.dedupe_key, "notification delivered");
                return Ok(DeliveryResult::Delivered);
            }
            Ok(response) => format!("webhook answered {}", response.status()),
            Err(err) => format!("webhook unreachable: {err}"),
        };
        if attempt >= WEBHOOK_MAX_ATTEMPTS {
            notifications::record_attempt(&self.db, notification.id, DeliveryStatus::Failed, Some(&error)).await?;
            tracing::error!(dedupe_key = notification.dedupe_key, attempt, error, "notification given up");
            return Ok(DeliveryResult::Failed);
        }
        notifications::record_attempt(&self.db, notification.id, DeliveryStatus::Retrying, Some(&error)).await?;
        tracing::warn!(dedupe_key = notification.dedupe_key, attempt, error, "notification not delivered; will retry");
        Err(anyhow::anyhow!(error).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2.
    #[test]
    fn signature_is_hmac_sha256_hex() {
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

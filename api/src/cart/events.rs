//! Live cart updates: every change is published on `cart-events:<user>` (by the cache write,
//! see `cache::put`); each API instance listens to the pattern once and hands messages to the
//! SSE streams of that user.

use std::sync::Arc;

use fred::{
    clients::SubscriberClient,
    interfaces::{ClientLike, EventInterface, PubsubInterface},
    prelude::{Builder, Config as RedisConfig, ReconnectPolicy},
};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::CartView;

const PREFIX: &str = "cart-events:";

#[derive(Clone)]
pub struct CartEvents {
    sender: broadcast::Sender<(Uuid, Arc<str>)>,
}

impl CartEvents {
    /// Starts listening (reconnecting and resubscribing as needed) and returns the hub.
    pub fn start(redis_url: &str) -> anyhow::Result<Self> {
        let (sender, _) = broadcast::channel(1024);
        let subscriber: SubscriberClient = Builder::from_config(RedisConfig::from_url(redis_url)?)
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
            .build_subscriber_client()?;
        let forward = sender.clone();
        subscriber.on_message(move |message| {
            let forward = forward.clone();
            async move {
                let user = message.channel.strip_prefix(PREFIX).and_then(|id| Uuid::parse_str(id).ok());
                if let (Some(user), Some(json)) = (user, message.value.as_string()) {
                    // no listener on this instance is fine
                    let _ = forward.send((user, Arc::from(json)));
                }
                Ok(())
            }
        });
        subscriber.connect();
        // Re-subscribes after a reconnect.
        subscriber.manage_subscriptions();
        tokio::spawn(async move {
            loop {
                match subscriber.psubscribe(format!("{PREFIX}*")).await {
                    Ok(()) => break,
                    Err(err) => {
                        tracing::warn!(error = %err, "cart events: subscribe failed, retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
            // keep the client alive for the life of the process
            std::future::pending::<()>().await;
            drop(subscriber);
        });
        Ok(Self { sender })
    }

    /// The channel and message that tell every device of `user` about its new cart; the
    /// cache write publishes it. Best effort: a lost event is repaired by the next one or by
    /// reconnecting.
    pub fn event(user: Uuid, cart: &CartView) -> Option<(String, String)> {
        match serde_json::to_string(&poem_openapi::types::ToJSON::to_json(cart)) {
            Ok(json) => Some((format!("{PREFIX}{user}"), json)),
            Err(err) => {
                tracing::error!(error = %err, "cart view does not serialise");
                None
            }
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<(Uuid, Arc<str>)> {
        self.sender.subscribe()
    }
}

//! Live cart updates: every change is published on `cart-events:<user>` (by the cache write,
//! see `cache::put`). An API instance subscribes to a user's channel only while a device of
//! that user has `GET /cart/events` open on it, so an instance hears of its own listeners'
//! carts and nothing else, and a change to a cart nobody watches costs Redis one `PUBLISH` to
//! no one. (Listening to the pattern `cart-events:*` made every instance receive, parse and
//! hand round every cart change in the store.)

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use fred::{
    clients::SubscriberClient,
    interfaces::{ClientLike, EventInterface, PubsubInterface},
    prelude::{Builder, Config as RedisConfig, ReconnectPolicy},
    types::config::PerformanceConfig,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use super::CartView;

const PREFIX: &str = "cart-events:";

/// Events of one user not yet taken by the slowest of its streams; a stream further behind
/// skips to the cart as it is now.
const PER_USER_BACKLOG: usize = 16;

/// How long opening a stream waits for Redis to confirm the subscription.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a stream of one user hears.
#[derive(Debug, Clone)]
pub enum CartEvent {
    /// The user's new cart, as JSON (a `CartView`).
    Changed(Arc<str>),
    /// Events may have been lost (this instance fell behind, or its Redis connection was
    /// re-established): send the cart as it is now.
    Resync,
}

#[derive(Clone)]
pub struct CartEvents {
    subscriptions: mpsc::UnboundedSender<Subscription>,
}

struct Shared {
    /// The streams open on this instance, by user: one sender for all of a user's devices.
    listeners: Mutex<HashMap<Uuid, Listeners>>,
}

struct Listeners {
    sender: broadcast::Sender<CartEvent>,
    streams: usize,
}

/// A request to the task that subscribes and unsubscribes, one at a time, so that Redis sees a
/// user's `SUBSCRIBE` and `UNSUBSCRIBE` in the order the streams opened and closed.
enum Subscription {
    Open(Uuid, oneshot::Sender<Result<broadcast::Receiver<CartEvent>, fred::error::Error>>),
    Close(Uuid),
}

/// The events of one user for one stream; dropping it closes the stream's subscription.
pub struct CartEventStream {
    pub receiver: broadcast::Receiver<CartEvent>,
    user: Uuid,
    subscriptions: mpsc::UnboundedSender<Subscription>,
}

impl Drop for CartEventStream {
    fn drop(&mut self) {
        let _ = self.subscriptions.send(Subscription::Close(self.user));
    }
}

fn channel(user: Uuid) -> String {
    format!("{PREFIX}{user}")
}

impl CartEvents {
    /// Connects the subscriber (it reconnects and resubscribes by itself) and starts the tasks
    /// that route messages to streams and manage the subscriptions.
    pub fn start(redis_url: &str) -> anyhow::Result<Self> {
        let subscriber: SubscriberClient = Builder::from_config(RedisConfig::from_url(redis_url)?)
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
            // the client's own queue between its reader and `route`
            .set_performance_config(PerformanceConfig { broadcast_channel_capacity: 1024, ..Default::default() })
            .build_subscriber_client()?;
        let shared = Arc::new(Shared { listeners: Mutex::new(HashMap::new()) });
        // Taken before connecting, so that no message or reconnection goes unseen.
        let (messages, reconnections) = (subscriber.message_rx(), subscriber.reconnect_rx());
        subscriber.connect();
        subscriber.manage_subscriptions();
        tokio::spawn(route(shared.clone(), messages, reconnections));
        let (subscriptions, requests) = mpsc::unbounded_channel();
        tokio::spawn(manage(subscriber, shared, requests));
        Ok(Self { subscriptions })
    }

    /// Subscribes to `user`'s cart changes, once Redis has confirmed it: a change committed after
    /// this returns is heard.
    pub async fn subscribe(&self, user: Uuid) -> Result<CartEventStream, fred::error::Error> {
        let (reply, answer) = oneshot::channel();
        let stopped = || fred::error::Error::new(fred::error::ErrorKind::Canceled, "cart events have stopped");
        self.subscriptions.send(Subscription::Open(user, reply)).map_err(|_| stopped())?;
        let receiver = answer.await.map_err(|_| stopped())??;
        Ok(CartEventStream { receiver, user, subscriptions: self.subscriptions.clone() })
    }

    /// The channel and message that tell every device of `user` about its new cart; the
    /// cache write publishes it. Best effort: a lost event is repaired by the next one or by
    /// reconnecting.
    pub fn event(user: Uuid, cart: &CartView) -> Option<(String, String)> {
        cart.serialized().map(|json| (channel(user), json))
    }
}

impl Shared {
    fn send(&self, user: Uuid, event: CartEvent) {
        if let Some(listeners) = self.listeners.lock().expect("cart listeners").get(&user) {
            let _ = listeners.sender.send(event); // a stream may just have gone
        }
    }

    fn resync_all(&self) {
        for listeners in self.listeners.lock().expect("cart listeners").values() {
            let _ = listeners.sender.send(CartEvent::Resync);
        }
    }
}

/// Hands each message to its user's streams. Falling behind the client's queue, or a new
/// connection (messages published meanwhile are gone), makes every stream resend its cart.
async fn route(
    shared: Arc<Shared>,
    mut messages: broadcast::Receiver<fred::types::Message>,
    mut reconnections: broadcast::Receiver<fred::types::config::Server>,
) {
    use broadcast::error::RecvError;
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Ok(message) => {
                    let user = message.channel.strip_prefix(PREFIX).and_then(|id| Uuid::parse_str(id).ok());
                    if let (Some(user), Some(json)) = (user, message.value.as_string()) {
                        shared.send(user, CartEvent::Changed(Arc::from(json)));
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "cart events fell behind; streams resend their carts");
                    shared.resync_all();
                }
                Err(RecvError::Closed) => return,
            },
            reconnected = reconnections.recv() => match reconnected {
                // `manage_subscriptions` resubscribes; what was published meanwhile is lost
                Ok(_) | Err(RecvError::Lagged(_)) => shared.resync_all(),
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// Subscribes a user's channel when its first stream opens here, unsubscribes when its last
/// closes.
async fn manage(subscriber: SubscriberClient, shared: Arc<Shared>, mut requests: mpsc::UnboundedReceiver<Subscription>) {
    while let Some(request) = requests.recv().await {
        match request {
            Subscription::Open(user, reply) => {
                let receiver = {
                    let mut listeners = shared.listeners.lock().expect("cart listeners");
                    let entry =
                        listeners.entry(user).or_insert_with(|| Listeners { sender: broadcast::channel(PER_USER_BACKLOG).0, streams: 0 });
                    entry.streams += 1;
                    entry.sender.subscribe()
                };
                // Redis ignores a second SUBSCRIBE of a channel; sending it anyway means each
                // stream waits until the subscription is in place, not only the first.
                let subscribed = match tokio::time::timeout(SUBSCRIBE_TIMEOUT, subscriber.subscribe(channel(user))).await {
                    Ok(result) => result,
                    Err(_) => Err(fred::error::Error::new(fred::error::ErrorKind::Timeout, "subscribing to cart events timed out")),
                };
                let outcome = match subscribed {
                    Ok(()) => Ok(receiver),
                    Err(err) => {
                        close(&subscriber, &shared, user).await;
                        Err(err)
                    }
                };
                // the request may have gone; its stream, never made, closes nothing
                if let Err(Ok(_)) = reply.send(outcome) {
                    close(&subscriber, &shared, user).await;
                }
            }
            Subscription::Close(user) => close(&subscriber, &shared, user).await,
        }
    }
}

async fn close(subscriber: &SubscriberClient, shared: &Shared, user: Uuid) {
    let last = {
        let mut listeners = shared.listeners.lock().expect("cart listeners");
        match listeners.get_mut(&user) {
            Some(entry) if entry.streams > 1 => {
                entry.streams -= 1;
                false
            }
            Some(_) => listeners.remove(&user).is_some(),
            None => false,
        }
    };
    if last && let Err(err) = subscriber.unsubscribe(channel(user)).await {
        tracing::warn!(error = %err, "could not unsubscribe from a user's cart events");
    }
}

//! The benchmarks' load generator: each simulated client writes requests straight to hyper over
//! keep-alive HTTP/1.1 connections of its own (no pool, no URL parsing, no per-request client
//! state), so on a 2-core machine the load takes as little CPU from the server as a generator
//! can.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, StatusCode,
    client::conn::http1::{self, SendRequest},
    header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue},
};
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};

pub struct LoadClient {
    authority: String,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl LoadClient {
    /// A client of the server at `address` (`http://host:port`); connects on first use.
    pub fn new(address: &str) -> Self {
        let authority = address.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let host = HeaderValue::from_str(&authority).expect("host:port is a header value");
        Self { authority, host, sender: None }
    }

    async fn connect(&self) -> SendRequest<Full<Bytes>> {
        let stream = tokio::net::TcpStream::connect(&self.authority).await.expect("connect to the API");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.expect("HTTP/1.1 handshake");
        tokio::spawn(connection);
        sender
    }

    /// Sends one request and reads the whole answer. `bearer` becomes the Authorization
    /// header; `body` is sent as JSON.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        headers: &[(HeaderName, &str)],
        body: Option<Bytes>,
    ) -> (StatusCode, Bytes) {
        let mut request = Request::builder().method(method).uri(path).header(HOST, self.host.clone());
        if let Some(token) = bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(body.unwrap_or_default())).expect("valid request");
        let mut sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.connect().await,
        };
        sender.ready().await.expect("connection ready");
        let response = sender.send_request(request).await.expect("response");
        let status = response.status();
        let body = response.into_body().collect().await.expect("response body").to_bytes();
        self.sender = Some(sender);
        (status, body)
    }
}

/// One request of a simulated client, owned so that it can go out on a task of its own.
pub struct Exchange {
    pub method: Method,
    pub path: String,
    pub bearer: Option<String>,
    pub headers: Vec<(HeaderName, String)>,
    pub body: Option<Bytes>,
}

impl Exchange {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self { method, path: path.into(), bearer: None, headers: Vec::new(), body: None }
    }
}

/// What one request of a run took.
pub struct Timed {
    /// from when it was sent (see [`Pacer::next`]) to the last byte of the answer
    pub latency: std::time::Duration,
    /// when it was sent, from the start of the run
    pub at: std::time::Duration,
    /// which of the client's requests it was
    pub op: usize,
    pub status: StatusCode,
}

/// Most connections a simulated client opens to the server, as a browser does (6 per host in
/// Chrome and Firefox): a request that finds them all busy waits for one, and that wait is
/// counted in its latency. Without a limit, a stall of the server made the clients open
/// thousands of connections, whose handshakes then slowed the server further.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 6;

/// A simulated client's keep-alive connections: one while its requests come one at a time, more
/// (up to [`MAX_CONNECTIONS_PER_CLIENT`]) while paced requests overlap. They are kept for the
/// client's later requests and runs, so a connection is opened in a measured run only when the
/// client has never had that many requests out at once.
#[derive(Clone)]
pub struct Connections {
    address: Arc<str>,
    idle: Arc<Mutex<Vec<LoadClient>>>,
    opened: Arc<std::sync::atomic::AtomicUsize>,
    free: Arc<tokio::sync::Semaphore>,
}

impl Connections {
    /// A client of the server at `address` (`http://host:port`), with no connection yet.
    pub fn new(address: &str) -> Self {
        Self {
            address: address.into(),
            idle: Default::default(),
            opened: Default::default(),
            free: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS_PER_CLIENT)),
        }
    }

    /// How many connections the client has opened.
    pub fn opened(&self) -> usize {
        self.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn send(&self, request: Exchange) -> StatusCode {
        let _free = self.free.acquire().await.expect("the semaphore is never closed");
        let spare = self.idle.lock().expect("connections").pop();
        let mut connection = spare.unwrap_or_else(|| {
            self.opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            LoadClient::new(&self.address)
        });
        let headers: Vec<(HeaderName, &str)> = request.headers.iter().map(|(n, v)| (n.clone(), v.as_str())).collect();
        let (status, _) = connection.send(request.method, &request.path, request.bearer.as_deref(), &headers, request.body).await;
        self.idle.lock().expect("connections").push(connection);
        status
    }
}

/// Sends client `client`'s `ops` requests (`exchange(op)` makes the op-th) at `pace`, over
/// `connections`.
///
/// Saturated, the client sends each request when it has the answer to the last. Paced, each
/// request goes out when it falls due, over a free connection of the client, or a new one when
/// all are still waiting for answers (up to [`MAX_CONNECTIONS_PER_CLIENT`]).
///
/// With one connection per client, a paced request waited behind its client's previous one: at
/// 75% load each of 32 clients sent a request every ~6 ms and an answer took 3 – 4 ms, so that
/// queue, inside the generator and not the server, made the tail. A store's requests come from
/// many shoppers, none of whom waits for another's answer.
pub async fn drive(
    connections: &Connections,
    pace: Pace,
    client: usize,
    clients: usize,
    start: tokio::time::Instant,
    ops: usize,
    mut exchange: impl FnMut(usize) -> Exchange,
) -> Vec<Timed> {
    let mut pacer = Pacer::new(pace, client, clients, start);
    let mut timed = Vec::with_capacity(ops);
    let mut out = Vec::new();
    for op in 0..ops {
        let request = exchange(op);
        let sent = pacer.next().await;
        let connections = connections.clone();
        let send = async move {
            let status = connections.send(request).await;
            Timed { latency: sent.elapsed(), at: sent.duration_since(start), op, status }
        };
        match pace {
            Pace::Saturate => timed.push(send.await),
            Pace::Rate(_) => out.push(tokio::spawn(send)),
        }
    }
    for request in out {
        timed.push(request.await.expect("request task"));
    }
    timed
}

/// How a benchmark's clients send their requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Each client sends its next request as soon as it has the answer to the last: this finds
    /// the server's capacity. Latency at this pace is mostly time spent queueing: by Little's
    /// law the mean is clients / throughput, whatever a request costs.
    Saturate,
    /// The clients together send this many requests a second, arriving the way independent
    /// shoppers do: each client's requests fall due at random (exponential gaps, mean
    /// `clients / rate` seconds; a Poisson stream, and so is their sum), from a fixed seed per
    /// client so that runs repeat. A request goes out when it falls due whether or not the
    /// client's earlier ones have been answered (see [`drive`]), so a server that falls behind
    /// is charged for the whole wait (no coordinated omission).
    Rate(f64),
}

impl Pace {
    /// `fraction` of a measured capacity, in requests a second.
    pub fn share_of(capacity_per_second: f64, fraction: f64) -> Self {
        Pace::Rate(capacity_per_second * fraction)
    }

    pub fn describe(&self) -> String {
        match self {
            Pace::Saturate => "saturated".to_owned(),
            Pace::Rate(rate) => format!("at {rate:.0}/s"),
        }
    }
}

/// One client's schedule under a [`Pace`].
pub struct Pacer {
    /// when the next request is due; `None` when saturating
    due: Option<tokio::time::Instant>,
    /// mean gap between this client's requests, in seconds
    mean_gap: f64,
    /// splitmix64 state: the client's own random gaps
    seed: u64,
}

impl Pacer {
    /// The schedule of client `client` of `clients`, starting at `start`.
    pub fn new(pace: Pace, client: usize, clients: usize, start: tokio::time::Instant) -> Self {
        match pace {
            Pace::Saturate => Self { due: None, mean_gap: 0.0, seed: 0 },
            Pace::Rate(rate) => {
                let mut pacer = Self { due: None, mean_gap: clients as f64 / rate, seed: 0x9E37_79B9_7F4A_7C15 ^ client as u64 };
                pacer.due = Some(start + pacer.gap());
                pacer
            }
        }
    }

    /// An exponential gap with the client's mean.
    fn gap(&mut self) -> std::time::Duration {
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // uniform in (0, 1]: never ln(0)
        let uniform = ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        std::time::Duration::from_secs_f64(-uniform.ln() * self.mean_gap)
    }

    /// Waits until the next request is due and returns the instant its latency counts from:
    /// the send itself when the timer woke the client (a timer firing late is the generator's
    /// delay, not the server's), the due time when the client only got here after it (its
    /// task ran late, or it was still waiting for an answer).
    pub async fn next(&mut self) -> tokio::time::Instant {
        let Some(due) = self.due else { return tokio::time::Instant::now() };
        self.due = Some(due + self.gap());
        if tokio::time::Instant::now() < due {
            tokio::time::sleep_until(due).await;
            tokio::time::Instant::now()
        } else {
            due
        }
    }
}

/// The `p` quantile (0 < p ≤ 1) of sorted latencies; zero for none.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    if sorted.is_empty() {
        return std::time::Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// The loads, as fractions of the measured capacity, at which latency is reported: `LOADS`
/// (comma-separated, e.g. `0.25,0.5,0.75`), else half (the load at which the design states
/// checkout's latency target) and three quarters.
pub fn latency_loads() -> Vec<f64> {
    std::env::var("LOADS")
        .ok()
        .map(|v| v.split(',').filter_map(|f| f.trim().parse::<f64>().ok()).filter(|f| *f > 0.0).collect::<Vec<_>>())
        .filter(|loads| !loads.is_empty())
        .unwrap_or_else(|| vec![0.5, 0.75])
}

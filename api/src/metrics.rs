//! Prometheus metrics: request counts and latency per route and status.

use std::time::Instant;

use poem::{Endpoint, IntoResponse, Request, Response};
use prometheus::{Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::cart::WriterMetrics;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    flash_entries: IntCounterVec,
    flash_queue: IntGaugeVec,
    flash_units_sold: IntGaugeVec,
    flash_claims_expired: IntGaugeVec,
    flash_counter_rebuilds: IntCounter,
    search_cache: IntCounterVec,
    cart_writer: WriterMetrics,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let labels = &["method", "route", "status"];
        let requests = IntCounterVec::new(Opts::new("http_requests_total", "HTTP requests by method, route and status"), labels)
            .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency by method, route and status")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            labels,
        )
        .expect("valid metric");
        let flash_entries = IntCounterVec::new(Opts::new("flash_sale_entries_total", "Flash-sale entry attempts by outcome"), &["outcome"])
            .expect("valid metric");
        let gauge = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["sale"]).expect("valid metric");
        let flash_queue = gauge("flash_sale_queue_length", "Users in a flash sale's waiting room");
        let flash_units_sold = gauge("flash_sale_units_sold", "Units of a flash sale paid for");
        let flash_claims_expired = gauge("flash_sale_claims_expired", "Claims of a flash sale that expired unpaid");
        let flash_counter_rebuilds =
            IntCounter::new("flash_sale_counter_rebuilds_total", "Flash-sale counters Redis had lost, rebuilt from Postgres")
                .expect("valid metric");
        let search_cache =
            IntCounterVec::new(Opts::new("search_cache_requests_total", "Search cache lookups by result (hit or miss)"), &["result"])
                .expect("valid metric");
        // both series exist from the start, so a dashboard sees 0 rather than nothing
        search_cache.with_label_values(&["hit"]);
        search_cache.with_label_values(&["miss"]);
        registry.register(Box::new(requests.clone())).expect("registered once");
        registry.register(Box::new(latency.clone())).expect("registered once");
        registry.register(Box::new(search_cache.clone())).expect("registered once");
        registry.register(Box::new(flash_entries.clone())).expect("registered once");
        registry.register(Box::new(flash_queue.clone())).expect("registered once");
        registry.register(Box::new(flash_units_sold.clone())).expect("registered once");
        registry.register(Box::new(flash_claims_expired.clone())).expect("registered once");
        registry.register(Box::new(flash_counter_rebuilds.clone())).expect("registered once");
        let cart_write_batch_size = Histogram::with_opts(
            HistogramOpts::new("cart_write_batch_size", "Signed-in cart changes sent to Postgres in one batch")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
        )
        .expect("valid metric");
        registry.register(Box::new(cart_write_batch_size.clone())).expect("registered once");
        let cart_write_batch_seconds = Histogram::with_opts(
            HistogramOpts::new("cart_write_batch_seconds", "Time a batch of signed-in cart changes took in Postgres, commit included")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
        )
        .expect("valid metric");
        registry.register(Box::new(cart_write_batch_seconds.clone())).expect("registered once");
        let cart_writer = WriterMetrics { batch_size: cart_write_batch_size, batch_seconds: cart_write_batch_seconds };
        Self {
            registry,
            requests,
            latency,
            search_cache,
            flash_entries,
            flash_queue,
            flash_units_sold,
            flash_claims_expired,
            flash_counter_rebuilds,
            cart_writer,
        }
    }

    /// Where the cart writer records each batch it sends.
    pub fn cart_writer(&self) -> WriterMetrics {
        self.cart_writer.clone()
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer).expect("text encoding of gathered metrics cannot fail");
        String::from_utf8(buffer).expect("prometheus text is UTF-8")
    }

    /// Counts one search cache lookup.
    pub fn search_cache(&self, hit: bool) {
        self.search_cache.with_label_values(&[if hit { "hit" } else { "miss" }]).inc();
    }

    pub fn flash_entry(&self, outcome: &str) {
        self.flash_entries.with_label_values(&[outcome]).inc();
    }

    pub fn flash_counter_rebuilt(&self) {
        self.flash_counter_rebuilds.inc();
    }

    pub fn flash_queue_length(&self, sale: uuid::Uuid, length: i64) {
        self.flash_queue.with_label_values(&[sale.to_string().as_str()]).set(length);
    }

    /// Figures of a sale as Postgres has them (claims expire and units sell in the worker).
    pub fn flash_sale_figures(&self, sale: uuid::Uuid, sold: i64, expired: i64) {
        let sale = sale.to_string();
        self.flash_units_sold.with_label_values(&[sale.as_str()]).set(sold);
        self.flash_claims_expired.with_label_values(&[sale.as_str()]).set(expired);
    }

    fn observe(&self, method: &str, route: &str, status: u16, started: Instant) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.latency.with_label_values(&labels).observe(started.elapsed().as_secs_f64());
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The route label: the path with ids replaced, so the label set stays small.
pub fn route_label(path: &str) -> String {
    let mut label = String::with_capacity(path.len());
    for segment in path.split('/').skip(1) {
        label.push('/');
        let is_id = !segment.is_empty() && (segment.bytes().all(|b| b.is_ascii_digit()) || uuid::Uuid::parse_str(segment).is_ok());
        label.push_str(if is_id { "{id}" } else { segment });
    }
    if label.is_empty() { "/".to_owned() } else { label }
}

/// Middleware body: times the request and records it. Unknown routes share one label.
pub async fn record<E: Endpoint>(metrics: Metrics, next: E, req: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let result = next.call(req).await.map(IntoResponse::into_response);
    let (status, matched) = match &result {
        Ok(response) => (response.status().as_u16(), true),
        Err(err) => (err.status().as_u16(), !err.is::<poem::error::NotFoundError>()),
    };
    let route = if matched { route_label(&path) } else { "unmatched".to_owned() };
    metrics.observe(&method, &route, status, started);
    result
}

#[cfg(test)]
mod tests {
    use super::route_label;

    #[test]
    fn ids_are_folded_into_the_route_label() {
        assert_eq!(route_label("/products/42"), "/products/{id}");
        assert_eq!(route_label("/admin/products/7/inventory"), "/admin/products/{id}/inventory");
        assert_eq!(route_label("/orders/0190a3c2-7b1e-7c3d-8f00-123456789abc"), "/orders/{id}");
        assert_eq!(route_label("/"), "/");
    }
}

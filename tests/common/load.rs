//! The benchmarks' load generator: each simulated client owns one keep-alive HTTP/1.1
//! connection and writes requests straight to hyper (no pool, no URL parsing, no per-request
//! client state), so on a 2-core machine the load takes as little CPU from the server as a
//! generator can.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, StatusCode,
    client::conn::http1::{self, SendRequest},
    header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue},
};
use hyper_util::rt::TokioIo;

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

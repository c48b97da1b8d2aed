//! The Stripe gateway against a local stand-in for `api.stripe.com`: a poem server on
//! 127.0.0.1:0 that records each request and answers with Stripe-shaped JSON. No Temporal,
//! Postgres or network needed; the tests check what Stripe would receive and how its answers
//! map onto `ChargeOutcome` / `GatewayError`.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use poem::{Request, Response, Server, endpoint::make, http::StatusCode, listener::TcpAcceptor};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use emporium_activities::{
    StripeGateway,
    payment::{ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway, RefundRequest},
};

const SECRET_KEY: &str = "sk_test_emporium_stand_in_4eC39HqLyjWDarjtT1zdp7dc";

// ---------------------------------------------------------------------------------------------
// The stand-in

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    /// The form-encoded body, decoded, in order.
    form: Vec<(String, String)>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// What the stand-in answers.
struct Answer {
    status: u16,
    body: String,
    delay: Duration,
}

impl Answer {
    fn json(status: u16, body: Value) -> Self {
        Self { status, body: body.to_string(), delay: Duration::ZERO }
    }

    fn raw(status: u16, body: &str) -> Self {
        Self { status, body: body.to_owned(), delay: Duration::ZERO }
    }

    fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Responder = dyn Fn(&Recorded) -> Answer + Send + Sync;

struct StandIn {
    base: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    server: JoinHandle<()>,
}

impl StandIn {
    async fn start(respond: impl Fn(&Recorded) -> Answer + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the stand-in");
        let base = format!("http://{}", listener.local_addr().expect("stand-in address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Responder> = Arc::new(respond);
        let log = requests.clone();
        let endpoint = make(move |req: Request| {
            let log = log.clone();
            let respond = respond.clone();
            async move {
                let method = req.method().as_str().to_owned();
                let path = req.uri().path().to_owned();
                let headers = req
                    .headers()
                    .iter()
                    .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap_or("<not ascii>").to_owned()))
                    .collect();
                let body = req.into_body().into_string().await.unwrap_or_default();
                let form = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                let recorded = Recorded { method, path, headers, form };
                let answer = respond(&recorded);
                log.lock().unwrap().push(recorded);
                tokio::time::sleep(answer.delay).await;
                Response::builder()
                    .status(StatusCode::from_u16(answer.status).expect("status"))
                    .header("content-type", "application/json")
                    .header("request-id", "req_standin")
                    .body(answer.body)
            }
        });
        let acceptor = TcpAcceptor::from_tokio(listener).expect("acceptor");
        let server = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(endpoint).await;
        });
        Self { base, requests, server }
    }

    /// A stand-in giving every request the same answer.
    async fn answering(status: u16, body: Value) -> Self {
        let body = body.to_string();
        Self::start(move |_| Answer::raw(status, &body)).await
    }

    fn gateway(&self) -> StripeGateway {
        StripeGateway::with_api_base(SECRET_KEY, &self.base).expect("gateway")
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    fn only_request(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "{requests:#?}");
        requests.into_iter().next().unwrap()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Stripe-shaped bodies (as of API version 2025; unknown keys are ignored by the client)

fn payment_intent(id: &str, status: &str, amount: i64, currency: &str) -> Value {
    json!({
        "id": id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": { "tip": {} },
        "amount_received": if status == "succeeded" { amount } else { 0 },
        "application": null,
        "application_fee_amount": null,
        "automatic_payment_methods": { "allow_redirects": "never", "enabled": true },
        "canceled_at": null,
        "cancellation_reason": null,
        "capture_method": "automatic_async",
        "client_secret": format!("{id}_secret_Vx2fQ0gT7kLmNp"),
        "confirmation_method": "automatic",
        "created": 1_767_225_600,
        "currency": currency,
        "customer": null,
        "description": "Emporium checkout 0b6f3d2e",
        "excluded_payment_method_types": null,
        "last_payment_error": null,
        "latest_charge": if status == "succeeded" { json!("ch_3QstandinCharge01") } else { Value::Null },
        "livemode": false,
        "metadata": {},
        "next_action": null,
        "on_behalf_of": null,
        "payment_method": "pm_1QstandinVisa4242",
        "payment_method_configuration_details": { "id": "pmc_1QstandinConfig", "parent": null },
        "payment_method_options": {
            "card": {
                "installments": null,
                "mandate_options": null,
                "network": null,
                "request_three_d_secure": "automatic"
            }
        },
        "payment_method_types": ["card"],
        "processing": null,
        "receipt_email": null,
        "review": null,
        "setup_future_usage": null,
        "shipping": null,
        "source": null,
        "statement_descriptor": null,
        "statement_descriptor_suffix": null,
        "status": status,
        "transfer_data": null,
        "transfer_group": null
    })
}

fn card_payment_method() -> Value {
    json!({
        "id": "pm_1QstandinDecline02",
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {
            "address": { "city": null, "country": null, "line1": null, "line2": null, "postal_code": null, "state": null },
            "email": null, "name": null, "phone": null, "tax_id": null
        },
        "card": {
            "brand": "visa",
            "checks": { "address_line1_check": null, "address_postal_code_check": null, "cvc_check": null },
            "country": "US",
            "display_brand": "visa",
            "exp_month": 12,
            "exp_year": 2034,
            "fingerprint": "StandInFingerpr1",
            "funding": "credit",
            "generated_from": null,
            "last4": "0002",
            "networks": { "available": ["visa"], "preferred": null },
            "regulated_status": "unregulated",
            "three_d_secure_usage": { "supported": true },
            "wallet": null
        },
        "created": 1_767_225_600,
        "customer": null,
        "livemode": false,
        "metadata": {},
        "type": "card"
    })
}

/// What Stripe answers (HTTP 402) when confirming with `pm_card_chargeDeclined`: the error
/// carries the failed PaymentIntent and the payment method.
fn card_declined(decline_code: Option<&str>, code: &str, message: &str) -> Value {
    let mut error = json!({
        "charge": "ch_3QstandinDeclined",
        "code": code,
        "doc_url": format!("https://stripe.com/docs/error-codes/{}", code.replace('_', "-")),
        "message": message,
        "payment_method": card_payment_method(),
        "request_log_url": "https://dashboard.stripe.com/test/logs/req_standin?t=1767225600",
        "type": "card_error"
    });
    if let Some(decline_code) = decline_code {
        error["decline_code"] = json!(decline_code);
    }
    let mut intent = payment_intent("pi_3QstandinDeclined", "requires_payment_method", 2599, "eur");
    intent["latest_charge"] = json!("ch_3QstandinDeclined");
    intent["payment_method"] = Value::Null;
    intent["last_payment_error"] = error.clone();
    error["payment_intent"] = intent;
    json!({ "error": error })
}

fn stripe_error(kind: &str, code: Option<&str>, message: &str) -> Value {
    let mut error = json!({
        "message": message,
        "request_log_url": "https://dashboard.stripe.com/test/logs/req_standin?t=1767225600",
        "type": kind
    });
    if let Some(code) = code {
        error["code"] = json!(code);
        error["doc_url"] = json!(format!("https://stripe.com/docs/error-codes/{}", code.replace('_', "-")));
    }
    json!({ "error": error })
}

fn refund_object(id: &str, payment_intent: &str, amount: i64, currency: &str, status: &str) -> Value {
    json!({
        "id": id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": "txn_3QstandinRefund",
        "charge": "ch_3QstandinCharge01",
        "created": 1_767_229_200,
        "currency": currency,
        "destination_details": { "card": { "reference_status": "pending", "reference_type": "acquirer_reference_number", "type": "refund" }, "type": "card" },
        "metadata": {},
        "payment_intent": payment_intent,
        "reason": null,
        "receipt_number": null,
        "source_transfer_reversal": null,
        "status": status,
        "transfer_reversal": null
    })
}

fn charge_request(key: &str, payment_method: &str) -> ChargeRequest {
    ChargeRequest {
        idempotency_key: key.to_owned(),
        amount_minor: 2599,
        currency: "EUR".to_owned(),
        payment_method: payment_method.to_owned(),
        description: "Emporium checkout 0b6f3d2e".to_owned(),
    }
}

fn assert_stripe_post(request: &Recorded, path: &str, idempotency_key: &str) {
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", path));
    assert_eq!(request.header("authorization"), Some(format!("Bearer {SECRET_KEY}").as_str()));
    assert_eq!(request.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(request.header("idempotency-key"), Some(idempotency_key), "{request:#?}");
    assert!(request.header("stripe-version").is_some_and(|v| !v.is_empty()), "{request:#?}");
}

// ---------------------------------------------------------------------------------------------
// Charges

#[tokio::test]
async fn stripe_charge_confirms_a_payment_intent_and_succeeds_with_its_id() {
    let stand_in = StandIn::answering(200, payment_intent("pi_3QstandinOk00001", "succeeded", 2599, "eur")).await;
    let gateway = stand_in.gateway();
    assert_eq!(gateway.name(), "stripe");

    let outcome = gateway.charge(&charge_request("checkout:0b6f3d2e:charge", "pm_card_visa")).await.expect("charge");

    assert_eq!(outcome, ChargeOutcome::Succeeded { reference: "pi_3QstandinOk00001".to_owned() });
    let request = stand_in.only_request();
    assert_stripe_post(&request, "/v1/payment_intents", "checkout:0b6f3d2e:charge");
    assert_eq!(request.field("amount"), Some("2599"));
    assert_eq!(request.field("currency"), Some("eur"), "Stripe wants lower-case currencies");
    assert_eq!(request.field("payment_method"), Some("pm_card_visa"));
    assert_eq!(request.field("confirm"), Some("true"));
    assert_eq!(request.field("automatic_payment_methods[enabled]"), Some("true"), "{:?}", request.form);
    assert_eq!(request.field("automatic_payment_methods[allow_redirects]"), Some("never"), "{:?}", request.form);
    assert_eq!(request.field("error_on_requires_action"), Some("true"));
    assert_eq!(request.field("description"), Some("Emporium checkout 0b6f3d2e"));
    let names: Vec<&str> = request.form.iter().map(|(name, _)| name.as_str()).collect();
    assert!(!names.iter().any(|name| name.contains("card[") || name.contains("number")), "no card data is sent: {names:?}");
}

#[tokio::test]
async fn stripe_retried_charge_sends_the_same_idempotency_key_and_body() {
    let stand_in = StandIn::answering(200, payment_intent("pi_3QstandinOk00002", "succeeded", 2599, "eur")).await;
    let gateway = stand_in.gateway();
    let request = charge_request("checkout:7c1a:charge", "pm_card_visa");

    let first = gateway.charge(&request).await.expect("first attempt");
    let second = gateway.charge(&request).await.expect("retry");
    let other = gateway.charge(&charge_request("checkout:9d2b:charge", "pm_card_visa")).await.expect("another checkout");

    assert_eq!(first, second);
    assert_eq!(first, other, "the stand-in answers every request alike");
    let requests = stand_in.requests();
    assert_eq!(requests.len(), 3);
    assert_stripe_post(&requests[0], "/v1/payment_intents", "checkout:7c1a:charge");
    assert_stripe_post(&requests[1], "/v1/payment_intents", "checkout:7c1a:charge");
    assert_eq!(requests[0].form, requests[1].form, "a retry is the same request");
    assert_stripe_post(&requests[2], "/v1/payment_intents", "checkout:9d2b:charge");
}

#[tokio::test]
async fn stripe_card_error_is_a_decline_with_the_decline_code() {
    let stand_in = StandIn::start(|request| match request.field("payment_method") {
        Some("pm_card_chargeDeclined") => {
            Answer::json(402, card_declined(Some("generic_decline"), "card_declined", "Your card was declined."))
        }
        _ => Answer::json(402, card_declined(None, "expired_card", "Your card has expired.")),
    })
    .await;
    let gateway = stand_in.gateway();

    let declined = gateway.charge(&charge_request("checkout:d1:charge", "pm_card_chargeDeclined")).await.expect("an answer");
    assert_eq!(declined, ChargeOutcome::Declined { code: "generic_decline".to_owned(), message: "Your card was declined.".to_owned() });
    // without an issuer decline code, Stripe's error code is the reason
    let expired = gateway.charge(&charge_request("checkout:d2:charge", "pm_card_chargeDeclinedExpiredCard")).await.expect("an answer");
    assert_eq!(expired, ChargeOutcome::Declined { code: "expired_card".to_owned(), message: "Your card has expired.".to_owned() });

    let requests = stand_in.requests();
    assert_eq!(requests.len(), 2, "a decline is final: no retry inside the gateway");
    assert_stripe_post(&requests[0], "/v1/payment_intents", "checkout:d1:charge");
}

#[tokio::test]
async fn stripe_server_errors_rate_limits_and_network_faults_are_transient() {
    let stand_in = StandIn::start(|request| match request.field("payment_method") {
        Some("pm_500") => Answer::json(500, stripe_error("api_error", None, "An unknown error occurred")),
        Some("pm_502_html") => Answer::raw(502, "<html><body>502 Bad Gateway</body></html>"),
        Some("pm_429") => Answer::json(429, stripe_error("invalid_request_error", Some("rate_limit"), "Too many requests")),
        Some("pm_busy") => Answer::json(
            409,
            stripe_error(
                "invalid_request_error",
                Some("idempotency_key_in_use"),
                "There is currently another in-progress request using this Stripe API key and idempotency key.",
            ),
        ),
        _ => Answer::json(200, payment_intent("pi_3QstandinSlow001", "succeeded", 2599, "eur")).after(Duration::from_secs(5)),
    })
    .await;
    let gateway = stand_in.gateway();

    for method in ["pm_500", "pm_502_html", "pm_429", "pm_busy"] {
        let result = gateway.charge(&charge_request(&format!("checkout:{method}:charge"), method)).await;
        assert!(matches!(result, Err(GatewayError::Transient(_))), "{method}: {result:?}");
    }
    assert_eq!(stand_in.requests().len(), 4, "exactly one attempt each: retries are the workflow's");

    let impatient = StripeGateway::builder(SECRET_KEY).api_base(stand_in.base.clone()).timeout(Duration::from_millis(300)).build().unwrap();
    let timed_out = impatient.charge(&charge_request("checkout:slow:charge", "pm_card_visa")).await;
    assert!(matches!(timed_out, Err(GatewayError::Transient(_))), "{timed_out:?}");

    // nothing listens on the stand-in's port once it is gone
    let base = stand_in.base.clone();
    drop(stand_in);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let unreachable = StripeGateway::with_api_base(SECRET_KEY, &base).unwrap();
    let refused = unreachable.charge(&charge_request("checkout:down:charge", "pm_card_visa")).await;
    assert!(matches!(refused, Err(GatewayError::Transient(_))), "{refused:?}");
}

#[tokio::test]
async fn stripe_invalid_requests_and_idempotency_conflicts_are_rejected() {
    let stand_in = StandIn::start(|request| match request.field("payment_method") {
        Some("pm_unknown") => {
            Answer::json(400, stripe_error("invalid_request_error", Some("resource_missing"), "No such PaymentMethod: 'pm_unknown'"))
        }
        _ => Answer::json(
            409,
            stripe_error(
                "idempotency_error",
                None,
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
            ),
        ),
    })
    .await;
    let gateway = stand_in.gateway();

    let invalid = gateway.charge(&charge_request("checkout:r1:charge", "pm_unknown")).await;
    assert!(matches!(&invalid, Err(GatewayError::Rejected(reason)) if reason.contains("400")), "{invalid:?}");
    let conflict = gateway.charge(&charge_request("checkout:r2:charge", "pm_card_visa")).await;
    assert!(matches!(&conflict, Err(GatewayError::Rejected(reason)) if reason.contains("409")), "{conflict:?}");

    // an empty key is refused before anything is sent: never a request without one
    let keyless = gateway.charge(&charge_request("", "pm_card_visa")).await;
    assert!(matches!(keyless, Err(GatewayError::Rejected(_))), "{keyless:?}");
    assert_eq!(stand_in.requests().len(), 2);
}

#[tokio::test]
async fn stripe_processing_payment_is_looked_up_again() {
    let stand_in = StandIn::start(|request| match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/v1/payment_intents") => Answer::json(200, payment_intent("pi_3QstandinProc001", "processing", 2599, "eur")),
        ("GET", "/v1/payment_intents/pi_3QstandinProc001") => {
            Answer::json(200, payment_intent("pi_3QstandinProc001", "succeeded", 2599, "eur"))
        }
        _ => Answer::json(404, stripe_error("invalid_request_error", Some("resource_missing"), "Unrecognized request URL")),
    })
    .await;

    let outcome = stand_in.gateway().charge(&charge_request("checkout:p1:charge", "pm_card_visa")).await.expect("charge");

    assert_eq!(outcome, ChargeOutcome::Succeeded { reference: "pi_3QstandinProc001".to_owned() });
    let requests = stand_in.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(requests[1].header("authorization"), Some(format!("Bearer {SECRET_KEY}").as_str()));
}

// ---------------------------------------------------------------------------------------------
// Refunds

#[tokio::test]
async fn stripe_refund_refunds_the_payment_intent_and_returns_the_refund_id() {
    let stand_in = StandIn::answering(200, refund_object("re_3QstandinRefund1", "pi_3QstandinOk00001", 2599, "eur", "succeeded")).await;
    let request = RefundRequest {
        idempotency_key: "checkout:0b6f3d2e:refund:cancelled".to_owned(),
        charge_reference: "pi_3QstandinOk00001".to_owned(),
        amount_minor: 2599,
        currency: "EUR".to_owned(),
    };

    let refund = stand_in.gateway().refund(&request).await.expect("refund");

    assert_eq!(refund, "re_3QstandinRefund1");
    let recorded = stand_in.only_request();
    assert_stripe_post(&recorded, "/v1/refunds", "checkout:0b6f3d2e:refund:cancelled");
    assert_eq!(recorded.field("payment_intent"), Some("pi_3QstandinOk00001"));
    assert_eq!(recorded.field("amount"), Some("2599"));
    assert_eq!(recorded.field("charge"), None);
}

#[tokio::test]
async fn stripe_failed_refund_and_refund_server_error_are_errors() {
    let stand_in = StandIn::start(|request| match request.field("payment_intent") {
        Some("pi_failing") => {
            let mut refund = refund_object("re_3QstandinFailed1", "pi_failing", 500, "eur", "failed");
            refund["failure_reason"] = json!("expired_or_canceled_card");
            Answer::json(200, refund)
        }
        _ => Answer::json(503, stripe_error("api_error", None, "Service unavailable")),
    })
    .await;
    let gateway = stand_in.gateway();
    let refund = |reference: &str| RefundRequest {
        idempotency_key: format!("refund:{reference}"),
        charge_reference: reference.to_owned(),
        amount_minor: 500,
        currency: "eur".to_owned(),
    };

    let failed = gateway.refund(&refund("pi_failing")).await;
    assert!(matches!(&failed, Err(GatewayError::Rejected(reason)) if reason.contains("expired_or_canceled_card")), "{failed:?}");
    let unavailable = gateway.refund(&refund("pi_other")).await;
    assert!(matches!(unavailable, Err(GatewayError::Transient(_))), "{unavailable:?}");
}

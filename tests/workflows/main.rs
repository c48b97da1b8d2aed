//! Workflow tests against the Temporal dev server with an in-process worker, and replay tests
//! over the histories committed under `tests/histories/`; and the Stripe gateway against a
//! local stand-in (`stripe`, no services needed).

mod checkout;
mod flash;
mod orders;
mod probe;
mod stripe;
mod sweeper;

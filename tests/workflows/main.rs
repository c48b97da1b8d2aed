//! Workflow tests against the Temporal dev server with an in-process worker, and replay tests
//! over the histories committed under `tests/histories/`.

mod checkout;
mod probe;
mod sweeper;

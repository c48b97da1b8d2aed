//! End-to-end tests of the HTTP API against real Postgres, Redis and Temporal.

mod auth;
mod cart;
mod catalog;
mod opensearch;
mod ops;
mod search;
mod validation;

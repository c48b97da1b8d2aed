//! Checkout: one `CheckoutWorkflow` per checkout, id `checkout:<checkoutId>`.

pub mod contract;
mod saga;
mod workflow;

pub use workflow::CheckoutWorkflow;

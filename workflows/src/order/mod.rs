//! Orders: one `OrderWorkflow` per order, id `order:<orderId>`, started by the checkout that
//! created the order.

pub mod contract;
mod workflow;

pub use workflow::OrderWorkflow;

//! The reservation sweeper: a scheduled workflow that returns stock held by reservations whose
//! owner stopped waiting (a lost workflow, a crashed claim). Checkouts release their own stock
//! on time; this is the backstop.

pub mod contract;
mod workflow;

pub use workflow::ReservationSweeperWorkflow;

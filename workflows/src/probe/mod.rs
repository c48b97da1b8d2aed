//! The worker probe: a one-activity workflow an operator (or a test) runs to prove that a worker
//! polls the task queue and that its activities reach Postgres.

pub mod contract;
mod workflow;

pub use workflow::WorkerProbeWorkflow;

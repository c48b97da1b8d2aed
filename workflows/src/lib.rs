//! Deterministic workflow code and the contracts between workflows, activities and the API:
//! task queues, workflow ids, message names, inputs and outputs. This crate depends on no other
//! crate of ours, so a workflow cannot reach the database or the network by accident.

pub mod checkout;
pub mod flash;
pub mod order;
pub mod probe;
pub mod steps;
pub mod sweeper;

/// Declares the contract of an activity that another crate implements: a marker type whose
/// `ActivityDefinition::name` is the activity type name the worker registers
/// (`"Struct::method"`, as `#[activities]` names them).
#[macro_export]
macro_rules! activity_contract {
    ($(#[$meta:meta])* $vis:vis $marker:ident = $name:literal, $input:ty => $output:ty) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default)]
        $vis struct $marker;

        impl ::temporalio_common::ActivityDefinition for $marker {
            type Input = $input;
            type Output = $output;

            fn name(&self) -> &str {
                $name
            }
        }
    };
}

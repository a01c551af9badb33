//! The scheduler's tests: properties over generated workloads, multi-cycle simulations
//! (starvation, weights, guarantees) and readable examples of the explanations.

mod common;
mod examples;
mod properties;
mod simulations;

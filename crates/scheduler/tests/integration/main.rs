//! The scheduler's tests: properties over generated workloads, multi-cycle simulations
//! (starvation, weights, guarantees), readable examples of the explanations, and the
//! placement rules (selectors, CPU-only roles off GPU nodes, GPU packing).

mod common;
mod examples;
mod placement;
mod properties;
mod simulations;

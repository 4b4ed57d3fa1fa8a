//! privy: private files for Linux containers, from sandboxed WebAssembly
//! sources, on a tmpfs that only the container sees.
//!
//! The hook runs one pipeline, one module per stage ([`pipeline`]):
//! request → plan → fetch → check → materialize → audit.
//! [`plugin`] is the sandboxed Wasm host the fetch stage uses; [`oci`] holds
//! the runtime-spec types and hook installation; [`hook`] wires the stages
//! together for the OCI `createRuntime` and `poststop` hooks; [`engines`]
//! is everything privy knows about container engines and runtimes.

pub mod build;
pub mod cli;
pub mod config;
pub mod contract;
pub mod daemon;
pub mod engines;
pub mod hook;
pub mod logging;
pub mod oci;
pub mod pipeline;
pub mod plugin;
pub mod run;
pub mod scan;
pub mod secret;
pub mod shim;
pub mod shown;
pub mod sys;

// The stages' old top-level paths, which tests and benches use.
pub use pipeline::{audit, check, fetch, gather, materialize, plan, request};

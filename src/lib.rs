//! privy: private files for Linux containers, from sandboxed WebAssembly
//! sources, on a tmpfs that only the container sees.
//!
//! The hook runs one pipeline, one module per stage:
//! [`request`] → [`plan`] → [`fetch`] → [`check`] → [`materialize`] → [`audit`].
//! [`plugin`] is the sandboxed Wasm host the fetch stage uses; [`oci`] holds
//! the runtime-spec types and hook installation; [`hook`] wires the stages
//! together for the OCI `createRuntime` and `poststop` hooks. [`pod`] reads
//! a Kubernetes pod's identity from the CRI runtime's annotations, for
//! `when` conditions ([`glob`] patterns) and the sandbox rule.

pub mod audit;
pub mod build;
pub mod check;
pub mod cli;
pub mod config;
pub mod contract;
pub mod daemon;
pub mod engines;
pub mod fetch;
pub mod hook;
pub mod materialize;
pub mod oci;
pub mod plan;
pub mod plugin;
pub mod request;
pub mod run;
pub mod scan;
pub mod secret;
pub mod shim;
pub mod shown;
pub mod sys;

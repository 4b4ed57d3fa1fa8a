//! privy: private files for Linux containers, from sandboxed WebAssembly
//! sources, on a tmpfs that only the container sees.
//!
//! The hook runs one pipeline, one module per stage ([`pipeline`]):
//! request → plan → fetch → check → materialize → audit. Everything that
//! needs no WebAssembly engine, async runtime, TLS or HTTP server is the
//! `privy-core` crate, re-exported here under the same paths (its layer
//! map is in its crate docs); this crate adds the layers above it:
//!
//! - [`plugin`]: the sandboxed Wasm host the fetch stage uses;
//! - [`pipeline`]: core's stages plus fetch and `gather` (plan → fetch →
//!   check, once);
//! - [`scan`]: the leak scanner, a leaf library;
//! - [`daemon`]: `privy daemon`'s server (core has its protocol and client);
//! - [`upload`]: `privy run` and `privy upload`; [`build`]: `privy build`;
//! - [`cli`]: flags and dispatch.

pub use privy_core::{config, contract, engines, hook, logging, oci, secret, shim, shown, sys};

pub mod build;
pub mod cli;
pub mod daemon;
pub mod pipeline;
pub mod plugin;
pub mod scan;
pub mod upload;

// Old paths, which tests and benches use: the stages at the top level, and
// `privy::run` (now `upload`).
pub use pipeline::{audit, check, fetch, gather, materialize, plan, request};
pub use upload as run;

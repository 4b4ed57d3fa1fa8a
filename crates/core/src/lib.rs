//! privy's core: every layer that needs no WebAssembly engine, async
//! runtime, TLS or HTTP server. The root package `privy` (the plugin host,
//! fetching and gathering, the daemon's server, the scanner, the CLI)
//! builds on it and re-exports it, so `privy::config` and `privy_core::config`
//! are one module; a thin hook binary links this crate alone.
//!
//! Folders are layers. A module names only its own layer and those below
//! it (`scripts/check-layers` fails CI otherwise), so there is no import
//! cycle, bottom-up:
//!
//! | layer | modules | what |
//! |---|---|---|
//! | 0 | [`contract`], [`shown`], [`sys`] | every outside-facing name; escaping untrusted text; syscalls, process hardening, private files and dirs |
//! | 1 | [`secret`] | `Secret` (redacted, zeroized) and `RelPath` (validated) |
//! | 2 | [`oci`], [`engines`] | OCI state, `config.json` and hook installation; what privy knows about engines and runtimes |
//! | 3 | [`config`] | the TOML schema, the validated model, the grant grammar, the built-in catalog |
//! | 4 | [`logging`] | the one writer of log lines and audit events |
//! | 5-7 | [`pipeline`] | request; plan, check; materialize, audit |
//! | 8 | [`daemon`] | the daemon's protocol and blocking client |
//! | 9 | [`hook`], [`shim`] | createRuntime and poststop over a `Gatherer`; the runtime wrapper |

pub mod contract;
pub mod shown;
pub mod sys;

pub mod secret;

pub mod engines;
pub mod oci;

pub mod config;

pub mod logging;

pub mod pipeline;

pub mod daemon;

pub mod hook;
pub mod shim;

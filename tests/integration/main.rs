//! privy's integration tests: one binary, a module per area.
//!
//! - `sandbox`: hostile guest components against the real plugin host.
//! - `hostdir`: the shipped `host-dir` source against real directories.
//! - `cli`: the `privy` binary's errors and install safety.
//! - `e2e`: root-only, real runc and crun with a busybox rootfs. Each test
//!   says when it skips and why; with `PRIVY_E2E_REQUIRED=1` (CI) a skip is
//!   a failure.

mod cli;
mod e2e;
mod hostdir;
mod sandbox;
mod util;

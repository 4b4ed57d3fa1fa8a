//! The pipeline one container start goes through, one module per stage:
//!
//! ```text
//! OCI state (stdin) + bundle config.json
//!   -> request      Request: id, pid, root, stage, annotations, image, names, user, id mappings
//!   -> plan         the sources whose `when` matches, with grant, limits, precedence
//!   -> fetch        each plugin run in its own sandbox, all concurrently
//!   -> check        paths, sizes, counts, modes, narrowing by io.privy.names, precedence
//!   -> materialize  the tmpfs in the container, sealed read-only, attached
//!   -> audit        one event: container, names, sizes, keyed fingerprints; never a value
//! ```
//!
//! A stage may use the types of an earlier one, never a later one's. The
//! stages that need no plugin host live in `privy-core` and are re-exported
//! here; fetch and gather, which run the plugins, are this crate's.
//! `plan -> fetch -> check` is written once, in [`gather`]: everything that
//! needs "what would this request get" calls it.

pub use privy_core::pipeline::{audit, check, materialize, plan, refresh, request};

pub mod fetch;
pub mod gather;
pub mod rotate;

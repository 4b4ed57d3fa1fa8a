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
//! A stage may use the types of an earlier one, never a later one's.
//! `plan -> fetch -> check` is written once, in [`gather`]: everything that
//! needs "what would this request get" calls it.

pub mod audit;
pub mod check;
pub mod fetch;
pub mod gather;
pub mod materialize;
pub mod plan;
pub mod request;

//! The pipeline stages that need no plugin host: request (stage 1), plan
//! (2), check (4), materialize (5) and audit (6). Fetch (3), which runs the
//! plugins, and `gather` (plan -> fetch -> check, once) are the root
//! package's `privy::pipeline`, which re-exports these.

pub mod audit;
pub mod check;
pub mod materialize;
pub mod plan;
pub mod refresh;
pub mod request;

//! `privy daemon` as everything else sees it: its protocol ([`proto`]) and
//! the blocking client ([`client`]) that `privy run`, `privy upload`,
//! `privy build`, the `upload` plugin's ticket claims and a thin hook use.
//! The server itself is the root package's `privy::daemon`.

pub mod client;
pub mod proto;

//! The daemon's API as both ends see it: the JSON bodies and answers the
//! server and [`super::client`] agree on, and how file contents travel
//! (standard base64). Routes:
//!
//! | method and path                   | body          | answer                  |
//! |-----------------------------------|---------------|-------------------------|
//! | `GET /v1/health`                  |               | `{"ok":true,"tickets":N,"version":V}` |
//! | `POST /v1/tickets`                | files, scope, ttl | 201 [`Created`]     |
//! | `GET /v1/tickets/{ticket}`        |               | [`TicketInfo`]          |
//! | `DELETE /v1/tickets/{ticket}`     |               | 204                     |
//! | `POST /v1/tickets/{ticket}/claim` | [`ClaimBody`] | the files               |
//! | `POST /v1/hook`                   | [`HookBody`]  | the checked files, overrides and drops, or `{"error"}` |

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Base64 as the API carries file contents.
pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The answer to an upload.
#[derive(Serialize, Deserialize, Debug)]
pub struct Created {
    pub ticket: String,
    #[serde(flatten)]
    pub info: TicketInfo,
}

/// `POST /v1/tickets/{ticket}/claim`.
#[derive(Serialize, Deserialize, Debug)]
pub struct ClaimBody {
    pub container_id: String,
    /// The container's bundle. The daemon reads its `config.json` (with
    /// the claimant's rights) for what says how long the container exists
    /// in its engine (`engines::lifetime`); the ticket lives that long.
    pub bundle: PathBuf,
    /// The host uid whose container claims (the node agent claims for a
    /// user's container): the claim is that uid's in every way, its
    /// tickets only and its bundle read with its rights. Absent: the
    /// caller's own. Only root may name another uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_uid: Option<u32>,
}

/// What a ticket is for: a run's container, or every RUN step of one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Dropped when the last container that claimed it is removed.
    Run,
    /// Many short RUN containers claim it in turn; it lives until deleted or
    /// until it has gone unclaimed for the TTL.
    Build,
}

/// What the owner may learn about a ticket: names and sizes, never bytes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TicketInfo {
    pub owner: u32,
    pub scope: Scope,
    pub files: Vec<FileInfo>,
    pub bytes: u64,
    /// Seconds until an unclaimed ticket expires (claimed run tickets live
    /// on while their container exists).
    pub expires_in_secs: u64,
    pub containers: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FileInfo {
    pub path: String,
    pub size: u64,
    pub mode: u32,
}

/// `POST /v1/hook`: a thin hook asks the node agent for a container's
/// checked files. The agent plans, fetches and checks with its warm
/// plugins; the hook materializes and audits.
#[derive(Serialize, Deserialize, Debug)]
pub struct HookBody {
    /// The OCI state as the runtime gave it to the hook (JSON text).
    pub state: String,
    /// The hook's own `PRIVY_HOOK_ANNOTATIONS` (the hooks.d entry `privy
    /// build` writes sets it), which the agent cannot see in its own
    /// environment.
    #[serde(default)]
    pub hook_annotations: Option<String>,
    /// The config file the hook planned with (absolute). An agent that
    /// serves another one answers [`HOOK_NOT_SERVED`]: a hook never gets
    /// files planned by a config it was not given.
    #[serde(default)]
    pub config: Option<std::path::PathBuf>,
    /// For `privy refresh` of a running container, not a start: every
    /// source counts as required, so a source that fails leaves the
    /// container's files as they are instead of being skipped (which
    /// would take its files away).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh: bool,
}

/// The agent's status for "ask in process instead": it does not serve this
/// request (the hook planned with another config file). The thin hook
/// then runs the pipeline itself, with its own rights.
pub const HOOK_NOT_SERVED: u16 = 421;

/// The agent's status for a request whose sources failed or whose files
/// were refused: its one line is the hook's error, and the container must
/// not start (L6).
pub const HOOK_FAILED: u16 = 422;

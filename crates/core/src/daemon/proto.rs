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

//! The `upload` source: the files a user sent with `privy run --private` or
//! `privy build --private`, held by `privy daemon` under a ticket that the
//! container carries as the annotation `io.privy.ticket`.
//!
//! The plugin never sees the daemon's socket: it asks the host, which
//! claims the ticket for this container only if the source's grant has
//! `daemon = true`. A container with a ticket that cannot be claimed
//! (unknown, expired, another user's, daemon not running) does not start.

use privy_plugin::{PrivateFile, Request, Source, SourceError};

const ANNOTATION: &str = "io.privy.ticket";

struct Upload;

impl Source for Upload {
    fn fetch(req: Request) -> Result<Vec<PrivateFile>, SourceError> {
        let Some(ticket) = req.annotation(ANNOTATION) else {
            return Ok(Vec::new());
        };
        let ticket = ticket.trim();
        if ticket.is_empty() {
            return Err(SourceError::InvalidConfig(format!(
                "annotation {ANNOTATION} is empty"
            )));
        }
        let files = privy_plugin::claim_ticket(ticket)?;
        privy_plugin::info(&format!("claimed {} uploaded file(s)", files.len()));
        Ok(files)
    }
}

privy_plugin::export_source!(Upload);

//! The `privy:source/tickets` import: a source granted `daemon = true`
//! claims a ticket's uploads from `privy daemon` for the container being
//! started. The plugin never sees the daemon's socket; the host claims for
//! this container only, within what is left of the call's wall clock.

use super::bindings::privy::source::tickets as wit_tickets;
use super::bindings::privy::source::types as wit_types;
use super::imports::HostState;
use std::time::Duration;

impl wit_tickets::Host for HostState {
    fn claim(
        &mut self,
        ticket: String,
    ) -> Result<Vec<wit_types::PrivateFile>, wit_types::SourceError> {
        use crate::daemon::client::{Client, ClientError};
        use wit_types::SourceError as E;
        let Some(link) = &self.daemon else {
            return Err(E::Denied(
                "this source's grant does not include `daemon = true`".into(),
            ));
        };
        // The wall clock holds for host calls too, and the daemon gets half
        // of what is left of it: the claim blocks this thread, and with it
        // every source fetched alongside; a daemon that does not answer
        // must be named as such (`did not answer within N s`) while the
        // other sources still have time to finish, rather than surface as
        // another source's wall-clock timeout.
        let client = Client::new(
            &link.socket,
            (self.remaining() / 2).max(Duration::from_millis(1)),
        );
        match client.claim_for(&ticket, &link.container_id, &link.bundle, link.claimant) {
            Ok(files) => Ok(files
                .into_iter()
                .map(|f| wit_types::PrivateFile {
                    path: f.path,
                    // Moved into the guest's memory; the host copy zeroizes on drop.
                    data: f.data.expose().to_vec(),
                    mode: Some(f.mode),
                })
                .collect()),
            Err(e @ ClientError::NotRunning(_)) => Err(E::Unavailable(e.to_string())),
            Err(ClientError::Api { status, message }) => Err(match status {
                403 => E::Denied(message),
                404 | 410 => E::NotFound(message),
                400 => E::Denied(message),
                _ => E::Other(message),
            }),
            Err(e) => Err(E::Unavailable(e.to_string())),
        }
    }
}

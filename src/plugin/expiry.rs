//! The `privy:source/expiry` import: a source says when the data it
//! returns stops being valid (a Vault lease, a certificate's `notAfter`).
//! The host keeps the earliest of the call's statements, clamped by
//! [`clamp_expiry`] (past: now; beyond a year: ignored, said once in the
//! log), and hands it on with the call's files; nothing else depends on it.
//! A component that never calls these functions does not import the
//! interface and loads as before.

use super::bindings::privy::source::expiry as wit_expiry;
use super::imports::HostState;
use crate::pipeline::check::{clamp_expiry, earliest};

use crate::sys::unix_now as now;

impl HostState {
    /// Take the source's word that its data expires at unix second `at`.
    fn expire_at(&mut self, at: u64) {
        match clamp_expiry(now(), at) {
            Some(at) => self.expires = earliest(self.expires, Some(at)),
            None if !self.expiry_ignored => {
                // Said once a call: a loop cannot flood the log.
                self.expiry_ignored = true;
                tracing::warn!(
                    source = %self.source(),
                    expires = at,
                    "plugin: an expiry more than a year ahead is ignored"
                );
            }
            None => {}
        }
    }
}

impl wit_expiry::Host for HostState {
    fn expires_at(&mut self, unix_seconds: u64) {
        self.expire_at(unix_seconds);
    }

    fn expires_in(&mut self, seconds: u64) {
        self.expire_at(now().saturating_add(seconds));
    }
}

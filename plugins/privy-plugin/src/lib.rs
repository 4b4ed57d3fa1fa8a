//! The SDK for privy source plugins.
//!
//! A source implements [`Source`] and names its type with [`export_source!`]:
//!
//! ```ignore
//! struct Mine;
//! impl privy_plugin::Source for Mine {
//!     fn fetch(req: privy_plugin::Request) -> Result<Vec<privy_plugin::PrivateFile>, privy_plugin::SourceError> {
//!         privy_plugin::info("fetching");
//!         Ok(vec![])
//!     }
//! }
//! privy_plugin::export_source!(Mine);
//! ```
//!
//! Everything here wraps the bindings generated from `wit/privy-source.wit`,
//! which stay reachable as [`bindings`] for anything the helpers do not cover.

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "source-plugin",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_source_plugin",
        default_bindings_module: "privy_plugin::bindings",
    });
}

pub use bindings::exports::privy::source::source::Guest as Source;
pub use bindings::privy::source::host::Level;
pub use bindings::privy::source::types::{
    Annotation, PrivateFile, Request, SourceError, Stage, User,
};

/// Export `$ty` (which implements [`Source`]) as this component's source.
#[macro_export]
macro_rules! export_source {
    ($ty:ident) => {
        $crate::bindings::__export_source_plugin!($ty with_types_in $crate::bindings);
    };
}

/// Log one line at `info` through privy's log. Never log file contents.
pub fn info(msg: &str) {
    bindings::privy::source::host::log(Level::Info, msg);
}

/// Log one line at `warn`.
pub fn warn(msg: &str) {
    bindings::privy::source::host::log(Level::Warn, msg);
}

/// Log one line at `debug`.
pub fn debug(msg: &str) {
    bindings::privy::source::host::log(Level::Debug, msg);
}

/// One value of this source's `config` table.
pub fn config(key: &str) -> Option<String> {
    bindings::privy::source::host::config(key)
}

/// Every key of this source's `config` table.
pub fn config_keys() -> Vec<String> {
    bindings::privy::source::host::config_keys()
}

/// Unix permission bits of a granted file, which WASI does not expose.
pub fn file_mode(path: &str) -> Result<u32, String> {
    bindings::privy::source::host::file_mode(path)
}

impl Request {
    /// The value of annotation `key`, if the container has it.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations
            .iter()
            .find(|a| a.key == key)
            .map(|a| a.value.as_str())
    }
}

/// Contents of a file named in the source's `grant.files`.
pub fn read_file(path: &str) -> Result<Vec<u8>, String> {
    bindings::privy::source::host::read_file(path)
}

/// The files uploaded under `ticket`, claimed from `privy daemon` for this
/// request's container. Needs `daemon = true` in the source's grant.
pub fn claim_ticket(ticket: &str) -> Result<Vec<PrivateFile>, SourceError> {
    bindings::privy::source::tickets::claim(ticket)
}

/// Tell the host that the files this `fetch` returns expire at
/// `unix_seconds` (seconds since 1970-01-01T00:00:00Z), such as a
/// certificate's `notAfter`, so the container is refreshed before then.
///
/// Call it during `fetch`, as often as you like: the host keeps the
/// earliest. It takes the value as a hint, never as a reason to keep or
/// drop files: a time already past counts as now, one more than a year
/// ahead is ignored. The time is not secret and may be logged. A source
/// that never calls this (nor [`expires_in`]) does not import
/// `privy:source/expiry` and runs on hosts that predate it.
pub fn expires_at(unix_seconds: u64) {
    bindings::privy::source::expiry::expires_at(unix_seconds)
}

/// Tell the host that the files this `fetch` returns expire `seconds` from
/// now, such as a Vault lease's `lease_duration`. Needs no clock in the
/// plugin; otherwise as [`expires_at`].
pub fn expires_in(seconds: u64) {
    bindings::privy::source::expiry::expires_in(seconds)
}

pub use bindings::privy::source::http::{Header, HttpError, HttpRequest, HttpResponse};

/// Send one HTTP request through the host, which allows only the
/// `host:port` pairs in the source's `grant.hosts`, resolves names itself,
/// never follows redirects, and bounds the time and response size. A
/// source that never calls this does not import `privy:source/http`.
pub fn http_send(req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    bindings::privy::source::http::send(req)
}

impl HttpError {
    /// The message, whatever the kind.
    pub fn message(&self) -> &str {
        match self {
            HttpError::InvalidRequest(m)
            | HttpError::Denied(m)
            | HttpError::Unavailable(m)
            | HttpError::BadResponse(m) => m,
        }
    }
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
}

//! Test fixture: a plugin as built before the contract grew the `expiry`
//! interface (issue 15). It is generated from `wit/privy-source.wit` in
//! this crate, a frozen copy of `privy:source@0.1.0` as released then, not
//! from the repository's current WIT; do not update it. A host whose
//! contract changed an interface this plugin imports (`host`), or
//! required one it does not know, fails to load it: the compatibility
//! policy in the WIT's header, tested.
//!
//! It returns one file, `old/hello`, holding its `greeting` config value
//! (default `hello`), and logs one line.

wit_bindgen::generate!({
    world: "source-plugin",
    path: "wit",
});

use exports::privy::source::source::Guest;
use privy::source::host::{config, log, Level};
use privy::source::types::{PrivateFile, Request, SourceError};

struct Old;

impl Guest for Old {
    fn fetch(_req: Request) -> Result<Vec<PrivateFile>, SourceError> {
        log(Level::Info, "old source: fetching");
        Ok(vec![PrivateFile {
            path: "old/hello".into(),
            data: config("greeting")
                .unwrap_or_else(|| "hello".into())
                .into_bytes(),
            mode: Some(0o440),
        }])
    }
}

export!(Old);

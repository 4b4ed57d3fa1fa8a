//! Test fixture: the right world and exports, but a static constructor
//! traps, and `_initialize` runs constructors while the component is being
//! instantiated, before any export is called.

use privy_plugin::{PrivateFile, Request, Source, SourceError};

extern "C" fn trap_at_init() {
    core::arch::wasm32::unreachable()
}

#[used]
#[link_section = ".init_array"]
static TRAP_AT_INIT: extern "C" fn() = trap_at_init;

struct TrapInit;

impl Source for TrapInit {
    fn fetch(_req: Request) -> Result<Vec<PrivateFile>, SourceError> {
        Ok(vec![PrivateFile {
            path: "never".into(),
            data: b"x".to_vec(),
            mode: None,
        }])
    }
}

privy_plugin::export_source!(TrapInit);

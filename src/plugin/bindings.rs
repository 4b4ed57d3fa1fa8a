//! The WIT contract (`wit/privy-source.wit`) as Rust: wasmtime's
//! `bindgen!` output, private to the plugin host, and the conversion of
//! privy's request into the WIT record. The rest of privy sees only the
//! small typed API of [`super`].

use super::PluginRequest;
use crate::contract::Stage;

wasmtime::component::bindgen!({
    world: "source-plugin",
    path: "wit",
    exports: { default: async },
    imports: { "privy:source/http.send": async },
});

use self::privy::source::types as wit;

/// The request as the WIT record a plugin's `fetch` takes.
pub(super) fn to_wit(r: &PluginRequest) -> wit::Request {
    wit::Request {
        container_id: r.container_id.clone(),
        stage: match r.stage {
            Stage::Run => wit::Stage::Run,
            Stage::Build => wit::Stage::Build,
        },
        annotations: r
            .annotations
            .iter()
            .map(|(k, v)| wit::Annotation {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        image: r.image.clone(),
        names: r.names.clone(),
        user: wit::User {
            uid: r.uid,
            gid: r.gid,
            additional_gids: r.additional_gids.clone(),
        },
    }
}

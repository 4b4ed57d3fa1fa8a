//! Every name privy shows to containers, engines, runtimes and operators, in
//! one place: annotation keys, environment variables, default paths, the
//! hooks.d and systemd file names, the hook subcommands installed hooks
//! call, the ticket prefix, and the audit log's target and event names.
//!
//! Renaming any of these breaks installed hooks, running containers or
//! someone's script, so nothing else in privy spells them out. Not here, on
//! purpose: a built-in plugin's own annotations (`io.privy.vault`, declared
//! in its `plugins/<name>/builtin.toml`), the annotation keys engines set
//! (`engines::cri`), host paths that are config defaults (`config::file`),
//! the WIT package (the `.wit` file is that contract) and the daemon's API
//! paths (`daemon::proto`).

/// The annotation that carries a per-run upload's ticket.
pub const ANNOTATION_TICKET: &str = "io.privy.ticket";
/// The annotation that marks a build step explicitly (value `build`).
pub const ANNOTATION_STAGE: &str = "io.privy.stage";
/// The annotation listing the names a container asks for (comma-separated).
pub const ANNOTATION_NAMES: &str = "io.privy.names";
/// privy's own image annotation, read after the engines' own keys.
pub const ANNOTATION_IMAGE: &str = "io.privy.image";

/// The environment variable a container (or a script) gets the ticket in,
/// where the engine has no annotations (`buildah run`, `privy run -- sh`).
pub const ENV_TICKET: &str = "PRIVY_TICKET";
/// The environment variable through which a hooks.d entry adds annotations
/// to every request it serves (a JSON object of strings); `privy build`
/// sets it in its per-build hooks directory.
pub const ENV_HOOK_ANNOTATIONS: &str = "PRIVY_HOOK_ANNOTATIONS";
/// Overrides `daemon.socket` for every client and the daemon.
pub const ENV_SOCKET: &str = "PRIVY_SOCKET";
/// The config file, instead of [`DEFAULT_CONFIG_PATH`] (`--config`).
pub const ENV_CONFIG: &str = "PRIVY_CONFIG";
/// The log filter (`info`, `privy=debug`, ...).
pub const ENV_LOG: &str = "PRIVY_LOG";
/// The real runtime `privy shim` (and `privy-shim`) execs.
pub const ENV_RUNTIME_PATH: &str = "PRIVY_RUNTIME_PATH";

/// Called by this name (a link), the binary is `privy shim -- ARGS`:
/// containerd's `--runc-binary` takes no arguments.
pub const SHIM_ARGV0: &str = "privy-shim";

/// Where privy looks for its config unless `--config` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/privy/privy.toml";
/// The daemon's socket unless the config names another.
pub const DEFAULT_SOCKET: &str = "/run/privy/privy.sock";
/// Where the tmpfs is mounted in the container unless the config says.
pub const DEFAULT_TARGET: &str = "/run/private";

/// The hook subcommand a runtime runs at `createRuntime` (`privy hook
/// create-runtime`), and at `poststop`.
pub const HOOK_CREATE_RUNTIME: &str = "create-runtime";
pub const HOOK_POSTSTOP: &str = "poststop";
/// The thin hook's file name, installed next to `privy`.
pub const THIN_HOOK_BINARY: &str = "privy-hook";
/// The hooks.d entries privy writes (podman, buildah, CRI-O).
pub const HOOKS_D_FILES: [&str; 2] = ["privy-create-runtime.json", "privy-poststop.json"];
/// The systemd units privy writes for its daemon.
pub const SYSTEMD_UNITS: [&str; 2] = ["privy.socket", "privy.service"];

/// Prefix of every ticket, so a stray one is recognisable in a script.
pub const TICKET_PREFIX: &str = "pvt_";

/// The log target of audit events, and the messages of its events.
pub const AUDIT_TARGET: &str = "privy::audit";
pub const EVENT_INJECTED: &str = "injected";
pub const EVENT_OVERRIDE: &str = "override";
/// The audit event of a rotation: what changed in a running container.
pub const EVENT_REFRESHED: &str = "refreshed";
/// The audit event of a refresh that failed: the container, the source
/// (when one failed) and the cause; its files were left as they were.
pub const EVENT_REFRESH_FAILED: &str = "refresh-failed";

/// Whether a container is started to run (`run`) or as an image build's
/// RUN step (`build`): what `when.stage`, `--stage` and the WIT request
/// carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Run,
    Build,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Run => "run",
            Stage::Build => "build",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Stage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "run" => Ok(Stage::Run),
            "build" => Ok(Stage::Build),
            _ => Err(r#"must be "run" or "build""#.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upload_guest_reads_the_same_ticket_annotation() {
        let guest = include_str!("../../../plugins/upload/src/lib.rs");
        assert!(
            guest.contains(&format!("{ANNOTATION_TICKET:?}")),
            "plugins/upload reads another annotation"
        );
    }

    #[test]
    fn stage_parses_what_it_prints() {
        for s in [Stage::Run, Stage::Build] {
            assert_eq!(s.as_str().parse::<Stage>(), Ok(s));
        }
        assert!("later".parse::<Stage>().is_err());
    }

    #[test]
    fn every_annotation_and_environment_variable_is_documented() {
        let readme = include_str!("../../../README.md");
        for name in [
            ANNOTATION_TICKET,
            ANNOTATION_STAGE,
            ANNOTATION_NAMES,
            ANNOTATION_IMAGE,
            ENV_TICKET,
            ENV_HOOK_ANNOTATIONS,
            ENV_SOCKET,
            ENV_CONFIG,
            ENV_LOG,
            ENV_RUNTIME_PATH,
        ] {
            assert!(readme.contains(name), "README does not mention {name}");
        }
    }
}

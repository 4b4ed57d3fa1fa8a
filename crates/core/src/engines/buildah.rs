//! buildah, and `podman build` (buildah inside): how builds run RUN steps,
//! how privy's hooks reach them, and how a build step is recognised.
//!
//! Both engines run each RUN step through an OCI runtime with the hooks.d
//! entries of their `--hooks-dir` directories, by default
//! [`DEFAULT_HOOKS_DIRS`] (containers.conf's `hooks_dir` is *not* read by
//! builds); a later directory's entry wins over an earlier one of the same
//! file name. `--isolation chroot` (or `BUILDAH_ISOLATION=chroot`) runs RUN
//! steps without a runtime, so no hook runs. Neither puts annotations,
//! labels or env that say "build" into a RUN step's `config.json`; buildah
//! names the container after its bundle directory ([`is_run_step`]).
//! `buildah run` has no `--annotation`: a ticket goes in as `--env
//! PRIVY_TICKET=`, which the hook reads from the container's environment.

use super::{argv, Engine};
use std::path::Path;

/// Global flags (before the verb) that take a value: buildah 1.28's
/// `buildah --help` on this machine.
pub const GLOBAL_VALUE_FLAGS: &[&str] = &[
    "--cgroup-manager",
    "--log-level",
    "--registries-conf",
    "--registries-conf-dir",
    "--root",
    "--runroot",
    "--short-name-alias-conf",
    "--storage-driver",
    "--storage-opt",
    "--userns-gid-map",
    "--userns-uid-map",
];

/// The hooks.d directories buildah (and so `podman build`) reads when no
/// `--hooks-dir` is given, in override order.
pub const DEFAULT_HOOKS_DIRS: [&str; 2] = [
    "/usr/share/containers/oci/hooks.d",
    "/etc/containers/oci/hooks.d",
];

/// Whether `buildah VERB` starts a container that takes the ticket as
/// `--env` (and ends with the command).
pub(super) fn takes_ticket_env(verb: &str) -> bool {
    verb == "run"
}

/// Whether a container is a buildah RUN step (`buildah bud`, `buildah
/// run`, and `podman build`): buildah names the container it hands the
/// runtime `buildah-` + the base name of its bundle directory
/// (`/var/tmp/buildahNNN` → `buildah-buildahNNN`, buildah 1.28's
/// `run_linux.go`). No other engine derives the id from the bundle path
/// this way (podman and CRI-O use 64 hex digits).
pub fn is_run_step(id: &str, bundle: &Path) -> bool {
    let Some(base) = bundle.file_name().and_then(|b| b.to_str()) else {
        return false;
    };
    base.starts_with("buildah") && id.strip_prefix("buildah-") == Some(base)
}

/// A build command line (`podman build ...`, `buildah bud ...`), understood
/// just enough to add privy's flags after the build subcommand and to find
/// the tag.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildCommand {
    pub engine: Engine,
    /// Program and arguments as given.
    pub argv: Vec<String>,
    /// Index in `argv` of the build subcommand (`build` or `bud`).
    pub sub: usize,
}

impl BuildCommand {
    /// The build command in `argv`, or what is wrong with it (the text
    /// after "expected `-- podman build ARGS...` or `-- buildah bud
    /// ARGS...`"). The subcommand is the first argument that is `build`
    /// (or, for buildah, `bud`).
    pub fn parse(argv: &[String]) -> Result<Self, String> {
        let program = argv.first().ok_or_else(String::new)?;
        let base = Path::new(program)
            .file_name()
            .and_then(|b| b.to_str())
            .unwrap_or("");
        let engine = match Engine::of(program) {
            Some(e @ (Engine::Podman | Engine::Buildah)) => e,
            _ => return Err(format!("; {program:?} is not podman or buildah")),
        };
        let sub = argv
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, a)| *a == "build" || (engine == Engine::Buildah && *a == "bud"))
            .map(|(i, _)| i)
            .ok_or_else(|| format!("; no build subcommand in {base}'s arguments"))?;
        Ok(BuildCommand {
            engine,
            argv: argv.to_vec(),
            sub,
        })
    }

    /// The arguments after the build subcommand.
    pub fn build_args(&self) -> &[String] {
        &self.argv[self.sub + 1..]
    }

    /// Every value of an option of the build ([`argv::flag_values`]).
    pub fn flag_values(&self, long: &str, short: Option<&str>) -> Vec<String> {
        argv::flag_values(self.build_args(), long, short)
    }

    /// The image's tags as given (`-t`, `--tag`).
    pub fn tags(&self) -> Vec<String> {
        self.flag_values("--tag", Some("-t"))
    }

    /// Refuse chroot isolation: buildah then runs RUN steps without an OCI
    /// runtime, so no hook would inject anything. `Err` names the setting.
    pub fn check_isolation(&self, env_isolation: Option<&str>) -> Result<(), String> {
        let flag = self.flag_values("--isolation", None).pop();
        match (flag.as_deref(), env_isolation) {
            (Some("chroot"), _) => Err("--isolation chroot".into()),
            (None, Some("chroot")) => Err("BUILDAH_ISOLATION=chroot".into()),
            _ => Ok(()),
        }
    }

    /// The command to run: privy's `--hooks-dir` (after the user's, or the
    /// default directories that exist, so its entries win and every other
    /// hook still runs) and an `--iidfile` when the user gave none, right
    /// after the build subcommand.
    pub fn with_privy(&self, hooks_dir: &Path, iidfile: Option<&Path>) -> Vec<String> {
        let mut extra = Vec::new();
        if self.flag_values("--hooks-dir", None).is_empty() {
            for d in DEFAULT_HOOKS_DIRS {
                if Path::new(d).is_dir() {
                    extra.extend(["--hooks-dir".to_string(), d.to_string()]);
                }
            }
        }
        extra.extend(["--hooks-dir".to_string(), hooks_dir.display().to_string()]);
        if let Some(f) = iidfile {
            extra.extend(["--iidfile".to_string(), f.display().to_string()]);
        }
        let mut out = self.argv[..=self.sub].to_vec();
        out.extend(extra);
        out.extend_from_slice(self.build_args());
        out
    }

    /// The command that removes image `id` (`ENGINE rmi -f ID`).
    pub fn remove_image(&self, id: &str) -> Vec<String> {
        vec![
            self.argv[0].clone(),
            "rmi".into(),
            "-f".into(),
            id.to_owned(),
        ]
    }
}

/// The image id on the engine's last non-empty output line (podman build
/// and buildah bud both end with the full 64-hex id).
pub fn image_id_from_output(last_line: &str) -> Option<String> {
    let t = last_line.trim();
    let t = t.strip_prefix("sha256:").unwrap_or(t);
    (t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())).then(|| t.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engines::Command;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn engine_command_finds_the_subcommand_tags_and_adds_privy_flags_after_it() {
        let c = BuildCommand::parse(&argv(
            "podman --log-level warn build -t a:1 --tag=b --tag c -td --no-cache ctx",
        ))
        .unwrap();
        assert_eq!((c.engine, c.sub), (Engine::Podman, 3));
        assert_eq!(c.tags(), ["a:1", "b", "c", "d"]);
        let out = c.with_privy(Path::new("/h"), Some(Path::new("/i")));
        let pos = out.iter().position(|a| a == "/h").unwrap();
        assert_eq!(out[3], "build");
        assert!(pos > 3 && out[pos - 1] == "--hooks-dir");
        assert_eq!(out[pos + 1..pos + 3], ["--iidfile", "/i"]);
        assert_eq!(out.last().unwrap(), "ctx");

        let b =
            BuildCommand::parse(&argv("/usr/bin/buildah bud --hooks-dir /mine -f F .")).unwrap();
        assert_eq!(b.engine, Engine::Buildah);
        let out = b.with_privy(Path::new("/h"), None);
        assert_eq!(
            out,
            argv("/usr/bin/buildah bud --hooks-dir /h --hooks-dir /mine -f F .")
        );
        assert_eq!(b.tags(), Vec::<String>::new());

        for bad in ["", "docker build .", "podman run x", "podman bud ."] {
            assert!(BuildCommand::parse(&argv(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_hooks_dirs_come_before_privys_so_its_entries_win() {
        let b = BuildCommand::parse(&argv("buildah bud --hooks-dir=/mine .")).unwrap();
        let out = b.with_privy(Path::new("/h"), None);
        assert_eq!(out, argv("buildah bud --hooks-dir /h --hooks-dir=/mine ."));
    }

    #[test]
    fn chroot_isolation_is_refused() {
        let c = BuildCommand::parse(&argv("buildah bud --isolation chroot .")).unwrap();
        assert!(c
            .check_isolation(None)
            .unwrap_err()
            .to_string()
            .contains("chroot"));
        let c = BuildCommand::parse(&argv("buildah bud --isolation=oci .")).unwrap();
        assert!(c.check_isolation(Some("chroot")).is_ok());
        let c = BuildCommand::parse(&argv("buildah bud .")).unwrap();
        assert!(c.check_isolation(Some("chroot")).is_err());
        assert!(c.check_isolation(Some("oci")).is_ok());
    }

    #[test]
    fn image_id_is_the_full_hex_id_on_the_last_line() {
        let id = "796dcb3a431ae111059bf10a52fdfbc3032ea8d9df16874559e65ad2e82733c9";
        assert_eq!(image_id_from_output(&format!("{id}\n")).unwrap(), id);
        assert_eq!(image_id_from_output(&format!("sha256:{id}")).unwrap(), id);
        for bad in ["", "Successfully tagged x", &id[..12], &format!("{id}0")] {
            assert_eq!(image_id_from_output(bad), None, "{bad}");
        }
    }

    #[test]
    fn buildah_run_takes_the_ticket_as_env_and_ends_with_the_command() {
        let mut c = Command::parse(&argv("buildah --root /r run ctr cat /run/private/k"));
        assert_eq!(c.attach_ticket("T", true), Some(true));
        assert_eq!(c.argv[4..6], argv("--env PRIVY_TICKET=T")[..]);
        let mut c = Command::parse(&argv("buildah from img"));
        assert_eq!(c.attach_ticket("T", true), None);
    }
}

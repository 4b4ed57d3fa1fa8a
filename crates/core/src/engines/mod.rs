//! Everything privy knows about container engines and OCI runtimes, in one
//! place: how their command lines read (global flags that take a value, the
//! verb, `--rm` and `-d`), how a ticket reaches their containers
//! (`--annotation`, `--env`), which containers are build steps, where a
//! runtime's own log is, and which annotations CRI runtimes set.
//!
//! One file per engine: [`podman`], [`docker`], [`nerdctl`], [`buildah`]
//! (and `podman build`, which is buildah inside), [`runtime`] (runc, crun,
//! youki, runsc), [`ctr`] (containerd's CLI), [`cri`] (what containerd's and
//! CRI-O's CRI write into a container's annotations). [`argv`] is the one
//! reader of command lines they all share. Adding an engine: a file here,
//! a variant of [`Engine`], its flag table and how it takes a ticket.
//!
//! "Engine" here always means one of these; wasmtime's `Engine` appears
//! only inside `plugin/`.

pub mod argv;
pub mod buildah;
pub mod cri;
pub mod ctr;
pub mod docker;
pub mod hooked;
pub mod lifetime;
pub mod nerdctl;
pub mod podman;
pub mod runtime;

use argv::DoubleDash;
use std::path::Path;

/// A container engine or OCI runtime privy knows, recognised by the file
/// name of the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Podman,
    Docker,
    Nerdctl,
    Buildah,
    Ctr,
    Runc,
    Crun,
    Youki,
    Runsc,
}

/// How a ticket reaches a container started by an engine's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketArg {
    /// `--annotation io.privy.ticket=T` after the verb.
    Annotation,
    /// `--env PRIVY_TICKET=T` after the verb: the hook reads it from the
    /// container's environment (engines without annotations).
    Env,
}

impl Engine {
    /// The engine a program is, by its file name (`/usr/bin/podman`).
    pub fn of(program: &str) -> Option<Engine> {
        let base = Path::new(program).file_name()?.to_str()?;
        Some(match base {
            "podman" => Engine::Podman,
            "docker" => Engine::Docker,
            "nerdctl" => Engine::Nerdctl,
            "buildah" => Engine::Buildah,
            "ctr" => Engine::Ctr,
            "runc" => Engine::Runc,
            "crun" => Engine::Crun,
            "youki" => Engine::Youki,
            "runsc" => Engine::Runsc,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Docker => "docker",
            Engine::Nerdctl => "nerdctl",
            Engine::Buildah => "buildah",
            Engine::Ctr => "ctr",
            Engine::Runc => "runc",
            Engine::Crun => "crun",
            Engine::Youki => "youki",
            Engine::Runsc => "runsc",
        }
    }

    /// An OCI runtime (runc's command line), rather than an engine.
    pub fn is_runtime(self) -> bool {
        matches!(
            self,
            Engine::Runc | Engine::Crun | Engine::Youki | Engine::Runsc
        )
    }

    /// The global flags (before the verb) that take a value.
    pub fn global_value_flags(self) -> &'static [&'static str] {
        match self {
            Engine::Podman => podman::GLOBAL_VALUE_FLAGS,
            Engine::Docker => docker::GLOBAL_VALUE_FLAGS,
            Engine::Nerdctl => nerdctl::GLOBAL_VALUE_FLAGS,
            Engine::Buildah => buildah::GLOBAL_VALUE_FLAGS,
            Engine::Ctr => ctr::GLOBAL_VALUE_FLAGS,
            Engine::Runc | Engine::Crun | Engine::Youki | Engine::Runsc => {
                runtime::GLOBAL_VALUE_FLAGS
            }
        }
    }

    /// The flags of `verb` that take a value: the table that finds where
    /// its options end (empty for a verb privy has no table for).
    pub fn verb_value_flags(self, verb: &str) -> &'static [&'static str] {
        match (self, verb) {
            (Engine::Podman, "run" | "create") => podman::RUN_VALUE_FLAGS,
            (Engine::Docker | Engine::Nerdctl, "run" | "create") => docker::RUN_VALUE_FLAGS,
            (Engine::Ctr, "run" | "create") => ctr::RUN_VALUE_FLAGS,
            (e, "run" | "create") if e.is_runtime() => runtime::RUN_VALUE_FLAGS,
            _ => &[],
        }
    }

    /// What a bare `--` before the verb means to this engine's CLI.
    pub fn double_dash(self) -> DoubleDash {
        if self.is_runtime() {
            DoubleDash::EndsFlags
        } else {
            DoubleDash::EndsCommand
        }
    }

    /// How a `verb` of this engine takes a ticket for the container it
    /// starts, and whether that container can outlive the command
    /// (`false`: it ends with the command, as `buildah run` does), or
    /// `None` when the verb starts no container privy can reach.
    fn ticket_arg(self, verb: &str) -> Option<(TicketArg, bool)> {
        match self {
            Engine::Podman | Engine::Docker | Engine::Nerdctl => {
                matches!(verb, "run" | "create").then_some((TicketArg::Annotation, true))
            }
            Engine::Buildah => buildah::takes_ticket_env(verb).then_some((TicketArg::Env, false)),
            // ctr 1.6 takes `--annotation key=value` and puts it in the
            // spec; the container outlives `ctr run` unless `--rm`.
            Engine::Ctr => (verb == "run").then_some((TicketArg::Annotation, true)),
            _ => None,
        }
    }
}

/// An engine command line: the program and its arguments, the engine it
/// is, and where its verb is.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub engine: Option<Engine>,
    pub argv: Vec<String>,
    /// Index in `argv` of the verb (`run`; for `container run`, of `run`).
    pub verb: Option<usize>,
}

impl Command {
    /// Read `argv` (program first) with its engine's flag table.
    pub fn parse(argv: &[String]) -> Command {
        let engine = argv.first().and_then(|p| Engine::of(p));
        let verb = engine.and_then(|e| {
            let v = argv::verb_index(argv, 1, e.global_value_flags(), e.double_dash())?;
            // `docker container run`: the verb is the management command's.
            match (e, argv[v].as_str()) {
                (Engine::Podman | Engine::Docker | Engine::Nerdctl, "container") => {
                    (v + 1 < argv.len()).then_some(v + 1)
                }
                _ => Some(v),
            }
        });
        Command {
            engine,
            argv: argv.to_vec(),
            verb,
        }
    }

    pub fn verb(&self) -> Option<&str> {
        self.verb.map(|v| self.argv[v].as_str())
    }

    /// Whether the command starts a container when it runs (`run`, not
    /// `create`), whose hook should have claimed a ticket by the time the
    /// command is over (or, detached, has returned).
    pub fn starts_container(&self) -> bool {
        self.engine.is_some() && self.verb() == Some("run")
    }

    /// The arguments after the verb (all of them when there is none).
    pub fn after_verb(&self) -> &[String] {
        match self.verb {
            Some(v) => &self.argv[v + 1..],
            None => &[],
        }
    }

    /// The global flags: the arguments between the program and its first
    /// positional argument (the verb, or `container` before it).
    pub fn globals(&self) -> &[String] {
        let end = self
            .engine
            .and_then(|e| argv::verb_index(&self.argv, 1, e.global_value_flags(), e.double_dash()));
        match end {
            Some(v) => &self.argv[1..v],
            None => &[],
        }
    }

    /// Every value of an option after the verb ([`argv::flag_values`]).
    pub fn flag_values(&self, long: &str, short: Option<&str>) -> Vec<String> {
        argv::flag_values(self.after_verb(), long, short)
    }

    /// The options after the verb, up to its first positional argument,
    /// read with the verb's table ([`argv::leading_options`]).
    pub fn options(&self) -> &[String] {
        argv::leading_options(self.after_verb(), &self.verb_table())
    }

    /// The value-taking options the verb accepts: its own table, and for
    /// podman its global flags too, which podman (cobra's persistent flags)
    /// takes after the verb as well (`podman run --hooks-dir DIR ...`).
    fn verb_table(&self) -> Vec<&'static str> {
        match (self.engine, self.verb()) {
            (Some(Engine::Podman), Some(v)) => {
                let mut t = Engine::Podman.verb_value_flags(v).to_vec();
                t.extend_from_slice(podman::GLOBAL_VALUE_FLAGS);
                t
            }
            (Some(e), Some(v)) => e.verb_value_flags(v).to_vec(),
            _ => Vec::new(),
        }
    }

    /// Whether an option is among the verb's options ([`argv::has_flag`]).
    pub fn has_flag(&self, names: &[&str]) -> bool {
        argv::has_flag(self.options(), &self.verb_table(), names)
    }

    /// Every value of a verb's option, among its options only (so the
    /// container's own command line is never read as the engine's).
    pub fn option_values(&self, long: &str, short: Option<&str>) -> Vec<String> {
        argv::flag_values(self.options(), long, short)
    }

    /// Insert `args` right after the verb.
    pub fn insert_after_verb(&mut self, args: impl IntoIterator<Item = String>) {
        let at = self.verb.map_or(self.argv.len(), |v| v + 1);
        self.argv.splice(at..at, args);
    }

    /// Whether this engine passes an `--annotation` on to the runtime:
    /// every engine that takes one, except a Docker daemon older than API
    /// 1.43, which drops it silently (asked: `docker version`).
    pub fn annotations_reach_runtime(&self) -> bool {
        self.engine != Some(Engine::Docker) || docker::passes_annotations(self)
    }

    /// Add `ticket` where this engine takes it, `--annotation` or (for
    /// Docker daemons that drop annotations, `docker_annotations = false`,
    /// and engines without annotations) `--env PRIVY_TICKET=`. Returns
    /// whether the container is gone when the command ends (`run --rm`
    /// without `-d`; `buildah run`), or `None` when the command takes no
    /// ticket (the caller passes it in the environment instead).
    pub fn attach_ticket(&mut self, ticket: &str, docker_annotations: bool) -> Option<bool> {
        let engine = self.engine?;
        let verb = self.verb()?.to_owned();
        let (mut arg, can_outlive) = engine.ticket_arg(&verb)?;
        if engine == Engine::Docker && !docker_annotations {
            arg = TicketArg::Env;
        }
        let ephemeral = !can_outlive
            || (verb == "run" && self.has_flag(&["--rm"]) && !self.has_flag(&["-d", "--detach"]));
        let added = match arg {
            TicketArg::Annotation => [
                "--annotation".to_owned(),
                format!("{}={ticket}", crate::contract::ANNOTATION_TICKET),
            ],
            TicketArg::Env => [
                "--env".to_owned(),
                format!("{}={ticket}", crate::contract::ENV_TICKET),
            ],
        };
        self.insert_after_verb(added);
        Some(ephemeral)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn engines_are_known_by_their_file_name() {
        assert_eq!(Engine::of("/usr/bin/podman"), Some(Engine::Podman));
        assert_eq!(Engine::of("runsc"), Some(Engine::Runsc));
        assert_eq!(Engine::of("sh"), None);
        assert_eq!(Engine::of(""), None);
        for e in [Engine::Runc, Engine::Crun, Engine::Youki, Engine::Runsc] {
            assert!(e.is_runtime() && Engine::of(e.name()) == Some(e));
        }
        assert!(!Engine::Podman.is_runtime());
    }

    #[test]
    fn rm_and_detach_are_seen_wherever_they_are_among_the_options() {
        let ephemeral = |s: &str| Command::parse(&v(s)).attach_ticket("T", true);
        // Before the per-verb tables, a flag's value ended the options and
        // these `--rm`s went unseen (the ticket then waited for the sweep).
        assert_eq!(ephemeral("podman run --name x --rm img"), Some(true));
        assert_eq!(ephemeral("docker run -v a:/b -e K=V --rm img"), Some(true));
        assert_eq!(ephemeral("podman run --name x --rm -d img"), Some(false));
        assert_eq!(
            ephemeral("docker run --network none -it --rm img sh"),
            Some(true)
        );
        assert_eq!(
            ephemeral("ctr run --runc-binary /p --rm img id"),
            Some(true)
        );
        assert_eq!(ephemeral("ctr run --runc-binary /p -d img id"), Some(false));
        assert_eq!(ephemeral("ctr run img id --rm"), Some(false));
        // The container's own command is never read as the engine's.
        assert_eq!(ephemeral("podman run --name x img sh --rm"), Some(false));
        let c = Command::parse(&v("runc --root /r run -b b --pid-file p -d id"));
        assert!(c.has_flag(&["-d"]));
        let mut c = Command::parse(&v("ctr -a /s run --rm img id"));
        c.attach_ticket("T", true);
        assert_eq!(
            c.argv,
            v("ctr -a /s run --annotation io.privy.ticket=T --rm img id")
        );
    }

    #[test]
    fn a_command_knows_its_verb_past_global_flags_and_container() {
        let c = Command::parse(&v("docker -H unix:///x container create img"));
        assert_eq!(c.verb(), Some("create"));
        assert_eq!(c.globals(), &v("-H unix:///x")[..]);
        let mut c = Command::parse(&v("podman run --rm img"));
        c.insert_after_verb(v("--annotation k=v"));
        assert_eq!(c.argv, v("podman run --annotation k=v --rm img"));
        assert_eq!(Command::parse(&v("sh -c run")).verb(), None);
        assert_eq!(Command::parse(&v("podman")).verb(), None);
    }
}

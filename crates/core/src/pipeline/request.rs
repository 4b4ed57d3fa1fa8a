//! Stage one: who is asking. Turns the OCI state and the bundle's
//! `config.json` into a [`Request`]: container id, root, annotations, user,
//! id mappings, whether this is a run or a build step, and the [`Caller`]:
//! the host user on whose behalf the hook runs.

use crate::contract::{
    ANNOTATION_IMAGE, ANNOTATION_NAMES, ANNOTATION_STAGE, ANNOTATION_TICKET, ENV_HOOK_ANNOTATIONS,
    ENV_TICKET,
};
use crate::oci::{self, IdMapping, OciError, Spec, State, User};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub use crate::contract::Stage;

/// Parse [`ENV_HOOK_ANNOTATIONS`]'s value: the annotations a hooks.d entry
/// adds to every request it serves, a JSON object of strings. `privy build`
/// uses it to mark its RUN steps `io.privy.stage=build` and hand them the
/// build's ticket, because neither `podman build --annotation` nor `buildah
/// bud --annotation` reaches a RUN container's `config.json` (they label
/// the image, and would publish the ticket in it). A runtime gives a hook
/// only the `env` its entry names, so nothing else can set this.
pub fn parse_hook_annotations(v: &str) -> Result<BTreeMap<String, String>, OciError> {
    serde_json::from_str(v).map_err(|e| {
        OciError::State(format!(
            "{ENV_HOOK_ANNOTATIONS} is not a JSON object of strings: {e}"
        ))
    })
}

/// Who asks for a container's files, in the kernel's word: for the hook, the
/// host user that owns its user namespace (root for a rootful engine; the
/// user for a rootless one, whatever uid the hook has inside); for a node
/// agent, the uid `SO_PEERCRED` gives. Name and groups come from the host's
/// user database, for `when.users` (see [`crate::pipeline::plan::users_allow`]),
/// and only when a `when.users` entry names a user or a group: a lookup
/// loads the NSS modules, which measured 40% of the instructions of a hook
/// that has nothing to inject.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The host uid; `None` when it cannot be known (a nested user
    /// namespace), which matches no `when.users` and is not root.
    pub uid: Option<u32>,
    /// The uid's user name (if the user database has one) and the names
    /// of its groups, primary and supplementary: looked up once, on first use.
    names: std::sync::OnceLock<(Option<String>, Vec<String>)>,
}

/// Callers are the same host user: name and groups follow from the uid.
impl PartialEq for Caller {
    fn eq(&self, other: &Caller) -> bool {
        self.uid == other.uid
    }
}

impl Eq for Caller {}

impl Caller {
    /// Host root: what a rootful engine's hook is.
    pub fn root() -> Caller {
        Caller::for_uid(0)
    }

    /// `uid`; its name and groups are read from the host's user database
    /// when first asked for.
    pub fn for_uid(uid: u32) -> Caller {
        Caller {
            uid: Some(uid),
            names: std::sync::OnceLock::new(),
        }
    }

    /// A caller whose name and groups are given, not looked up (tests).
    pub fn with_names(uid: Option<u32>, name: Option<String>, groups: Vec<String>) -> Caller {
        Caller {
            uid,
            names: std::sync::OnceLock::from((name, groups)),
        }
    }

    /// The uid's user name, if the user database has one.
    pub fn name(&self) -> Option<&str> {
        self.names().0.as_deref()
    }

    /// The names of the user's groups, primary and supplementary.
    pub fn groups(&self) -> &[String] {
        &self.names().1
    }

    fn names(&self) -> &(Option<String>, Vec<String>) {
        self.names.get_or_init(|| {
            use nix::unistd::{getgrouplist, Group, Uid, User};
            let Some(uid) = self.uid else {
                return (None, Vec::new());
            };
            let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
            let groups = user
                .as_ref()
                .and_then(|u| {
                    let name = std::ffi::CString::new(u.name.as_bytes()).ok()?;
                    getgrouplist(&name, u.gid).ok()
                })
                .unwrap_or_default()
                .into_iter()
                .filter_map(|g| Group::from_gid(g).ok().flatten().map(|g| g.name))
                .collect();
            (user.map(|u| u.name), groups)
        })
    }

    /// This process: the host uid owning its user namespace
    /// ([`crate::sys::userns::host_uid`]).
    pub fn of_this_process() -> Caller {
        crate::sys::userns::host_uid().map_or_else(Caller::default, Caller::for_uid)
    }

    /// Whether this is host root.
    pub fn is_root(&self) -> bool {
        self.uid == Some(0)
    }
}

/// Everything later stages need to know about one container start.
#[derive(Debug, Clone)]
pub struct Request {
    pub container_id: String,
    /// PID of the container's init, whose mount namespace gets the tmpfs.
    pub pid: Option<i32>,
    pub bundle: PathBuf,
    /// Root filesystem path as the runtime sees it.
    pub root: PathBuf,
    pub stage: Stage,
    pub annotations: BTreeMap<String, String>,
    pub image: Option<String>,
    pub names: Vec<String>,
    pub user: User,
    pub uid_mappings: Vec<IdMapping>,
    pub gid_mappings: Vec<IdMapping>,
    /// On whose behalf: this process's owner unless the caller sets
    /// another (a node agent, from `SO_PEERCRED`).
    pub caller: Caller,
    /// `linux.mountLabel`: the SELinux context the private tmpfs gets on
    /// a host with SELinux on.
    pub mount_label: Option<String>,
}

impl Request {
    /// Build the request from the hook's state and the bundle's spec.
    pub fn from_oci(state: State, spec: Spec) -> Result<Self, OciError> {
        let root = spec.root_path(&state.bundle)?;
        // config.json annotations are the engine's; the state's are the
        // runtime's copy. Merge, the state winning on conflict.
        let mut annotations = spec.annotations;
        annotations.extend(state.annotations);
        // Engines without annotations (`buildah run`) carry a ticket in the
        // container's environment instead; an annotation wins.
        if !annotations.contains_key(ANNOTATION_TICKET) {
            let env = spec
                .process
                .as_ref()
                .map(|p| p.env.as_slice())
                .unwrap_or_default();
            if let Some(t) = env
                .iter()
                .find_map(|e| e.strip_prefix(ENV_TICKET)?.strip_prefix('='))
            {
                annotations.insert(ANNOTATION_TICKET.into(), t.to_owned());
            }
        }
        let stage = if annotations.get(ANNOTATION_STAGE).map(String::as_str)
            == Some(Stage::Build.as_str())
            || crate::engines::buildah::is_run_step(&state.id, &state.bundle)
        {
            Stage::Build
        } else {
            Stage::Run
        };
        let image = crate::engines::cri::IMAGE_ANNOTATIONS
            .iter()
            .chain([&ANNOTATION_IMAGE])
            .find_map(|k| annotations.get(*k).cloned());
        let names = annotations
            .get(ANNOTATION_NAMES)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let linux = spec.linux.unwrap_or_default();
        Ok(Request {
            container_id: state.id,
            pid: state.pid,
            bundle: state.bundle,
            root,
            stage,
            annotations,
            image,
            names,
            user: spec.process.map(|p| p.user).unwrap_or_default(),
            uid_mappings: linux.uid_mappings,
            gid_mappings: linux.gid_mappings,
            caller: Caller::of_this_process(),
            mount_label: linux.mount_label.filter(|l| !l.is_empty()),
        })
    }

    /// Read `config.json` from the state's bundle and build the request.
    /// Annotations in the hook's [`ENV_HOOK_ANNOTATIONS`] (set by the
    /// hooks.d entry `privy build` writes) are added first; an unparsable
    /// value fails closed.
    pub fn load(state: State) -> Result<Self, OciError> {
        let env = std::env::var_os(ENV_HOOK_ANNOTATIONS).map(|v| v.to_string_lossy().into_owned());
        Self::load_with(state, env.as_deref())
    }

    /// [`Request::load`] with the hook's `PRIVY_HOOK_ANNOTATIONS` given
    /// (the node agent gets it from the hook, not from its own environment).
    pub fn load_with(mut state: State, hook_annotations: Option<&str>) -> Result<Self, OciError> {
        if let Some(v) = hook_annotations {
            state.annotations.extend(parse_hook_annotations(v)?);
        }
        let spec = Spec::load(&state.bundle)?;
        Self::from_oci(state, spec)
    }

    /// A request that no container made: "what would a container with
    /// these annotations get at this stage" (`privy scan --sources`, `privy
    /// build`'s needles, `privy plugin run`). Root's user, no image, no
    /// names, no bundle, root or pid; nothing is derived from the
    /// annotations (a synthetic request asks for everything).
    pub fn synthetic(
        container_id: &str,
        stage: Stage,
        annotations: BTreeMap<String, String>,
    ) -> Request {
        Request {
            container_id: container_id.to_owned(),
            pid: None,
            bundle: PathBuf::new(),
            root: PathBuf::new(),
            stage,
            annotations,
            image: None,
            names: Vec::new(),
            user: User::default(),
            uid_mappings: Vec::new(),
            gid_mappings: Vec::new(),
            caller: Caller::of_this_process(),
            mount_label: None,
        }
    }

    /// The host uid and gid that own the private files, as the container's
    /// id mappings translate its user.
    pub fn host_owner(&self) -> Option<(u32, u32)> {
        Some((
            oci::map_id(&self.uid_mappings, self.user.uid)?,
            oci::map_id(&self.gid_mappings, self.user.gid)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(config: &str, state: &str) -> Request {
        Request::from_oci(
            State::parse(state.as_bytes()).unwrap(),
            serde_json::from_str(config).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn request_merges_annotations_and_detects_build() {
        let r = req(
            r#"{"root":{"path":"/abs/root"},"annotations":{"io.privy.stage":"build","io.privy.names":"a, b/c,"}}"#,
            r#"{"id":"c","pid":1,"bundle":"/b","annotations":{"k":"v"}}"#,
        );
        assert_eq!(r.stage, Stage::Build);
        assert_eq!(r.root, PathBuf::from("/abs/root"));
        assert_eq!(r.names, vec!["a", "b/c"]);
        assert_eq!(r.annotations["k"], "v");
    }

    #[test]
    fn the_mount_label_comes_from_linux_mount_label() {
        let state = r#"{"id":"c","pid":1,"bundle":"/b"}"#;
        let r = req(
            r#"{"root":{"path":"/r"},"linux":{"mountLabel":"system_u:object_r:container_file_t:s0:c1,c2"}}"#,
            state,
        );
        assert_eq!(
            r.mount_label.as_deref(),
            Some("system_u:object_r:container_file_t:s0:c1,c2")
        );
        for none in [
            r#"{"root":{"path":"/r"}}"#,
            r#"{"root":{"path":"/r"},"linux":{}}"#,
            r#"{"root":{"path":"/r"},"linux":{"mountLabel":""}}"#,
        ] {
            assert_eq!(req(none, state).mount_label, None, "{none}");
        }
    }

    #[test]
    fn buildah_run_steps_are_builds_by_their_id_and_bundle() {
        let r = req(
            r#"{"root":{"path":"/var/tmp/buildah1/mnt/rootfs"}}"#,
            r#"{"id":"buildah-buildah287982518","pid":1,"bundle":"/var/tmp/buildah287982518"}"#,
        );
        assert_eq!(r.stage, Stage::Build);
        for (id, bundle) in [
            ("buildah-buildah287982518", "/var/tmp/buildah111"),
            (
                "0123abcd",
                "/run/containers/storage/overlay-containers/0123abcd/userdata",
            ),
            ("buildah-x", "/b/x"),
            ("buildah-", "/"),
        ] {
            assert!(
                !crate::engines::buildah::is_run_step(id, std::path::Path::new(bundle)),
                "{id} {bundle}"
            );
        }
    }

    #[test]
    fn hook_annotations_parse_or_fail_closed() {
        let m =
            parse_hook_annotations(r#"{"io.privy.stage":"build","io.privy.ticket":"t"}"#).unwrap();
        assert_eq!(m["io.privy.ticket"], "t");
        for bad in ["", "[]", r#"{"a":1}"#, "{"] {
            let e = parse_hook_annotations(bad).unwrap_err().to_string();
            assert!(e.contains(ENV_HOOK_ANNOTATIONS), "{e}");
        }
    }

    #[test]
    fn owner_follows_user_namespace_mappings() {
        let r = req(
            r#"{"root":{"path":"r"},"process":{"user":{"uid":1000,"gid":100}},
                "linux":{"uidMappings":[{"containerID":0,"hostID":300000,"size":65536}],
                         "gidMappings":[{"containerID":0,"hostID":400000,"size":65536}]}}"#,
            r#"{"id":"c","bundle":"/b"}"#,
        );
        assert_eq!(r.host_owner(), Some((301000, 400100)));
        assert_eq!(r.stage, Stage::Run);
    }

    #[test]
    fn unmapped_user_has_no_owner() {
        let r = req(
            r#"{"root":{"path":"r"},"process":{"user":{"uid":70000,"gid":0}},
                "linux":{"uidMappings":[{"containerID":0,"hostID":300000,"size":65536}]}}"#,
            r#"{"id":"c","bundle":"/b"}"#,
        );
        assert_eq!(r.host_owner(), None);
    }
}

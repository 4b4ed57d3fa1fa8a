//! What CRI runtimes (containerd's CRI, CRI-O) write into a container's
//! annotations: the image reference, and the Kubernetes pod the container
//! belongs to: whether it is a pod's sandbox ("pause") container, and the
//! pod's namespace and name, the container's name and its image, for
//! `when` conditions (`namespace`, `pod`, `container`, `image`,
//! `pod_annotations`, matched in `pipeline::plan`).
//!
//! privy never talks to the Kubernetes API. Both CRI runtimes write the
//! pod's identity into every container's `config.json`, and the hook reads
//! it from there:
//!
//! | what              | containerd (1.6, 1.7, 2.x)            | CRI-O                                        |
//! |-------------------|---------------------------------------|----------------------------------------------|
//! | sandbox or not    | `io.kubernetes.cri.container-type`    | `io.kubernetes.cri-o.ContainerType`          |
//! | pod namespace     | `io.kubernetes.cri.sandbox-namespace` | `io.kubernetes.pod.namespace` (kubelet label) |
//! | pod name          | `io.kubernetes.cri.sandbox-name`      | `io.kubernetes.pod.name` (kubelet label)     |
//! | container name    | `io.kubernetes.cri.container-name`    | `io.kubernetes.container.name` (kubelet label) |
//! | image reference   | `io.kubernetes.cri.image-name`        | `io.kubernetes.cri-o.ImageName`, else `io.kubernetes.cri-o.Image` |
//! | pod annotations   | those the handler's `pod_annotations` lets through, as plain annotations | all of them, as plain annotations |
//!
//! The image reference is a name the runtime has for the image's content
//! (containerd: its first reference for that image id), not necessarily
//! the one the pod spec wrote: two tags of one image are one image.
//!
//! Why these can be trusted, and where not:
//!
//! - containerd writes its `io.kubernetes.cri.*` keys after the pod's and
//!   the container's pass-through annotations, so a pod cannot override
//!   them (`container_create_linux.go`, `sandbox_run_linux.go`).
//! - CRI-O copies *every* pod annotation into every container (it has no
//!   pass-through list), then writes its own keys and the kubelet's
//!   container labels over them, so on a workload container a pod cannot
//!   override them either. On the sandbox container CRI-O writes the pod's
//!   annotations last, so a pod can disguise its own sandbox as a
//!   container; that only makes privy serve the pod's own files to its own
//!   pause container.
//! - Because CRI-O lets a pod set *any* annotation, a pod on CRI-O could
//!   add containerd's keys with another namespace. So CRI-O's marker is
//!   looked at first; and a container that carries both runtimes' markers
//!   is [`Identity::Conflicting`]: it matches no pod condition and counts
//!   as a sandbox, so it gets only what unscoped sources give every
//!   container, never a namespace's secrets.
//! - An engine whose users set annotations freely (`podman --annotation`,
//!   `ctr run --annotation`) can claim any namespace. Those users are root
//!   on the node (a rootless podman's hook cannot read root's credentials),
//!   but an operator who scopes secrets by namespace should not give such
//!   users privy's hooks on a Kubernetes node either.

use std::collections::BTreeMap;

/// containerd's container type: `sandbox` or `container`.
pub const CONTAINERD_TYPE: &str = "io.kubernetes.cri.container-type";
/// containerd's pod namespace.
pub const CONTAINERD_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
/// containerd's pod name.
pub const CONTAINERD_POD: &str = "io.kubernetes.cri.sandbox-name";
/// containerd's container name (workload containers only).
pub const CONTAINERD_CONTAINER: &str = "io.kubernetes.cri.container-name";
/// containerd's image reference, normalized (`docker.io/library/busybox:1.36`).
pub const CONTAINERD_IMAGE: &str = "io.kubernetes.cri.image-name";
/// CRI-O's container type: `sandbox` or `container`.
pub const CRIO_TYPE: &str = "io.kubernetes.cri-o.ContainerType";
/// A name CRI-O's storage has for the image (may be empty).
pub const CRIO_IMAGE: &str = "io.kubernetes.cri-o.ImageName";
/// The image as the pod spec named it.
pub const CRIO_REQUESTED_IMAGE: &str = "io.kubernetes.cri-o.Image";
/// The kubelet's container labels, which CRI-O writes as annotations.
pub const KUBELET_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const KUBELET_POD: &str = "io.kubernetes.pod.name";
pub const KUBELET_CONTAINER: &str = "io.kubernetes.container.name";
/// The container-type value of a pod's sandbox.
pub const SANDBOX: &str = "sandbox";
/// The OCI image annotation some engines set.
pub const OCI_IMAGE_REF: &str = "org.opencontainers.image.ref.name";

/// Annotations engines use for the image reference, most specific first;
/// privy's own `io.privy.image` is read after these.
pub const IMAGE_ANNOTATIONS: &[&str] = &[CRIO_IMAGE, CONTAINERD_IMAGE, OCI_IMAGE_REF];

/// The CRI runtime that started a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Containerd,
    CriO,
}

/// A pod's container, as its runtime describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub runtime: Runtime,
    /// The pod's sandbox ("pause") container rather than a workload.
    pub sandbox: bool,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The container's name in the pod spec (none for a sandbox).
    pub container: Option<String>,
    /// The image reference (none for a sandbox).
    pub image: Option<String>,
}

/// What a container's annotations say about its pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No CRI runtime's marker: a container started outside Kubernetes.
    NotInPod,
    Pod(Pod),
    /// Both containerd's and CRI-O's markers: one of them was set by a
    /// pod, so neither is believed.
    Conflicting,
}

fn get(a: &BTreeMap<String, String>, key: &str) -> Option<String> {
    a.get(key).filter(|v| !v.is_empty()).cloned()
}

/// Read the pod identity from a container's annotations.
pub fn identify(a: &BTreeMap<String, String>) -> Identity {
    match (a.get(CRIO_TYPE), a.get(CONTAINERD_TYPE)) {
        (None, None) => Identity::NotInPod,
        (Some(_), Some(_)) => Identity::Conflicting,
        (Some(t), None) => Identity::Pod(Pod {
            runtime: Runtime::CriO,
            sandbox: t == SANDBOX,
            namespace: get(a, KUBELET_NAMESPACE),
            name: get(a, KUBELET_POD),
            container: get(a, KUBELET_CONTAINER),
            image: get(a, CRIO_IMAGE).or_else(|| get(a, CRIO_REQUESTED_IMAGE)),
        }),
        (None, Some(t)) => {
            let sandbox = t == SANDBOX;
            Identity::Pod(Pod {
                runtime: Runtime::Containerd,
                sandbox,
                namespace: get(a, CONTAINERD_NAMESPACE),
                name: get(a, CONTAINERD_POD),
                container: get(a, CONTAINERD_CONTAINER).filter(|_| !sandbox),
                image: get(a, CONTAINERD_IMAGE).filter(|_| !sandbox),
            })
        }
    }
}

/// Whether the container is a pod's sandbox ("pause") container, which
/// runs no workload and so gets no private files. A conflicting identity
/// counts as one: withholding files is the safe side.
pub fn is_sandbox(a: &BTreeMap<String, String>) -> bool {
    match identify(a) {
        Identity::Pod(p) => p.sandbox,
        Identity::Conflicting => true,
        Identity::NotInPod => false,
    }
}

/// The annotations each runtime writes, for tests here and in the plan.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub(crate) fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// What containerd 1.6 writes for a workload container (seen in the
    /// CRI tests' config.json) plus a pod annotation passed through.
    pub(crate) fn containerd(
        ns: &str,
        pod: &str,
        ctr: &str,
        image: &str,
    ) -> BTreeMap<String, String> {
        ann(&[
            (CONTAINERD_TYPE, "container"),
            ("io.kubernetes.cri.sandbox-id", "0123abcd"),
            (CONTAINERD_NAMESPACE, ns),
            ("io.kubernetes.cri.sandbox-uid", "uid-1"),
            (CONTAINERD_POD, pod),
            (CONTAINERD_CONTAINER, ctr),
            (CONTAINERD_IMAGE, image),
            ("io.privy.vault", "payments/db"),
        ])
    }

    /// What CRI-O writes for a workload container under the kubelet.
    pub(crate) fn crio(ns: &str, pod: &str, ctr: &str, image: &str) -> BTreeMap<String, String> {
        ann(&[
            (CRIO_TYPE, "container"),
            ("io.kubernetes.cri-o.SandboxName", "k8s_POD_x_y_z_0"),
            (CRIO_IMAGE, image),
            (CRIO_REQUESTED_IMAGE, "api:1"),
            (KUBELET_NAMESPACE, ns),
            (KUBELET_POD, pod),
            (KUBELET_CONTAINER, ctr),
            ("team", "payments-blue"),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn sandboxes_of_both_runtimes_are_recognised_and_workloads_are_not() {
        assert!(is_sandbox(&ann(&[(CONTAINERD_TYPE, "sandbox")])));
        assert!(is_sandbox(&ann(&[(CRIO_TYPE, "sandbox")])));
        assert!(!is_sandbox(&ann(&[(CONTAINERD_TYPE, "container")])));
        assert!(!is_sandbox(&ann(&[(CRIO_TYPE, "container")])));
        assert!(!is_sandbox(&ann(&[("io.privy.names", "a")])));
        // A pod on CRI-O adding containerd's marker is believed by neither.
        assert!(is_sandbox(&ann(&[
            (CRIO_TYPE, "container"),
            (CONTAINERD_TYPE, "container")
        ])));
    }

    #[test]
    fn identity_comes_from_each_runtime_s_own_keys() {
        let Identity::Pod(p) = identify(&containerd("payments", "api-7", "app", "r.io/p/api:1"))
        else {
            panic!()
        };
        assert_eq!(
            (p.runtime, p.namespace.as_deref(), p.name.as_deref()),
            (Runtime::Containerd, Some("payments"), Some("api-7"))
        );
        assert_eq!(
            (p.container.as_deref(), p.image.as_deref()),
            (Some("app"), Some("r.io/p/api:1"))
        );
        let Identity::Pod(p) = identify(&crio("payments", "api-7", "app", "r.io/p/api:1")) else {
            panic!()
        };
        assert_eq!(p.runtime, Runtime::CriO);
        assert_eq!(p.namespace.as_deref(), Some("payments"));
        assert_eq!(p.image.as_deref(), Some("r.io/p/api:1"));
        // CRI-O's storage name may be empty: the requested image stands in.
        let mut a = crio("n", "p", "c", "");
        assert_eq!(
            match identify(&a) {
                Identity::Pod(p) => p.image,
                _ => None,
            }
            .as_deref(),
            Some("api:1")
        );
        a.insert(CONTAINERD_TYPE.into(), "container".into());
        assert_eq!(identify(&a), Identity::Conflicting);
    }
}

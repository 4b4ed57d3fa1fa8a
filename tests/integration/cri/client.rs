//! Pods and containers through the CRI gRPC API, the calls the kubelet
//! makes: `RunPodSandbox`, `CreateContainer`, `StartContainer`,
//! `ExecSync`, `StopContainer`, `StopPodSandbox`, `RemovePodSandbox`.
//! A [`TestPod`] stops and removes its sandbox when dropped, so a failing
//! test leaves no pod behind.

use super::node::{map, Node};
use k8s_cri::v1 as cri;
use std::time::Duration;

/// Every CRI call is bounded: a hung runtime fails the test, it does not
/// hang it.
const CALL: Duration = Duration::from_secs(120);

/// What a pod is: its handler, namespace, name and annotations.
pub struct PodSpec<'a> {
    pub handler: &'a str,
    pub namespace: &'a str,
    pub name: String,
    pub annotations: Vec<(&'a str, &'a str)>,
}

impl<'a> PodSpec<'a> {
    pub fn new(handler: &'a str, namespace: &'a str, name: &str) -> Self {
        PodSpec {
            handler,
            namespace,
            name: unique(name),
            annotations: Vec::new(),
        }
    }

    pub fn annotate(mut self, k: &'a str, v: &'a str) -> Self {
        self.annotations.push((k, v));
        self
    }
}

/// `name-<pid>-<n>`: pod names and uids unique across tests and runs.
pub fn unique(name: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A running pod sandbox.
pub struct TestPod {
    node: &'static Node,
    pub id: String,
    config: cri::PodSandboxConfig,
    removed: bool,
}

/// One container to create in a pod.
pub struct Ctr<'a> {
    pub name: &'a str,
    pub attempt: u32,
    pub image: &'a str,
    pub command: Vec<String>,
    /// The uid the container runs as (none: the image's, root).
    pub uid: Option<i64>,
}

impl<'a> Ctr<'a> {
    /// A container that sleeps until it is stopped.
    pub fn sleeping(name: &'a str, image: &'a str) -> Self {
        Ctr {
            name,
            attempt: 0,
            image,
            command: vec!["/bin/sleep".into(), "3600".into()],
            uid: None,
        }
    }
}

impl TestPod {
    /// `RunPodSandbox`: a host-network pod without a hostname (no CNI).
    pub fn run(node: &'static Node, spec: &PodSpec) -> Result<TestPod, tonic::Status> {
        let logs = node.dir.join("logs").join(&spec.name);
        let uid = format!("uid-{}", spec.name);
        std::fs::create_dir_all(&logs).unwrap();
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: spec.name.clone(),
                uid: uid.clone(),
                namespace: spec.namespace.into(),
                attempt: 0,
            }),
            log_directory: logs.display().to_string(),
            annotations: map(&spec.annotations),
            // The labels the kubelet sets on every sandbox.
            labels: map(&[
                ("io.kubernetes.pod.name", spec.name.as_str()),
                ("io.kubernetes.pod.namespace", spec.namespace),
                ("io.kubernetes.pod.uid", uid.as_str()),
            ]),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(node_network()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: spec.handler.into(),
        };
        let id = call(node, |mut rt| async move { rt.run_pod_sandbox(req).await })?.pod_sandbox_id;
        Ok(TestPod {
            node,
            id,
            config,
            removed: false,
        })
    }

    /// `CreateContainer` in this pod; returns the container id.
    pub fn create(&self, c: &Ctr) -> Result<String, tonic::Status> {
        let meta = self.config.metadata.clone().unwrap_or_default();
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: self.id.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: c.name.into(),
                    attempt: c.attempt,
                }),
                image: Some(cri::ImageSpec {
                    image: c.image.into(),
                    ..Default::default()
                }),
                command: c.command.clone(),
                // The labels the kubelet sets on every container.
                labels: map(&[
                    ("io.kubernetes.container.name", c.name),
                    ("io.kubernetes.pod.name", meta.name.as_str()),
                    ("io.kubernetes.pod.namespace", meta.namespace.as_str()),
                    ("io.kubernetes.pod.uid", meta.uid.as_str()),
                ]),
                log_path: format!("{}-{}.log", c.name, c.attempt),
                linux: Some(cri::LinuxContainerConfig {
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        namespace_options: Some(node_network()),
                        run_as_user: c.uid.map(|value| cri::Int64Value { value }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            sandbox_config: Some(self.config.clone()),
        };
        Ok(call(
            self.node,
            |mut rt| async move { rt.create_container(req).await },
        )?
        .container_id)
    }

    /// `StartContainer`.
    pub fn start(&self, id: &str) -> Result<(), tonic::Status> {
        let req = cri::StartContainerRequest {
            container_id: id.into(),
        };
        call(
            self.node,
            |mut rt| async move { rt.start_container(req).await },
        )
        .map(|_| ())
    }

    /// `CreateContainer` then `StartContainer`.
    pub fn run_container(&self, c: &Ctr) -> Result<String, tonic::Status> {
        let id = self.create(c)?;
        self.start(&id)?;
        Ok(id)
    }

    /// `ExecSync`: exit code, stdout, stderr.
    pub fn exec(&self, id: &str, cmd: &[&str]) -> (i32, String, String) {
        let req = cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 30,
        };
        let r = call(self.node, |mut rt| async move { rt.exec_sync(req).await })
            .unwrap_or_else(|e| panic!("ExecSync {cmd:?}: {e}"));
        (
            r.exit_code,
            String::from_utf8_lossy(&r.stdout).into_owned(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
        )
    }

    /// `StopContainer` (as the kubelet does when a container is restarted).
    pub fn stop(&self, id: &str) {
        let req = cri::StopContainerRequest {
            container_id: id.into(),
            timeout: 0,
        };
        call(
            self.node,
            |mut rt| async move { rt.stop_container(req).await },
        )
        .unwrap_or_else(|e| panic!("StopContainer: {e}"));
    }

    /// `RemoveContainer`.
    pub fn remove_container(&self, id: &str) {
        let req = cri::RemoveContainerRequest {
            container_id: id.into(),
        };
        call(
            self.node,
            |mut rt| async move { rt.remove_container(req).await },
        )
        .unwrap_or_else(|e| panic!("RemoveContainer: {e}"));
    }

    /// The pid of the sandbox ("pause") container's process, from
    /// `PodSandboxStatus` with `verbose`.
    pub fn sandbox_pid(&self) -> i32 {
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: self.id.clone(),
            verbose: true,
        };
        let r = call(self.node, |mut rt| async move {
            rt.pod_sandbox_status(req).await
        })
        .expect("PodSandboxStatus");
        let info: serde_json::Value =
            serde_json::from_str(r.info.get("info").expect("verbose info")).unwrap();
        info["pid"].as_i64().expect("sandbox pid") as i32
    }

    /// `StopPodSandbox` then `RemovePodSandbox`, as the kubelet does when a
    /// pod is deleted.
    pub fn remove(mut self) {
        self.teardown().expect("StopPodSandbox/RemovePodSandbox");
    }

    fn teardown(&mut self) -> Result<(), tonic::Status> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        let id = self.id.clone();
        call(self.node, |mut rt| async move {
            rt.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id })
                .await
        })?;
        let id = self.id.clone();
        call(self.node, |mut rt| async move {
            rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                .await
        })?;
        Ok(())
    }
}

impl Drop for TestPod {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// The node's network, no hostname: no CNI needed.
fn node_network() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Node as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// One CRI call on the node's runtime, bounded by [`CALL`].
fn call<T, F, Fut>(node: &Node, f: F) -> Result<T, tonic::Status>
where
    F: FnOnce(super::node::RuntimeClient) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let fut = f(node.runtime());
    node.block_on(async {
        match tokio::time::timeout(CALL, fut).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {CALL:?}"
            ))),
        }
    })
}

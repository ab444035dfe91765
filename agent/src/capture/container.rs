//! Which container (and Kubernetes pod) a process belongs to, from its cgroup membership.
//!
//! Container runtimes put every container in a cgroup whose name carries the 64-hex container
//! id, and the kubelet puts every pod's containers under a cgroup named after the pod's UID.
//! Both are visible to any process in `/proc/<pid>/cgroup`, without asking the runtime (no
//! socket, no API, nothing that can lag behind a short-lived process). This module only parses
//! those paths; it has no dependency beyond `std`, so the kernel tests compile this very file
//! to check it against a real cgroup.
//!
//! Shapes recognised (innermost match wins, so docker-in-docker and kind report the innermost
//! container):
//!
//! | path segment | driver | runtime |
//! |---|---|---|
//! | `cri-containerd-<id>.scope` | systemd | containerd |
//! | `crio-<id>.scope`, `crio-<id>` | systemd, cgroupfs | CRI-O |
//! | `docker-<id>.scope`, `/docker/<id>` | systemd, cgroupfs | Docker |
//! | `libpod-<id>.scope`, `libpod-<id>` | systemd, cgroupfs | podman |
//! | `<other prefix>-<id>.scope` | systemd | unknown runtime (`systemd-unknown`) |
//! | `/kubepods/<qos>/pod<uid>/<id>` | cgroupfs | containerd (see [`Runtime::Containerd`]) |
//!
//! The pod UID comes from `kubepods-<qos>-pod<uid with '_' for '-'>.slice` (systemd driver) or
//! `pod<uid>` (cgroupfs driver) above the container's cgroup. The monitor processes podman and
//! CRI-O run next to a container (`libpod-conmon-<id>.scope`, `crio-conmon-<id>.scope`) are not
//! in the container and are not reported as in it.

use std::{fmt, io, path::Path};

/// The container runtime, as far as the cgroup name tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// `cri-containerd-<id>.scope`; also a bare `<id>` under a cgroupfs `kubepods` pod cgroup,
    /// which is how containerd names it there. (dockershim used the same shape before
    /// Kubernetes 1.24 removed it; CRI-O prefixes `crio-` and is recognised as such.)
    Containerd,
    CriO,
    Docker,
    Podman,
    /// A systemd scope `<prefix>-<64 hex>.scope` with a prefix no known runtime uses.
    SystemdUnknown,
}

impl Runtime {
    /// The stable name used in events: `containerd`, `cri-o`, `docker`, `podman`,
    /// `systemd-unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::SystemdUnknown => "systemd-unknown",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The container a process runs in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContainerInfo {
    pub runtime: Runtime,
    /// 64 lowercase hex digits, as the runtime prints it (`crictl ps`, `docker ps --no-trunc`).
    pub container_id: String,
    /// The Kubernetes pod UID with dashes (`metadata.uid`), when the container is in a pod.
    pub pod_uid: Option<String>,
}

/// Parses the whole content of `/proc/<pid>/cgroup` (cgroup v1 lines
/// `<id>:<controllers>:<path>`, the v2 line `0::<path>`, or both on a hybrid host).
///
/// The v2 line is tried first, then the v1 lines in order; the first that names a container
/// wins. `None`: the process is not in a container this module recognises (a host process).
pub fn from_proc_cgroup(content: &str) -> Option<ContainerInfo> {
    let paths = content.lines().filter_map(|line| {
        let mut fields = line.splitn(3, ':');
        let hierarchy = fields.next()?;
        let _controllers = fields.next()?;
        let path = fields.next()?;
        Some((hierarchy == "0", path))
    });
    let (v2, v1): (Vec<_>, Vec<_>) = paths.partition(|(is_v2, _)| *is_v2);
    v2.into_iter()
        .chain(v1)
        .find_map(|(_, path)| from_cgroup_path(path))
}

/// Parses one cgroup path (`/kubepods.slice/.../cri-containerd-<id>.scope`). Paths seen from
/// inside a cgroup namespace (`/../../kubepods-...`) work too: only segment names matter.
pub fn from_cgroup_path(path: &str) -> Option<ContainerInfo> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Innermost first: nested containers (kind, docker-in-docker) report the inner one.
    for i in (0..segments.len()).rev() {
        let parent = i.checked_sub(1).map(|p| segments[p]);
        if let Some((runtime, id)) = container_segment(segments[i], parent) {
            let pod_uid = segments[..i].iter().rev().find_map(|s| pod_segment(s));
            return Some(ContainerInfo {
                runtime,
                container_id: id.to_owned(),
                pod_uid,
            });
        }
    }
    None
}

/// Reads `<proc_root>/<pid>/cgroup` (normally `/proc/<pid>/cgroup`) and parses it. An error is
/// what reading failed with (`NotFound`: the process is gone); `Ok(None)`: not in a container.
pub fn read_for_pid(proc_root: &Path, pid: u32) -> io::Result<Option<ContainerInfo>> {
    let content = std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup"))?;
    Ok(from_proc_cgroup(&content))
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Systemd scope prefixes of known runtimes, most specific first. Conmon scopes come before
/// their runtime's prefix so they are recognised and rejected, not mistaken for the container.
const SCOPE_PREFIXES: &[(&str, Option<Runtime>)] = &[
    ("cri-containerd-", Some(Runtime::Containerd)),
    ("crio-conmon-", None),
    ("crio-", Some(Runtime::CriO)),
    ("docker-", Some(Runtime::Docker)),
    ("libpod-conmon-", None),
    ("libpod-", Some(Runtime::Podman)),
];

/// A segment that names a container, and the runtime; `parent` is the segment above it.
fn container_segment<'a>(segment: &'a str, parent: Option<&str>) -> Option<(Runtime, &'a str)> {
    let unit = segment.strip_suffix(".scope");
    let name = unit.unwrap_or(segment);
    for &(prefix, runtime) in SCOPE_PREFIXES {
        if let Some(id) = name.strip_prefix(prefix) {
            if is_container_id(id) {
                // A conmon scope names a container it is not part of.
                return runtime.map(|r| (r, id));
            }
        }
    }
    if is_container_id(segment) {
        // cgroupfs driver: the bare id is the cgroup name; the parent tells whose it is.
        return match parent {
            Some("docker") => Some((Runtime::Docker, segment)),
            Some(p) if pod_segment(p).is_some() => Some((Runtime::Containerd, segment)),
            _ => None,
        };
    }
    // Any other systemd scope ending in a container id: a runtime we do not know by name.
    let (_, id) = unit?.rsplit_once('-')?;
    is_container_id(id).then_some((Runtime::SystemdUnknown, id))
}

/// The pod UID (with dashes) a kubelet pod cgroup names: `kubepods-<qos>-pod<uid>.slice` /
/// `kubepods-pod<uid>.slice` (systemd, '_' for '-') or `pod<uid>` (cgroupfs).
fn pod_segment(segment: &str) -> Option<String> {
    let uid = match segment.strip_suffix(".slice") {
        Some(slice) => {
            // `kubepods-...`, or `<cgroup root>-kubepods-...` when the kubelet runs with
            // --cgroup-root (kind names them `kubelet-kubepods-...`).
            if !(slice.starts_with("kubepods-") || slice.contains("-kubepods-")) {
                return None;
            }
            let (_, uid) = slice.rsplit_once("-pod")?;
            uid.replace('_', "-")
        }
        None => segment.strip_prefix("pod")?.to_owned(),
    };
    is_pod_uid(&uid).then_some(uid)
}

/// A UID as the API server makes it (8-4-4-4-12 hex), or the 32-hex hash the kubelet gives
/// static pods.
fn is_pod_uid(s: &str) -> bool {
    let hex = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_hexdigit());
    if s.len() == 32 {
        return hex(s);
    }
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts.iter().all(|p| hex(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1d3c1e5b2a6978c0d4e2f1a3b5c7d9e1f2a3b4c5d6e7f8091a2b3c4d5e6f70";
    const ID2: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "0b3a4c2e-5f61-4d7a-9c8b-1e2f3a4b5c6d";
    const UID_: &str = "0b3a4c2e_5f61_4d7a_9c8b_1e2f3a4b5c6d";

    fn info(runtime: Runtime, id: &str, pod: Option<&str>) -> Option<ContainerInfo> {
        Some(ContainerInfo {
            runtime,
            container_id: id.into(),
            pod_uid: pod.map(Into::into),
        })
    }

    #[test]
    fn containerd_systemd_driver_v2() {
        let file = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(
            from_proc_cgroup(&file),
            info(Runtime::Containerd, ID, Some(UID))
        );
    }

    #[test]
    fn containerd_cgroupfs_driver_v1() {
        let file = format!(
            "12:memory:/kubepods/burstable/pod{UID}/{ID}\n11:cpu,cpuacct:/kubepods/burstable/pod{UID}/{ID}\n1:name=systemd:/kubepods/burstable/pod{UID}/{ID}\n"
        );
        assert_eq!(
            from_proc_cgroup(&file),
            info(Runtime::Containerd, ID, Some(UID))
        );
        // Guaranteed QoS has no class segment.
        assert_eq!(
            from_cgroup_path(&format!("/kubepods/pod{UID}/{ID}")),
            info(Runtime::Containerd, ID, Some(UID))
        );
    }

    #[test]
    fn guaranteed_and_besteffort_slices() {
        assert_eq!(
            from_cgroup_path(&format!(
                "/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"
            )),
            info(Runtime::Containerd, ID, Some(UID))
        );
        assert_eq!(
            from_cgroup_path(&format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope"
            )),
            info(Runtime::CriO, ID, Some(UID))
        );
    }

    #[test]
    fn crio() {
        assert_eq!(
            from_cgroup_path(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope"
            )),
            info(Runtime::CriO, ID, Some(UID))
        );
        // cgroupfs manager, and CRI-O's per-container `container` child on newer versions.
        assert_eq!(
            from_cgroup_path(&format!("/kubepods/besteffort/pod{UID}/crio-{ID}")),
            info(Runtime::CriO, ID, Some(UID))
        );
        assert_eq!(
            from_cgroup_path(&format!(
                "/kubepods.slice/kubepods-pod{UID_}.slice/crio-{ID}.scope/container"
            )),
            info(Runtime::CriO, ID, Some(UID))
        );
    }

    #[test]
    fn conmon_is_not_the_container() {
        assert_eq!(
            from_cgroup_path(&format!(
                "/kubepods.slice/kubepods-pod{UID_}.slice/crio-conmon-{ID}.scope"
            )),
            None
        );
        assert_eq!(
            from_cgroup_path(&format!("/machine.slice/libpod-conmon-{ID}.scope")),
            None
        );
    }

    #[test]
    fn docker() {
        assert_eq!(
            from_proc_cgroup(&format!("0::/system.slice/docker-{ID}.scope\n")),
            info(Runtime::Docker, ID, None)
        );
        let v1 = format!("13:pids:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/\n");
        assert_eq!(from_proc_cgroup(&v1), info(Runtime::Docker, ID, None));
    }

    #[test]
    fn podman_rootful_and_rootless() {
        assert_eq!(
            from_cgroup_path(&format!("/machine.slice/libpod-{ID}.scope")),
            info(Runtime::Podman, ID, None)
        );
        assert_eq!(
            from_cgroup_path(&format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
            )),
            info(Runtime::Podman, ID, None)
        );
        assert_eq!(
            from_cgroup_path(&format!("/libpod_parent/libpod-{ID}")),
            info(Runtime::Podman, ID, None)
        );
    }

    #[test]
    fn unknown_runtime_scope() {
        assert_eq!(
            from_cgroup_path(&format!("/system.slice/nerdctl-{ID}.scope")),
            info(Runtime::SystemdUnknown, ID, None)
        );
        assert_eq!(
            from_cgroup_path(&format!(
                "/kubepods.slice/kubepods-pod{UID_}.slice/somert-{ID}.scope"
            )),
            info(Runtime::SystemdUnknown, ID, Some(UID))
        );
    }

    #[test]
    fn nested_reports_innermost() {
        // kind: a node container (docker) running kubelet pods (containerd).
        let path = format!(
            "/system.slice/docker-{ID2}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
        );
        let got = from_cgroup_path(&path).unwrap();
        assert_eq!(got.runtime, Runtime::Containerd);
        assert_eq!(got.container_id, ID);
        // kind's kubelet runs with --cgroup-root=/kubelet: its slices are kubelet-kubepods-*.
        assert_eq!(got.pod_uid.as_deref(), Some(UID));
        let dind = format!("/docker/{ID2}/docker/{ID}");
        assert_eq!(from_cgroup_path(&dind), info(Runtime::Docker, ID, None));
    }

    #[test]
    fn seen_from_a_cgroup_namespace() {
        // A containerised agent with its own cgroup namespace sees other pods' paths relative
        // to its own cgroup.
        let file = format!(
            "0::/../../kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(
            from_proc_cgroup(&file),
            info(Runtime::Containerd, ID, Some(UID))
        );
    }

    #[test]
    fn static_pod_uid_is_a_hash() {
        let hash = "3b1c5e0c8d8a4f2e9e8c1e2a7f0d6b41";
        assert_eq!(
            from_cgroup_path(&format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{hash}.slice/cri-containerd-{ID}.scope"
            )),
            info(Runtime::Containerd, ID, Some(hash))
        );
    }

    #[test]
    fn v2_line_wins_on_hybrid_hosts() {
        let file = format!(
            "1:name=systemd:/system.slice/docker-{ID2}.scope\n0::/system.slice/docker-{ID}.scope\n"
        );
        assert_eq!(from_proc_cgroup(&file), info(Runtime::Docker, ID, None));
        // v2 says nothing (e.g. not mounted): the v1 line still answers.
        let file = format!("1:name=systemd:/system.slice/docker-{ID2}.scope\n0::/\n");
        assert_eq!(from_proc_cgroup(&file), info(Runtime::Docker, ID2, None));
    }

    #[test]
    fn host_processes_and_near_misses_are_not_containers() {
        for path in [
            "/",
            "/init.scope",
            "/system.slice/ssh.service",
            "/user.slice/user-0.slice/session-3.scope",
            "/kubepods.slice/kubepods-burstable.slice",
            // Pod-level cgroup (the pause/sandbox accounting), no container below it.
            &format!("/kubepods/burstable/pod{UID}"),
            // Wrong length, upper case, non-hex.
            &format!("/system.slice/docker-{}.scope", &ID[..63]),
            &format!("/system.slice/docker-{}.scope", ID.to_uppercase()),
            &format!("/system.slice/docker-{}g.scope", &ID[..63]),
            // A bare id needs a parent that says whose it is.
            &format!("/somewhere/{ID}"),
        ] {
            assert_eq!(from_cgroup_path(path), None, "{path}");
        }
        assert_eq!(from_proc_cgroup(""), None);
        assert_eq!(from_proc_cgroup("garbage without colons\n"), None);
    }

    #[test]
    fn malformed_pod_segment_gives_no_uid() {
        assert_eq!(
            from_cgroup_path(&format!(
                "/kubepods.slice/kubepods-podnotauid.slice/cri-containerd-{ID}.scope"
            )),
            info(Runtime::Containerd, ID, None)
        );
    }

    #[test]
    fn a_path_may_contain_colons() {
        let file = format!("0::/system.slice/a:b.slice/docker-{ID}.scope\n");
        assert_eq!(from_proc_cgroup(&file), info(Runtime::Docker, ID, None));
    }

    #[test]
    fn read_for_pid_reads_the_file_and_reports_a_missing_process() {
        let dir = std::env::temp_dir().join(format!("lineage-container-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("42")).unwrap();
        std::fs::write(
            dir.join("42/cgroup"),
            format!("0::/system.slice/docker-{ID}.scope\n"),
        )
        .unwrap();
        assert_eq!(
            read_for_pid(&dir, 42).unwrap(),
            info(Runtime::Docker, ID, None)
        );
        let err = read_for_pid(&dir, 43).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
        // This test process itself: a host process or a container, but always readable.
        assert!(read_for_pid(Path::new("/proc"), std::process::id()).is_ok());
    }

    #[test]
    fn runtime_names_are_stable() {
        let names: Vec<_> = [
            Runtime::Containerd,
            Runtime::CriO,
            Runtime::Docker,
            Runtime::Podman,
            Runtime::SystemdUnknown,
        ]
        .iter()
        .map(|r| r.to_string())
        .collect();
        assert_eq!(
            names,
            ["containerd", "cri-o", "docker", "podman", "systemd-unknown"]
        );
    }
}

//! Container identity end to end: a process in a cgroup named like a containerd container (in
//! a kubepods pod slice) gets that container id and pod uid on its events.

use std::{path::PathBuf, process::Command, time::Duration};

use lineage_tests::Agent;

/// cgroups removed (children first) even when the test fails.
struct Cgroups(Vec<PathBuf>);

impl Drop for Cgroups {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[test]
fn events_of_a_process_in_a_containerd_cgroup_carry_its_container_and_pod() {
    let root = PathBuf::from("/sys/fs/cgroup/unified");
    assert!(
        root.join("cgroup.procs").exists(),
        "cgroup2 is not mounted at {} (mount -t cgroup2 none {0:?})",
        root.display()
    );
    let id = format!("{:0>64}", format!("{:x}feed", std::process::id()));
    let pod_uid = "7c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
    let base = root.join(format!("lineage-e2e-{}.slice", std::process::id()));
    let pod = base.join(format!(
        "kubepods-besteffort-pod{}.slice",
        pod_uid.replace('-', "_")
    ));
    let scope = pod.join(format!("cri-containerd-{id}.scope"));
    let cgroups = Cgroups(vec![base, pod, scope.clone()]);
    for dir in &cgroups.0 {
        std::fs::create_dir(dir)
            .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", dir.display()));
    }

    let agent = Agent::start(&[]);
    // The shell moves itself into the container's cgroup, then execs: the exec and everything
    // after it happen inside.
    let procs = scope.join("cgroup.procs");
    let script = format!("echo $$ > {}; exec /bin/sleep 0.3", procs.display());
    let status = Command::new("sh").args(["-c", &script]).status().unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(200));
    let run = agent.stop();
    drop(cgroups);

    let exec = run
        .of_kind("exec")
        .find(|e| e["binary"] == "/usr/bin/sleep" || e["binary"] == "/bin/sleep")
        .expect("the exec of sleep inside the container cgroup");
    assert_eq!(exec["container"]["id"], id.as_str(), "{exec}");
    assert_eq!(exec["container"]["runtime"], "containerd");
    assert_eq!(exec["container"]["pod_uid"], pod_uid);
    let exit = run
        .of_kind("exit")
        .find(|e| e["exec_id"] == exec["exec_id"] && e["process"] == true)
        .expect("its exit");
    assert_eq!(
        exit["container"]["id"],
        id.as_str(),
        "later events of the image carry it too"
    );
}

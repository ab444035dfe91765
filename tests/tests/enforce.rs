//! Enforcement end to end (issue 14): the liveness deadline kills execs and refuses connects
//! while the agent is frozen, deny rules stop their targets, dry-run stops nothing, and every
//! decision is an ENFORCEMENT entry on a chain that verifies.
//!
//! Enforcement is scoped to a cgroup each test creates, so nothing else on this shared
//! machine (the harness, other helpers' builds) is ever subject to it.

use std::{
    ffi::CString,
    net::TcpListener,
    os::unix::{fs::PermissionsExt, process::CommandExt, process::ExitStatusExt},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use lineage_tests::{chain_entries, verify, Agent};
use serde_json::Value;

const CGROUP_ROOT: &str = "/sys/fs/cgroup/unified";
const DEADLINE_MS: u64 = 1000;

/// A cgroup v2 directory for this test; emptied and removed on drop.
struct Scope {
    dir: PathBuf,
    procs: CString,
}

impl Scope {
    fn new(tag: &str) -> Scope {
        let dir =
            Path::new(CGROUP_ROOT).join(format!("lineage-enforce-{tag}-{}", std::process::id()));
        std::fs::create_dir(&dir).expect("creating the test cgroup");
        let procs = CString::new(dir.join("cgroup.procs").to_str().unwrap()).unwrap();
        Scope { dir, procs }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        // Every process the test put here has exited; removing the empty cgroup restores the host.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Moves the calling process into the cgroup; async-signal-safe (used between fork and exec).
fn enter(procs: &CString) -> std::io::Result<()> {
    // SAFETY: plain syscalls on a NUL-terminated path and a local buffer.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
        libc::close(fd);
        if ok {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

/// Runs `binary` inside the scope; its exit status.
fn run_in(scope: &Scope, binary: &Path) -> std::process::ExitStatus {
    let procs = scope.procs.clone();
    let mut cmd = Command::new(binary);
    // SAFETY: `enter` only makes async-signal-safe syscalls.
    unsafe { cmd.pre_exec(move || enter(&procs)) };
    cmd.status().expect("spawning the test binary")
}

/// Forks a child that joins the scope and connects to 127.0.0.1:`port` (no exec, so only the
/// connect is judged). Returns 0 on success or the connect's errno.
fn connect_in(scope: &Scope, port: u16) -> i32 {
    let procs = scope.procs.clone();
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: the child only makes async-signal-safe syscalls and exits with _exit.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            if enter(&procs).is_err() {
                libc::_exit(200);
            }
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            let r = libc::connect(
                fd,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            );
            let code = if r == 0 { 0 } else { *libc::__errno_location() };
            libc::_exit(code);
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        assert!(libc::WIFEXITED(status), "connect child died: {status:#x}");
        libc::WEXITSTATUS(status)
    }
}

/// Copies /bin/true to `dir/name/true` (the path rules match the filename as executed).
fn copy_true(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join("true");
    std::fs::copy("/usr/bin/true", &p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

struct Setup {
    _dir: tempfile::TempDir,
    scope: Scope,
    config: PathBuf,
    plain: PathBuf,
    allowed: PathBuf,
    denied: PathBuf,
    open_port: u16,
    denied_port: u16,
    _listeners: (TcpListener, TcpListener),
}

fn setup(tag: &str, mode: &str) -> Setup {
    lineage_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let scope = Scope::new(tag);
    let plain = copy_true(dir.path(), "plain");
    let allowed = copy_true(dir.path(), "allowed");
    let denied = copy_true(dir.path(), "denied");
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let (open_port, denied_port) = (
        open.local_addr().unwrap().port(),
        closed.local_addr().unwrap().port(),
    );
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"[enforcement]
mode = "{mode}"
heartbeat_deadline_ms = {DEADLINE_MS}
scope_cgroups = ["{scope}"]
allow_paths = ["{allowed}/"]

[[enforcement.deny_exec]]
id = 101
path_prefix = "{denied}/"

[[enforcement.deny_connect]]
id = 201
cidr = "127.0.0.1/32"
port = {denied_port}
"#,
            scope = scope.dir.display(),
            allowed = allowed.parent().unwrap().display(),
            denied = denied.parent().unwrap().display(),
        ),
    )
    .unwrap();
    Setup {
        _dir: dir,
        scope,
        config,
        plain,
        allowed,
        denied,
        open_port,
        denied_port,
        _listeners: (open, closed),
    }
}

fn enforcement(entries: &[Value], form: &str) -> Vec<Value> {
    entries
        .iter()
        .filter(|e| e["kind"] == "ENFORCEMENT" && e["form"] == form)
        .map(|e| serde_json::from_str(e["json"].as_str().expect("json text")).expect("JSON body"))
        .collect()
}

fn killed(status: std::process::ExitStatus) -> bool {
    status.signal() == Some(libc::SIGKILL)
}

fn stop_and_check(agent: Agent) -> Vec<Value> {
    let data = agent.data_dir.clone();
    let _run = agent.stop();
    let (code, report) = verify(&data);
    assert_eq!(code, 0, "the chain verifies: {report}");
    chain_entries(&data)
}

#[test]
fn frozen_agent_denies_execs_and_connects_in_scope_until_it_resumes() {
    let s = setup("frozen", "enforce");
    let agent = Agent::start(&["--config", s.config.to_str().unwrap()]);
    assert!(
        run_in(&s.scope, &s.plain).success(),
        "healthy: the exec runs"
    );
    assert_eq!(
        connect_in(&s.scope, s.open_port),
        0,
        "healthy: the connect works"
    );

    agent.signal(libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(DEADLINE_MS + 800));
    let status = run_in(&s.scope, &s.plain);
    let refused = connect_in(&s.scope, s.open_port);
    let allowed = run_in(&s.scope, &s.allowed);
    // Outside the scope nothing changes (this test process itself runs execs freely).
    let outside = Command::new(&s.plain).status().unwrap();
    agent.signal(libc::SIGCONT);

    assert!(
        killed(status),
        "frozen: the exec is killed by SIGKILL, got {status:?}"
    );
    assert_eq!(
        refused,
        libc::EPERM,
        "frozen: the connect is refused with EPERM"
    );
    assert!(
        allowed.success(),
        "an allowlisted binary still runs: {allowed:?}"
    );
    assert!(outside.success(), "out of scope: not subject");

    // Back to healthy within the deadline.
    let t = Instant::now();
    let mut ok = false;
    while t.elapsed() < Duration::from_millis(DEADLINE_MS) {
        std::thread::sleep(Duration::from_millis(100));
        if run_in(&s.scope, &s.plain).success() && connect_in(&s.scope, s.open_port) == 0 {
            ok = true;
            break;
        }
    }
    assert!(ok, "after SIGCONT execs and connects work again");

    let entries = stop_and_check(agent);
    let mode = enforcement(&entries, "mode");
    assert_eq!(mode[0]["mode"], "enforce", "{mode:?}");
    assert_eq!(enforcement(&entries, "policy").len(), 1);
    let decisions = enforcement(&entries, "decision");
    let plain = s.plain.to_str().unwrap();
    assert!(
        decisions.iter().any(|d| d["action"] == "deny"
            && d["reason"] == "heartbeat"
            && d["target"] == "exec"
            && d["filename"] == plain),
        "the killed exec is on the chain: {decisions:#?}"
    );
    assert!(
        decisions.iter().any(|d| d["action"] == "deny"
            && d["reason"] == "heartbeat"
            && d["target"] == "connect"
            && d["port"] == s.open_port),
        "the refused connect is on the chain: {decisions:#?}"
    );
    assert!(
        !decisions
            .iter()
            .any(|d| d["filename"] == s.allowed.to_str().unwrap()),
        "the allowlisted exec was not denied"
    );
    let summary = enforcement(&entries, "summary");
    let last = summary.last().expect("a SUMMARY entry");
    assert!(
        last["decisions"]["heartbeat"].as_u64().unwrap() >= 2,
        "{last}"
    );
}

#[test]
fn deny_rules_stop_their_targets_with_the_rule_id_on_the_chain() {
    let s = setup("rules", "enforce");
    let agent = Agent::start(&["--config", s.config.to_str().unwrap()]);
    let status = run_in(&s.scope, &s.denied);
    let refused = connect_in(&s.scope, s.denied_port);
    let fine = run_in(&s.scope, &s.plain);
    let open = connect_in(&s.scope, s.open_port);
    assert!(killed(status), "deny_exec 101 kills the exec: {status:?}");
    assert_eq!(refused, libc::EPERM, "deny_connect 201 refuses the connect");
    assert!(fine.success(), "other binaries run");
    assert_eq!(open, 0, "other ports connect");

    let decisions = enforcement(&stop_and_check(agent), "decision");
    assert!(
        decisions.iter().any(|d| d["action"] == "deny"
            && d["reason"] == "rule"
            && d["rule_id"] == 101
            && d["filename"] == s.denied.to_str().unwrap()),
        "{decisions:#?}"
    );
    assert!(
        decisions
            .iter()
            .any(|d| d["action"] == "deny" && d["rule_id"] == 201 && d["port"] == s.denied_port),
        "{decisions:#?}"
    );
}

#[test]
fn dry_run_records_the_same_decisions_and_stops_nothing() {
    let s = setup("dryrun", "enforce");
    // The flag overrides the file's mode.
    let agent = Agent::start(&["--config", s.config.to_str().unwrap(), "--mode", "dry-run"]);
    let status = run_in(&s.scope, &s.denied);
    let connect = connect_in(&s.scope, s.denied_port);
    assert!(
        status.success(),
        "dry-run: the denied binary runs: {status:?}"
    );
    assert_eq!(connect, 0, "dry-run: the denied connect works");

    let entries = stop_and_check(agent);
    assert_eq!(enforcement(&entries, "mode")[0]["mode"], "dry-run");
    let decisions = enforcement(&entries, "decision");
    assert!(
        decisions
            .iter()
            .any(|d| d["action"] == "would-deny" && d["rule_id"] == 101),
        "{decisions:#?}"
    );
    assert!(
        decisions
            .iter()
            .any(|d| d["action"] == "would-deny" && d["rule_id"] == 201),
        "{decisions:#?}"
    );
    assert!(!decisions.iter().any(|d| d["action"] == "deny"));
}

//! Shared harness for the kernel tests: start the real agent binary, collect its JSON events,
//! stop it with a signal.
//!
//! These tests load real eBPF programs, so they need root. They panic with a clear message
//! when a precondition is missing rather than skip: a kernel test that did not run must not
//! look like one that passed.

use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

pub mod nspawn;

use serde_json::Value;

pub fn agent_binary() -> PathBuf {
    let path = std::env::var_os("LINEAGE_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/lineage-agent")
        });
    assert!(
        path.exists(),
        "agent binary {} not found: run the kernel tests with `cargo xtask test`",
        path.display()
    );
    path
}

pub fn require_root() {
    // SAFETY: no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "kernel tests load eBPF programs and must run as root (`cargo xtask test`)"
    );
}

/// A running agent whose stdout (JSON lines) and stderr are collected in the background.
pub struct Agent {
    /// Its evidence data directory.
    pub data_dir: PathBuf,
    /// Keeps a test-owned data directory alive for the agent's lifetime.
    _owned_dir: Option<tempfile::TempDir>,
    child: Child,
    stdout: JoinHandle<Vec<Value>>,
    stderr: Arc<Mutex<String>>,
    stderr_thread: JoinHandle<()>,
}

impl Agent {
    /// Starts `lineage-agent run --print json <extra>` with a fresh data directory and no
    /// metrics endpoint (unless `extra` names one), and waits until it reports "capturing".
    pub fn start(extra: &[&str]) -> Agent {
        let dir = tempfile::tempdir().expect("temp data dir");
        let mut agent = Agent::start_in(dir.path(), extra);
        agent._owned_dir = Some(dir);
        agent
    }

    /// Like [`Agent::start`] with a data directory the caller owns (to restart on it).
    pub fn start_in(data_dir: &std::path::Path, extra: &[&str]) -> Agent {
        Agent::spawn(data_dir, extra, "capturing")
    }

    /// Starts the agent and waits for `ready` in its log.
    pub fn spawn(data_dir: &std::path::Path, extra: &[&str], ready: &str) -> Agent {
        require_root();
        let print: &[&str] = if extra.contains(&"--print") {
            &[]
        } else {
            &["--print", "json"]
        };
        let metrics: &[&str] = if extra.contains(&"--metrics-listen") {
            &[]
        } else {
            &["--metrics-listen", ""]
        };
        let mut child = Command::new(agent_binary())
            .arg("run")
            .args(print)
            .args(metrics)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--grpc-socket")
            .arg(data_dir.join("agent.sock"))
            .args(extra)
            .env("LINEAGE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning lineage-agent");
        let out = child.stdout.take().expect("stdout");
        let stdout = std::thread::spawn(move || {
            BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .map(|l| {
                    serde_json::from_str(&l)
                        .unwrap_or_else(|e| panic!("agent printed a non-JSON line {l:?}: {e}"))
                })
                .collect()
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        let stderr_thread = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let agent = Agent {
            data_dir: data_dir.into(),
            _owned_dir: None,
            child,
            stdout,
            stderr,
            stderr_thread,
        };
        agent.wait_for_log(ready, Duration::from_secs(30));
        agent
    }

    /// The agent's gRPC Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.data_dir.join("agent.sock")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "agent did not log {needle:?} within {timeout:?}; its log:\n{}",
            self.log()
        );
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill({sig}) failed");
    }

    /// SIGKILL: the agent dies without sealing or AGENT_STOP.
    pub fn kill(mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
        let _ = self.stdout.join();
        let _ = self.stderr_thread.join();
    }

    /// SIGTERM, then every event it printed. Panics if it did not exit cleanly.
    pub fn stop(mut self) -> Run {
        // Let the last submitted records be drained on the agent's poll interval.
        std::thread::sleep(Duration::from_millis(300));
        self.signal(libc::SIGTERM);
        let status = self.child.wait().expect("waiting for the agent");
        let events = self.stdout.join().expect("stdout reader");
        self.stderr_thread.join().expect("stderr reader");
        let log = self.stderr.lock().unwrap().clone();
        assert!(status.success(), "agent exited with {status}; log:\n{log}");
        Run {
            events,
            log,
            data_dir: self.data_dir.clone(),
            _owned_dir: self._owned_dir.take(),
        }
    }
}

/// Everything one agent run printed, and its data directory.
pub struct Run {
    pub events: Vec<Value>,
    pub log: String,
    pub data_dir: PathBuf,
    _owned_dir: Option<tempfile::TempDir>,
}

impl Run {
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events.iter().filter(move |e| e["kind"] == kind)
    }

    /// Exec events of a process (by tgid).
    pub fn execs_of(&self, tgid: u32) -> Vec<&Value> {
        self.of_kind("exec").filter(|e| e["tgid"] == tgid).collect()
    }

    /// Records of `kind` the kernel failed to reserve (declared loss), over all loss events.
    pub fn declared_loss(&self, kind: &str) -> u64 {
        self.of_kind("loss")
            .flat_map(|e| e["failures"].as_array().cloned().unwrap_or_default())
            .filter(|f| f[0] == kind)
            .map(|f| f[1].as_u64().unwrap_or(0))
            .sum()
    }

    pub fn unexplained_loss(&self) -> u64 {
        self.of_kind("loss")
            .map(|e| e["unexplained"].as_u64().unwrap_or(0))
            .sum()
    }

    pub fn argv(event: &Value) -> Vec<String> {
        event["argv"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Runs a command to completion and returns its pid.
pub fn run_to_end(cmd: &mut Command) -> u32 {
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

pub fn lineagectl_binary() -> PathBuf {
    let path = std::env::var_os("LINEAGECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/lineagectl")
        });
    assert!(
        path.exists(),
        "lineagectl binary {} not found: run the kernel tests with `cargo xtask test`",
        path.display()
    );
    path
}

/// `lineagectl verify <dir> --key <dir>/keys/agent.pub --json`: (exit code, report).
pub fn verify(data_dir: &std::path::Path) -> (i32, Value) {
    verify_with_key(data_dir, &data_dir.join("keys/agent.pub"))
}

/// `lineagectl verify <dir> --key <key> --json`: (exit code, report).
pub fn verify_with_key(dir: &std::path::Path, key: &std::path::Path) -> (i32, Value) {
    let out = Command::new(lineagectl_binary())
        .arg("verify")
        .arg(dir)
        .arg("--key")
        .arg(key)
        .arg("--json")
        .output()
        .expect("running lineagectl verify");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// Every entry on the chain, decoded by `lineagectl entries --json`.
/// How many events the FILTER count entries on a chain say rule `rule` suppressed.
pub fn filtered_by_rule(entries: &[Value], rule: u64) -> u64 {
    entries
        .iter()
        .filter(|e| e["kind"] == "FILTER" && e["form"] == "counts")
        .flat_map(|e| e["counts"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["rule_id"] == rule)
        .map(|c| c["suppressed"].as_u64().unwrap())
        .sum()
}

pub fn chain_entries(data_dir: &std::path::Path) -> Vec<Value> {
    let out = Command::new(lineagectl_binary())
        .arg("entries")
        .arg(data_dir)
        .arg("--json")
        .output()
        .expect("running lineagectl entries");
    assert!(
        out.status.success(),
        "lineagectl entries failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad entries line {l:?}: {e}")))
        .collect()
}

/// The events (schema 1 payloads) on the chain.
pub fn chain_events(entries: &[Value]) -> Vec<&Value> {
    entries
        .iter()
        .filter(|e| e["kind"] == "EVENT")
        .map(|e| &e["event"])
        .collect()
}

/// A throwaway CA, a server certificate for 127.0.0.1 and client certificates.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new(clients: &[&str]) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let sh = |script: &str| {
            let ok = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .current_dir(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "openssl failed: {script}");
        };
        let key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        sh(&format!("openssl req -x509 {key} -keyout ca.key -out ca.pem -days 1 -subj /CN=lineage-test-ca 2>/dev/null"));
        let mut leaves = vec![(
            "server",
            "agent",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth".to_string(),
        )];
        for c in clients {
            leaves.push((c, c, "extendedKeyUsage=clientAuth".to_string()));
        }
        for (name, cn, ext) in leaves {
            std::fs::write(dir.path().join(format!("{name}.ext")), ext).unwrap();
            sh(&format!(
                "openssl req {key} -keyout {name}.key -out {name}.csr -subj /CN={cn} 2>/dev/null && \
                 openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {name}.pem -days 1 -extfile {name}.ext 2>/dev/null"
            ));
        }
        Pki { dir }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).to_string_lossy().into_owned()
    }
}

/// A free loopback TCP port (bound and released; good enough for a test).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An agent config serving gRPC on loopback TCP with mutual TLS from `pki`.
pub fn tls_agent_config(pki: &Pki, port: u16, pull: &[&str], tail: &[&str]) -> PathBuf {
    let list = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let path = pki.dir.path().join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "[grpc]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = {:?}\ntls_key = {:?}\ntls_client_ca = {:?}\npull_clients = [{}]\ntail_clients = [{}]\n",
            pki.path("server.pem"),
            pki.path("server.key"),
            pki.path("ca.pem"),
            list(pull),
            list(tail)
        ),
    )
    .unwrap();
    path
}

/// How many hooks the agent attaches (`lineage-agent probes`), all of which attach here.
pub fn probe_count() -> usize {
    let out = Command::new(agent_binary())
        .arg("probes")
        .output()
        .expect("lineage-agent probes");
    assert!(out.status.success(), "lineage-agent probes failed");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// The collector binary under test (`LINEAGE_COLLECTOR`, else the release build).
pub fn collector_binary() -> PathBuf {
    let path = std::env::var_os("LINEAGE_COLLECTOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/lineage-collector")
        });
    assert!(
        path.exists(),
        "collector binary {} not found: build it with `cargo build --release -p lineage-collector` \
         or run the tests with `cargo xtask test`",
        path.display()
    );
    path
}

/// A running `lineage-collector run`, its log in a file.
pub struct Collector {
    child: Child,
    log: PathBuf,
    status: PathBuf,
}

impl Collector {
    /// Writes `config` to `dir/collector.toml` and starts `lineage-collector run` on it.
    pub fn start(dir: &Path, config: &str) -> Collector {
        let cfg = dir.join("collector.toml");
        fs::write(&cfg, config).unwrap();
        let runs = fs::read_dir(dir).unwrap().count();
        let log = dir.join(format!("collector-{runs}.log"));
        let child = Command::new(collector_binary())
            .args(["run", "--config"])
            .arg(&cfg)
            .env("LINEAGE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawning lineage-collector");
        Collector {
            child,
            log,
            status: dir.join("status.json"),
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The first agent's entry in the status file (null until written).
    pub fn agent_status(&self) -> Value {
        read_status(&self.status)
    }

    /// Polls `ok` until it holds; panics with the status and log after `timeout`.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        mut ok: impl FnMut(&Collector) -> bool,
    ) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if ok(self) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "collector exited ({st}) while waiting for {what}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "collector: no {what} within {timeout:?}; status {:#}; log:\n{}",
            self.agent_status(),
            self.log()
        );
    }

    /// SIGTERM; panics unless it exits cleanly. Returns the log and the final status.
    pub fn stop(mut self) -> (String, Value) {
        // SAFETY: signalling our own child.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0);
        let st = self.child.wait().unwrap();
        let log = self.log();
        assert!(st.success(), "collector exited with {st}; log:\n{log}");
        (log, read_status(&self.status))
    }
}

/// The first agent's entry in a status file (null until written).
pub fn read_status(path: &Path) -> Value {
    fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .map(|v| v["agents"][0].clone())
        .unwrap_or(Value::Null)
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Collector {
    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// The whole status file (null until written).
    pub fn status(&self) -> Value {
        fs::read(&self.status)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Generates Python stubs from proto/ into `dir`.
pub fn python_stubs(dir: &Path) {
    let ok = Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(repo_root().join("proto"))
        .arg(format!("--python_out={}", dir.display()))
        .arg(format!("--grpc_python_out={}", dir.display()))
        .arg("lineage/v1/agent.proto")
        .status()
        .expect("python3 is needed (cargo xtask setup installs grpcio-tools)")
        .success();
    assert!(
        ok,
        "grpc_tools.protoc failed: run `cargo xtask setup` to install grpcio-tools"
    );
}

/// Runs a Python script (with the stubs on its path) and parses the JSON it prints.
pub fn python(dir: &Path, script: &str, args: &[&str]) -> serde_json::Value {
    let path = dir.join("client.py");
    std::fs::write(&path, script).unwrap();
    let out = Command::new("python3")
        .arg(&path)
        .args(args)
        .env("PYTHONPATH", dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python client failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "client printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A tmpfs of its own (for disk-full tests), unmounted and removed when dropped.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(size: &str) -> Tmpfs {
        require_root();
        let dir = tempfile::tempdir().unwrap().keep();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs for a disk-full test failed");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// The metrics page at `127.0.0.1:port` as (name{labels}, value) pairs.
pub fn scrape_metrics(port: u16) -> Vec<(String, f64)> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with("lineage_"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

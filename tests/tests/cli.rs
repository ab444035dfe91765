//! `lineagectl` against a real agent: tail latency (the acceptance criterion: a new process
//! shows within one second), status, segments, and process trees from the agent and from its
//! data directory.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use lineage_tests::{lineagectl_binary, run_to_end, Agent};
use serde_json::Value;

/// A name no other process on the host has.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn ctl(args: &[&str], sock: &Path) -> Output {
    let out = Command::new(lineagectl_binary())
        .args(args)
        .arg("--agent")
        .arg(sock)
        .output()
        .expect("running lineagectl");
    assert!(
        out.status.success(),
        "lineagectl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// A running `lineagectl tail`, its stdout lines delivered with their arrival time.
struct Tail {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
}

impl Tail {
    /// Starts the tail and returns once it says it is subscribed.
    fn start(sock: &Path, extra: &[&str]) -> Tail {
        let mut child = Command::new(lineagectl_binary())
            .arg("tail")
            .arg("--agent")
            .arg(sock)
            .args(extra)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning lineagectl tail");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), l)).is_err() {
                    return;
                }
            }
        });
        let (ready_tx, ready) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[tail] {l}");
                if l.contains("tailing") {
                    let _ = ready_tx.send(());
                }
            }
        });
        ready
            .recv_timeout(Duration::from_secs(10))
            .expect("lineagectl tail did not report it was subscribed within 10 s");
        Tail { child, lines }
    }

    /// The first line satisfying `pred` before `deadline`.
    fn wait_for(
        &self,
        deadline: Instant,
        pred: impl Fn(&str) -> bool,
    ) -> Option<(Instant, String)> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((t, l)) if pred(&l) => return Some((t, l)),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A copy of `sleep` under a unique name, so its exec event is unmistakable.
fn probe_binary(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::copy("/bin/sleep", &path).expect("copying /bin/sleep");
    path
}

#[test]
fn tail_shows_a_new_process_within_one_second() {
    let agent = Agent::start(&["--print", "none"]);
    let tail = Tail::start(&agent.socket(), &["--json"]);
    let tmp = tempfile::tempdir().unwrap();
    let name = unique("lineage-tail-probe");
    let probe = probe_binary(tmp.path(), &name);

    let spawned = Instant::now();
    let mut child = Command::new(&probe).arg("0.2").spawn().unwrap();
    let pid = child.id();
    let seen = tail.wait_for(spawned + Duration::from_secs(5), |l| {
        let v: Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("tail --json printed a non-JSON line {l:?}: {e}"));
        v["kind"] == "exec" && v["tgid"] == pid
    });
    child.wait().unwrap();
    let (at, line) = seen.unwrap_or_else(|| {
        panic!(
            "no exec event for {name} (pid {pid}) within 5 s; agent log:\n{}",
            agent.log()
        )
    });
    let latency = at.duration_since(spawned);
    println!("tail latency: {} ms (spawn to line)", latency.as_millis());
    let v: Value = serde_json::from_str(&line).unwrap();
    assert!(
        v["binary"].as_str().unwrap_or_default().ends_with(&name),
        "{line}"
    );
    assert!(
        latency < Duration::from_secs(1),
        "the exec of {name} reached `lineagectl tail` after {latency:?}, not within one second"
    );
    drop(tail);
    agent.stop();
}

#[test]
fn tail_human_line_shows_the_chain_and_honours_filters() {
    let agent = Agent::start(&["--print", "none"]);
    let tmp = tempfile::tempdir().unwrap();
    let name = unique("lineage-chain-probe");
    let probe = probe_binary(tmp.path(), &name);
    let tail = Tail::start(
        &agent.socket(),
        &["--kind", "exec", "--binary", &name, "--count", "1"],
    );
    let shell =
        run_to_end(Command::new("sh").args(["-c", &format!("{} 0.05; true", probe.display())]));
    let (_, line) = tail
        .wait_for(Instant::now() + Duration::from_secs(5), |_| true)
        .unwrap_or_else(|| panic!("no line for {name}; agent log:\n{}", agent.log()));
    println!("tail line: {line}");
    assert!(!line.contains('\x1b'), "no colour into a pipe: {line:?}");
    assert!(
        line.contains(&format!("sh({shell}) → ")),
        "the chain names the parent shell: {line}"
    );
    assert!(line.contains(" exec "), "{line}");
    assert!(
        line.contains(&format!("{} 0.05", probe.display())),
        "{line}"
    );
    // --count 1: the tail exits by itself.
    let mut tail = tail;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = tail.child.try_wait().unwrap() {
            assert!(status.success(), "tail --count 1 exited with {status}");
            break;
        }
        assert!(Instant::now() < deadline, "tail --count 1 did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    agent.stop();
}

#[test]
fn tail_names_a_missing_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("absent.sock");
    let out = Command::new(lineagectl_binary())
        .args(["tail", "--agent"])
        .arg(&sock)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(&sock.display().to_string()), "{err}");
}

#[test]
fn status_shows_every_probe_attached() {
    let agent = Agent::start(&["--print", "none"]);
    let v = json_of(&ctl(&["status", "--json"], &agent.socket()));
    let probes = v["probes"].as_array().expect("probes");
    assert!(!probes.is_empty());
    for p in probes {
        assert_eq!(p["attached"], true, "probe not attached: {p}");
    }
    assert_eq!(v["host_id"].as_str().map(str::len), Some(32));
    let text = String::from_utf8(ctl(&["status"], &agent.socket()).stdout).unwrap();
    println!("{text}");
    let n = probes.len();
    assert!(
        text.contains(&format!("probes:      {n} of {n} attached")),
        "{text}"
    );
    agent.stop();
}

#[test]
fn segments_lists_sealed_segments() {
    let config = std::env::temp_dir().join(format!("lineage-cli-seal-{}.toml", std::process::id()));
    std::fs::write(&config, "[evidence]\nseal_interval_ms = 200\n").unwrap();
    let agent = Agent::start(&["--print", "none", "--config", config.to_str().unwrap()]);
    let sock = agent.socket();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        run_to_end(&mut Command::new("/bin/true"));
        let v = json_of(&ctl(&["status", "--json"], &sock));
        if !v["last_segment"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "no segment sealed within 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = ctl(&["segments", "--json"], &sock);
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!rows.is_empty(), "segments lists nothing after a seal");
    assert!(rows[0]["entry_count"].as_u64().unwrap() > 0);
    assert_eq!(rows[0]["header_digest"].as_str().map(str::len), Some(64));
    let text = String::from_utf8(ctl(&["segments"], &sock).stdout).unwrap();
    println!("{text}");
    assert!(text.starts_with(" SEGMENT"), "{text}");
    assert!(text.lines().count() > 1, "{text}");
    agent.stop();
    let _ = std::fs::remove_file(config);
}

/// The exec events of `sh -c 'sh -c "/bin/echo x"'`: (outer, inner, echo).
fn known_chain(tail: &Tail, outer: u32) -> (Value, Value, Value) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut o, mut i, mut e) = (None, None, None);
    while o.is_none() || i.is_none() || e.is_none() {
        let (_, l) = tail
            .wait_for(deadline, |_| true)
            .expect("the three execs of the known chain within 5 s");
        let v: Value = serde_json::from_str(&l).unwrap();
        let argv: Vec<&str> = v["argv"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if v["tgid"] == outer {
            o = Some(v);
        } else if argv == ["sh", "-c", "/bin/echo x"] && v["ppid"] == outer {
            i = Some(v);
        } else if argv == ["/bin/echo", "x"]
            && i.as_ref().is_some_and(|i: &Value| v["ppid"] == i["tgid"])
        {
            e = Some(v);
        }
    }
    (o.unwrap(), i.unwrap(), e.unwrap())
}

/// A direct child of a JSON tree node with this exec id.
fn child<'a>(node: &'a Value, exec_id: &Value) -> &'a Value {
    node["children"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["exec_id"] == *exec_id))
        .unwrap_or_else(|| panic!("{exec_id} is not a child of {}", node["exec_id"]))
}

fn check_json_tree(v: &Value, outer: &Value, inner: &Value, echo: &Value) {
    assert_eq!(v["node"]["exec_id"], outer["exec_id"]);
    let inner_node = child(&v["node"], &inner["exec_id"]);
    assert_eq!(inner_node["argv"][2], "/bin/echo x");
    let echo_node = child(inner_node, &echo["exec_id"]);
    let echo_file = std::fs::canonicalize("/bin/echo").unwrap();
    assert_eq!(echo_node["binary"], echo_file.to_str().unwrap());
    assert_eq!(echo_node["state"], "exited");
    assert!(
        !v["ancestors"].as_array().unwrap().is_empty(),
        "the test process is an ancestor"
    );
}

/// Image lines nest: outer, then inner deeper, then echo deeper still.
fn check_text_tree(text: &str, outer: &Value, inner: &Value, echo: &Value) {
    let depth_of = |label: &str| {
        let (row, line) = text
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains(label))
            .unwrap_or_else(|| panic!("no line with {label}:\n{text}"));
        let depth = line.chars().take_while(|c| " │├└─".contains(*c)).count();
        (row, depth)
    };
    let o = depth_of(&format!("sh({}) ", outer["tgid"]));
    let i = depth_of(&format!("sh({}) ", inner["tgid"]));
    let e = depth_of(&format!("echo({}) ", echo["tgid"]));
    assert!(o.0 < i.0 && i.0 < e.0, "order outer, inner, echo:\n{text}");
    assert!(o.1 < i.1 && i.1 < e.1, "each nested deeper:\n{text}");
    assert!(
        text.contains("◀"),
        "the asked-about image is marked:\n{text}"
    );
    assert_eq!(
        text.matches(&format!("sh({}) ", inner["tgid"])).count(),
        1,
        "the inner sh's fork image is folded into its exec:\n{text}"
    );
}

#[test]
fn tree_from_the_agent_and_from_its_data_dir() {
    let agent = Agent::start(&["--print", "none"]);
    let sock = agent.socket();
    let tail = Tail::start(&sock, &["--json", "--kind", "exec"]);
    let outer = run_to_end(
        Command::new("sh")
            .args(["-c", "sh -c \"/bin/echo x\""])
            .stdout(Stdio::null()),
    );
    let (o, i, e) = known_chain(&tail, outer);
    drop(tail);
    let id = o["exec_id"].as_str().unwrap();

    // Exits reach the process table a poll after the execs.
    std::thread::sleep(Duration::from_millis(300));
    let live = json_of(&ctl(&["tree", id, "--json"], &sock));
    check_json_tree(&live, &o, &i, &e);
    let text = String::from_utf8(ctl(&["tree", id], &sock).stdout).unwrap();
    println!("tree from the agent:\n{text}");
    check_text_tree(&text, &o, &i, &e);

    let run = agent.stop();
    let store = |json: bool| {
        let mut c = Command::new(lineagectl_binary());
        c.args(["tree", id, "--store"]).arg(&run.data_dir);
        if json {
            c.arg("--json");
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "tree --store failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    check_json_tree(&json_of(&store(true)), &o, &i, &e);
    let text = String::from_utf8(store(false).stdout).unwrap();
    println!("tree from the data dir:\n{text}");
    check_text_tree(&text, &o, &i, &e);
}

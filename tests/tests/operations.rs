//! Operations by convention (issue 18), against the real binaries:
//! - the agent's and the collector's `/metrics` parse with prometheus_client's parser (an
//!   implementation independent of ours) with no duplicate series, every counter named
//!   `_total` and present at zero before anything happened; `/foo` is 404;
//! - the agent's `/healthz` fails while its data directory's filesystem is full and recovers
//!   when space is back (a tmpfs of our own, filled and emptied).

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use lineage_tests::{free_port, require_root, run_to_end, Agent, Collector, Tmpfs};
use serde_json::Value;

/// `GET path` on loopback: (status code, body).
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connecting to 127.0.0.1:{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

fn checker() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/prom_check.py")
}

/// Runs the Python checker on `page`: (exit code, its JSON verdict).
fn prom_check(page: &str) -> (i32, Value) {
    let mut child = Command::new("python3")
        .arg(checker())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed (cargo xtask setup installs prometheus_client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'prometheus_client'"),
        "prometheus_client is missing: run `cargo xtask setup`"
    );
    let verdict = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("checker printed no JSON ({e}); stderr:\n{stderr}"));
    (out.status.code().unwrap_or(-1), verdict)
}

/// The page must parse and follow the conventions; returns the checker's verdict.
fn assert_conventions(page: &str) -> Value {
    let (code, verdict) = prom_check(page);
    assert_eq!(code, 0, "page breaks the conventions: {verdict:#}\n{page}");
    verdict
}

fn samples<'a>(verdict: &'a Value, name: &str) -> Vec<&'a Value> {
    verdict["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s[0] == name)
        .collect()
}

fn value(verdict: &Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(verdict, name)
        .into_iter()
        .find(|s| labels.iter().all(|(k, v)| s[1][k] == *v))
        .and_then(|s| s[2].as_f64())
}

#[test]
fn the_checker_fails_on_duplicates_and_counters_without_total() {
    // Without this the conventions test could pass on a checker that accepts anything.
    let (code, v) = prom_check("# TYPE a_total counter\na_total{x=\"1\"} 1\na_total{x=\"1\"} 2\n");
    assert_eq!(code, 1, "{v}");
    assert!(v["problems"][0]
        .as_str()
        .unwrap()
        .contains("duplicate series"));
    let (code, v) = prom_check("# TYPE probes counter\nprobes 1\n");
    assert_eq!(code, 1, "{v}");
    assert!(v["problems"][0].as_str().unwrap().contains("_total"));
    let (code, _) = prom_check("# TYPE a gauge\na{x=\"1\"} one\n");
    assert_eq!(code, 2, "malformed text must not parse");
}

#[test]
fn agent_metrics_follow_prometheus_conventions() {
    require_root();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let agent = Agent::start(&["--print", "none", "--metrics-listen", &addr]);
    run_to_end(&mut Command::new("/bin/true"));
    // Ready as soon as the agent says it is capturing (probes attached, recorder healthy).
    assert_eq!(get(port, "/readyz"), (200, "ok\n".into()));

    let (status, page) = get(port, "/metrics");
    assert_eq!(status, 200, "{page}");
    let v = assert_conventions(&page);
    let kinds = &v["families"];

    // One series per hook, labelled by program and hook (the issue saw one label repeated
    // 15 times); every hook the agent reports is there once.
    let probes = samples(&v, "lineage_probe_attached");
    assert_eq!(
        probes.len(),
        lineage_tests::probe_count(),
        "one series per hook"
    );
    for p in &probes {
        assert!(
            p[1]["program"].is_string() && p[1]["hook"].is_string(),
            "{p}"
        );
    }
    assert_eq!(
        value(
            &v,
            "lineage_probe_attached",
            &[
                ("program", "sys_exit_file"),
                ("hook", "tracepoint/syscalls/sys_exit_openat")
            ]
        ),
        Some(1.0)
    );

    // Failure counters exist before the first failure.
    for (name, labels) in [
        ("lineage_decode_errors_total", vec![("reason", "short")]),
        (
            "lineage_ringbuf_reservation_failures_total",
            vec![("kind", "exec")],
        ),
        (
            "lineage_loss_records_total",
            vec![("reason", "unexplained")],
        ),
        (
            "lineage_retention_deleted_segments_total",
            vec![("reason", "hard_cap")],
        ),
    ] {
        assert_eq!(value(&v, name, &labels), Some(0.0), "{name}{labels:?}");
    }
    assert!(!samples(&v, "lineage_filter_suppressed_total").is_empty());
    assert_eq!(kinds["lineage_seal_duration_seconds"], "histogram");
    assert_eq!(kinds["lineage_build_info"], "gauge");
    for gauge in [
        "process_resident_memory_bytes",
        "lineage_data_dir_filesystem_avail_bytes",
        "lineage_unacknowledged_bytes",
    ] {
        assert_eq!(kinds[gauge], "gauge", "{gauge} missing");
    }
    assert!(value(&v, "process_resident_memory_bytes", &[]).unwrap() > 0.0);
    assert_eq!(kinds["process_cpu_seconds"], "counter");

    assert_eq!(get(port, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(port, "/readyz"), (200, "ok\n".into()));
    for path in ["/foo", "/", "/metrics/x"] {
        assert_eq!(get(port, path).0, 404, "{path}");
    }
    agent.stop();
}

/// Writes zeros into `path` until the filesystem refuses (ENOSPC).
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 << 10];
    loop {
        if let Err(e) = f.write_all(&block) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling: {e}");
            break;
        }
    }
    // Whatever is left below one block.
    while f.write_all(&[0u8; 512]).is_ok() {}
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what} within {timeout:?}");
}

#[test]
fn healthz_fails_while_the_data_disk_is_full_and_recovers() {
    require_root();
    let fs = Tmpfs::mount("64m");
    let data = fs.0.join("data");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let agent = Agent::start_in(&data, &["--print", "none", "--metrics-listen", &addr]);
    assert_eq!(get(port, "/healthz"), (200, "ok\n".into()));

    let filler = fs.0.join("filler");
    fill(&filler);
    // Events to seal: a segment that cannot be written makes the recorder refuse entries.
    let mut last = (0, String::new());
    wait_for(
        "healthz 503 on a full disk",
        Duration::from_secs(30),
        || {
            run_to_end(&mut Command::new("/bin/true"));
            last = get(port, "/healthz");
            last.0 == 503
        },
    );
    assert!(last.1.contains("disk full"), "healthz body: {}", last.1);
    assert_eq!(get(port, "/readyz").0, 503);
    let v = assert_conventions(&get(port, "/metrics").1);
    assert_eq!(value(&v, "lineage_storage_degraded", &[]), Some(1.0));

    std::fs::remove_file(&filler).unwrap();
    wait_for(
        "healthz 200 once space is back",
        Duration::from_secs(30),
        || get(port, "/healthz").0 == 200,
    );
    let log = agent.stop().log;
    assert!(
        log.contains("CANNOT WRITE SEALED SEGMENT"),
        "the agent never hit the full disk:\n{log}"
    );
}

#[test]
fn collector_metrics_follow_the_same_conventions() {
    require_root();
    let agent = Agent::start(&["--print", "none"]);
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "[collector]\nname = \"ops-collector\"\nkey_path = \"{}\"\nstatus_path = \"{}\"\n\
         metrics_listen = \"127.0.0.1:{port}\"\n\n[store]\nkind = \"fs\"\npath = \"{}\"\n\n\
         [[agents]]\nname = \"agent-1\"\nendpoint = \"unix://{}\"\n",
        work.path().join("witness.key").display(),
        work.path().join("status.json").display(),
        work.path().join("store").display(),
        agent.socket().display()
    );
    let mut collector = Collector::start(work.path(), &config);
    collector.wait_for("a stored segment", Duration::from_secs(30), |c| {
        c.agent_status()["segments_stored"].as_u64().unwrap_or(0) > 0
    });
    // The page is refreshed once a second.
    let mut v = Value::Null;
    wait_for(
        "stored segments in the collector's metrics",
        Duration::from_secs(10),
        || {
            let (status, page) = get(port, "/metrics");
            assert_eq!(status, 200, "{page}");
            v = assert_conventions(&page);
            value(
                &v,
                "lineage_collector_segments_stored_total",
                &[("agent", "agent-1")],
            )
            .is_some_and(|n| n > 0.0)
        },
    );
    assert!(
        value(
            &v,
            "lineage_collector_bytes_stored_total",
            &[("agent", "agent-1")]
        )
        .unwrap()
            > 0.0
    );
    for kind in ["MODIFIED", "FORK", "HOST_CONFLICT", "ROLLBACK"] {
        assert_eq!(
            value(
                &v,
                "lineage_collector_findings_total",
                &[("agent", "agent-1"), ("kind", kind)]
            ),
            Some(0.0),
            "{kind}"
        );
    }
    assert_eq!(
        value(
            &v,
            "lineage_collector_agent_connected",
            &[("agent", "agent-1")]
        ),
        Some(1.0)
    );
    assert!(value(
        &v,
        "lineage_collector_agent_lag_seconds",
        &[("agent", "agent-1")]
    )
    .is_some());
    assert_eq!(get(port, "/healthz"), (200, "ok\n".into()));
    assert_eq!(get(port, "/readyz"), (200, "ok\n".into()));
    assert_eq!(get(port, "/foo").0, 404);
    collector.stop();
    agent.stop();

    // Plain HTTP off loopback is refused at start, naming the key.
    let bad = config.replace(&format!("127.0.0.1:{port}"), &format!("0.0.0.0:{port}"));
    let path = work.path().join("bad.toml");
    std::fs::write(&path, bad).unwrap();
    let out = Command::new(lineage_tests::collector_binary())
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a non-loopback metrics address was accepted"
    );
    assert!(
        err.contains("collector.metrics_listen") && err.contains("loopback"),
        "{err}"
    );
}

#[test]
fn an_invalid_lineage_log_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(lineage_tests::agent_binary())
        .args(["run", "--metrics-listen", "", "--data-dir"])
        .arg(dir.path())
        .env("LINEAGE_LOG", "verbose")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "agent: {err}");
    assert!(
        err.contains("LINEAGE_LOG=\"verbose\"") && err.contains("not a log level"),
        "{err}"
    );
    // Nothing was started: the data directory is untouched.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let cfg = dir.path().join("collector.toml");
    std::fs::write(&cfg, "[collector]\nname = \"c\"\nkey_path = \"/nonexistent/k\"\n[store]\nkind = \"fs\"\npath = \"/nonexistent/s\"\n[[agents]]\nname = \"a\"\nendpoint = \"unix:///nonexistent.sock\"\n").unwrap();
    let out = Command::new(lineage_tests::collector_binary())
        .args(["run", "--config"])
        .arg(&cfg)
        .env("LINEAGE_LOG", "info,lineage_collector=debugg")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "collector accepted an invalid LINEAGE_LOG"
    );
    assert!(err.contains("\"debugg\" is not a log level"), "{err}");
}

#[test]
fn an_out_of_range_config_value_is_refused_naming_key_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("agent.toml");
    for (toml, message) in [
        (
            "[evidence]\nheartbeat_interval_ms = 0\n",
            "config value evidence.heartbeat_interval_ms = 0 is out of range: must be 100 to 3600000 milliseconds",
        ),
        (
            "[evidence]\nseal_interval_ms = 0\n",
            "config value evidence.seal_interval_ms = 0 is out of range: must be 100 to 3600000 milliseconds",
        ),
        (
            "[capture]\nloss_grace_ms = 86400000\n",
            "config value capture.loss_grace_ms = 86400000 is out of range: must be 10 to 60000 milliseconds",
        ),
    ] {
        std::fs::write(&cfg, toml).unwrap();
        let data = dir.path().join("data");
        let data = data.to_str().unwrap();
        let cfg = cfg.to_str().unwrap();
        for args in [
            &["run", "--metrics-listen", "", "--data-dir", data, "--config", cfg][..],
            &["config", "check", "--config", cfg][..],
        ] {
            let out = Command::new(lineage_tests::agent_binary())
                .args(args)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(78), "{args:?} {toml}: {err}");
            assert!(err.contains(message), "{args:?}: {err}");
        }
    }
    assert!(
        !dir.path().join("data").exists(),
        "refused before touching anything"
    );
}

#[test]
fn logs_are_json_lines_or_plain_text_and_say_probes_once() {
    require_root();
    let agent = Agent::start(&["--print", "none", "--log-format", "json"]);
    let log = agent.stop().log;
    let mut messages = Vec::new();
    for line in log.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line:?}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        messages.push(v["message"].as_str().unwrap_or_default().to_owned());
    }
    assert!(messages.iter().any(|m| m == "capturing"), "{log}");

    // Text on a pipe: no colour escapes, one summary line for the probes at info.
    let agent = Agent::start(&["--print", "none"]);
    let log = agent.stop().log;
    assert!(
        !log.contains('\x1b'),
        "colour escapes on a non-terminal stderr:\n{log}"
    );
    let summaries = log
        .lines()
        .filter(|l| l.contains("probes attached"))
        .count();
    assert_eq!(summaries, 1, "{log}");
    assert!(
        !log.contains("probe attached"),
        "per-probe lines at info:\n{log}"
    );
    assert!(
        !log.contains("RecoveredAfterCrash") && !log.contains("FirstStart"),
        "{log}"
    );
}

/// Runs the agent for a second on a pseudo-terminal (`script`) and returns what it wrote.
fn agent_on_a_terminal(no_color: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cmd = format!(
        "{} run --print none --metrics-listen '' --grpc-socket '' --data-dir {} --duration-secs 1",
        lineage_tests::agent_binary().display(),
        dir.path().join("data").display()
    );
    let mut script = Command::new("script");
    script
        .args(["-qec", &cmd, "/dev/null"])
        .env("LINEAGE_LOG", "info");
    if no_color {
        script.env("NO_COLOR", "1");
    } else {
        script.env_remove("NO_COLOR");
    }
    let out = script
        .output()
        .expect("script (util-linux) runs the agent on a pseudo-terminal");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && text.contains("capturing"), "{text}");
    text
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    require_root();
    assert!(
        agent_on_a_terminal(false).contains("\x1b["),
        "no colour on a terminal"
    );
    assert!(
        !agent_on_a_terminal(true).contains("\x1b["),
        "colour despite NO_COLOR"
    );
}

//! Issue 11's API acceptance, played by a third party: a Python client generated from `proto/`
//! alone (grpcio, default channel options) against the real agent.
//!
//! - it pulls every segment of a log with 16 MiB segments, byte for byte (chunked pull);
//! - a `kinds=[exec]` Tail client gets every one of 100 marker execs during an unpaced openat
//!   storm, with `missed` 0 (filters act before the client's queue);
//! - capture loss during an openat storm is measured without and with API abuse (ListSegments
//!   over a ≥ 1 GiB log, GetLineage in a loop, 20 Tail streams, one client that never reads),
//!   and the agent's RSS with the 20 streams is measured against idle;
//! - every bad input gets its documented status (docs/API.md) and the agent keeps capturing;
//! - a metrics port held by someone else is a warning, not an exit.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use lineage_evidence::{
    chain::ChainWriter,
    digest::{Digest, HostId},
    sealkeys::{SealKeyError, SealKeys},
    segment::SegmentHeader,
    store::SegmentStore,
};
use lineage_tests::{
    free_port, python_stubs, repo_root, run_to_end, scrape_metrics as scrape, Agent,
};
use serde_json::Value;

/// Stubs plus the client script, ready to run.
struct Client {
    dir: tempfile::TempDir,
}

impl Client {
    fn new() -> Client {
        let dir = tempfile::tempdir().unwrap();
        python_stubs(dir.path());
        Client { dir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("python3");
        c.arg(repo_root().join("tests/py/api_load.py"))
            .args(args)
            .env("PYTHONPATH", self.dir.path());
        c
    }

    fn run(&self, args: &[&str]) -> Value {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "python client {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "client printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn a_default_python_client_pulls_16_mib_segments_byte_exact() {
    let client = Client::new();
    let tmp = tempfile::tempdir().unwrap();
    // Segments close at 16 MiB (the default) and not by time, so they reach full size.
    let config = config_file(
        tmp.path(),
        "[evidence]\nseal_interval_ms = 600000\nseal_max_entries = 10000000\n",
    );
    let agent = Agent::start(&["--print", "none", "--config", config.to_str().unwrap()]);
    // ~120k opens at ~350 bytes each on the chain: at least two full segments.
    client.run(&["storm", "120000"]);
    let segments = |a: &Agent| {
        SegmentStore::open(&a.data_dir)
            .unwrap()
            .list()
            .unwrap()
            .segments
    };
    let start = Instant::now();
    while segments(&agent).len() < 3 && start.elapsed() < Duration::from_secs(60) {
        client.run(&["storm", "20000"]);
    }
    // Sealed before the pull starts, so every one of them is in the pull.
    let listing = segments(&agent);
    let got = client.run(&["pull", agent.socket().to_str().unwrap()]);
    let _run = agent.stop(); // owns the data directory
    let mut full = 0;
    for (n, path) in &listing {
        let want_size = std::fs::metadata(path).unwrap().len();
        let seg = &got["segments"][n.to_string()];
        assert_eq!(seg["size"], want_size, "segment {n} size");
        assert_eq!(
            seg["sha256"].as_str().unwrap(),
            sha256_hex(path),
            "segment {n} is the stored file, byte for byte"
        );
        if want_size >= 16 << 20 {
            full += 1;
        }
    }
    assert!(
        full >= 1,
        "at least one segment of 16 MiB or more was pulled: {listing:?}"
    );
    assert!(
        got["biggest_chunk"].as_u64().unwrap() <= 1 << 20,
        "chunks are at most 1 MiB"
    );
    println!(
        "pulled {} segments ({} of ≥ 16 MiB) with a default 4 MiB client",
        listing.len(),
        full
    );
}

#[test]
fn an_exec_tail_client_gets_every_marker_during_an_openat_storm() {
    let client = Client::new();
    let agent = Agent::start(&["--print", "none"]);
    let nonce = format!("lineage-marker-{}", std::process::id());
    let got = client.run(&["markers", agent.socket().to_str().unwrap(), &nonce, "100"]);
    let run = agent.stop();
    let markers = got["markers"].as_array().unwrap();
    for (i, argv) in markers.iter().enumerate() {
        assert_eq!(
            argv,
            &serde_json::json!(["/bin/true", nonce, i.to_string()]),
            "marker {i}: exact argv, in order"
        );
    }
    assert_eq!(
        markers.len(),
        100,
        "every marker exec reached the client: {got}"
    );
    assert_eq!(got["missed"], 0, "a kinds=[exec] client missed nothing");
    assert_eq!(
        got["storm_running_after_markers"], true,
        "the storm ran during all 100 markers"
    );
    println!(
        "100/100 markers, missed 0; agent log tail: {}",
        run.log.lines().last().unwrap_or("")
    );
}

/// (records decoded, records lost) so far.
fn capture_counts(port: u16) -> (f64, f64) {
    let m = scrape(port);
    let sum = |prefix: &str, pick: &dyn Fn(&str) -> bool| {
        m.iter()
            .filter(|(k, _)| k.starts_with(prefix) && pick(k))
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    let records = sum("lineage_records_total", &|_| true);
    let lost = sum("lineage_loss_records_total", &|k| {
        !k.contains("storage_unavailable")
    });
    (records, lost)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Samples `pid`'s RSS every 250 ms for `span`; the thread returns the peak (KiB).
fn peak_rss_sampler(pid: u32, span: Duration) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let start = std::time::Instant::now();
        let mut peak = 0;
        while start.elapsed() < span {
            peak = peak.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(250));
        }
        peak
    })
}

/// Writes `segments` full 16 MiB segments onto the agent's chain (its own host id and its
/// forward-secure sealing keys, FORMAT.md §8.1), so the next start continues a log of that size.
fn grow_log(data_dir: &Path, segments: usize) {
    let host = HostId::from_hex(
        std::fs::read_to_string(data_dir.join("host-id"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let store = SegmentStore::open(data_dir).unwrap();
    let last = store
        .last_number()
        .unwrap()
        .map(|n| SegmentHeader::parse(&store.read(n).unwrap()).unwrap());
    let policy = last
        .as_ref()
        .and_then(|h| h.seal)
        .map_or(Digest::ZERO, |s| s.policy_digest);
    let mut keys = SealKeys::open(
        &data_dir.join("keys"),
        &host,
        last.as_ref(),
        || -> Result<_, SealKeyError> { panic!("the agent enrolled this data dir") },
    )
    .unwrap();
    let mut writer = ChainWriter::resume(&store, host).unwrap();
    let payload = format!(
        "{{\"kind\":\"padding\",\"x\":\"{}\"}}",
        "x".repeat(60 << 10)
    );
    for _ in 0..segments {
        for _ in 0..(16 << 20) / payload.len() + 1 {
            writer.append_event(1, payload.as_bytes()).unwrap();
        }
        let next = keys.prepare().unwrap();
        store
            .write(&writer.seal_forward(1, keys.current(), &next, policy))
            .unwrap();
        keys.commit().unwrap();
    }
}

fn loss_during_storm(client: &Client, port: u16, opens: &str) -> (f64, f64, f64) {
    let (r0, l0) = capture_counts(port);
    let storm = client.run(&["storm", opens]);
    // Loss is declared after the grace period and the next reconciliation (1.5 s).
    std::thread::sleep(Duration::from_millis(3000));
    let (r1, l1) = capture_counts(port);
    let (records, lost) = (r1 - r0, l1 - l0);
    (
        lost / (records + lost),
        records,
        storm["rate"].as_f64().unwrap(),
    )
}

#[test]
fn api_abuse_does_not_change_capture_loss() {
    let client = Client::new();
    let dir = tempfile::tempdir().unwrap();
    // First run: create the store (key, host id), then grow it past 1 GiB.
    Agent::start_in(dir.path(), &["--print", "none"]).stop();
    grow_log(dir.path(), 65);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let agent = Agent::start_in(dir.path(), &["--print", "none", "--metrics-listen", &addr]);
    let sock = agent.socket();
    std::thread::sleep(Duration::from_millis(1500));
    let idle_rss = rss_kib(agent.pid());
    let opens = "1500000";

    // The storm alone grows the agent (writer queue, open segment, journal buffers): sample it
    // too, so what the 20 streams and the abuse cost is measured against the same storm.
    let quiet_sampler = peak_rss_sampler(agent.pid(), Duration::from_secs(15));
    let (quiet, quiet_records, quiet_rate) = loss_during_storm(&client, port, opens);
    let quiet_peak = quiet_sampler.join().unwrap();

    // The abuse runs at nice 10 like any low-priority tool on the host: what is measured is the
    // agent's design (serve threads never block capture), not a CPU fight it cannot win on
    // two cores.
    let abuse = client.command(&["abuse", sock.to_str().unwrap(), "30"]);
    let mut abuse = Command::new("nice")
        .args(["-n", "10"])
        .arg(abuse.get_program())
        .args(abuse.get_args())
        .envs(abuse.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let mut peak_rss = rss_kib(agent.pid());
    let sampler = peak_rss_sampler(agent.pid(), Duration::from_secs(10));
    let (abused, abused_records, abused_rate) = loss_during_storm(&client, port, opens);
    peak_rss = peak_rss.max(sampler.join().unwrap());
    let out = {
        let mut o = String::new();
        abuse.stdout.take().unwrap().read_to_string(&mut o).unwrap();
        let status = abuse.wait().unwrap();
        let mut e = String::new();
        abuse.stderr.take().unwrap().read_to_string(&mut e).unwrap();
        assert!(status.success(), "abuse client failed: {e}");
        o
    };
    let abuse: Value = serde_json::from_str(&out).unwrap();
    // The agent still captures and stops cleanly.
    run_to_end(&mut Command::new("/bin/true"));
    let run = agent.stop();

    println!(
        "capture loss during a {opens}-open storm: quiet {:.2} % ({quiet_records} records, {quiet_rate:.0} opens/s), \
         with API abuse {:.2} % ({abused_records} records, {abused_rate:.0} opens/s)",
        quiet * 100.0,
        abused * 100.0
    );
    let streams_cost = peak_rss.saturating_sub(quiet_peak);
    println!(
        "agent RSS: idle {} MiB; peak during the storm alone {} MiB; with 20 Tail streams + abuse {} MiB \
         (+{} MiB over the storm alone, +{} MiB over idle)",
        idle_rss / 1024,
        quiet_peak / 1024,
        peak_rss / 1024,
        streams_cost / 1024,
        peak_rss.saturating_sub(idle_rss) / 1024
    );
    println!("abuse: {abuse}");
    assert!(abuse["list_calls"].as_u64().unwrap() > 0 && abuse["listed"].as_u64().unwrap() >= 65);
    assert!(abuse["lineage_calls"].as_u64().unwrap() > 0, "{abuse}");
    assert!(abuse["tail_messages"].as_u64().unwrap() > 0, "{abuse}");
    // Margin: two runs on a shared 2-core host differ by a few points on their own.
    assert!(
        abused <= quiet + 0.05,
        "API abuse raised capture loss from {:.2} % to {:.2} %",
        quiet * 100.0,
        abused * 100.0
    );
    assert!(
        streams_cost <= 64 * 1024,
        "20 Tail streams + abuse grew RSS by {} MiB over the same storm without them ({} MiB)",
        streams_cost / 1024,
        quiet_peak / 1024
    );
    assert!(run.log.contains("stopping"));
}

#[test]
fn bad_inputs_get_their_documented_status_and_capture_goes_on() {
    let client = Client::new();
    let agent = Agent::start(&["--print", "json"]);
    // Two seals, then the oldest segment goes (as retention would), so the cursor 0 is gone.
    run_to_end(&mut Command::new("/bin/true"));
    // Seals come once a second; on a loaded host the second can take longer than that.
    let store = SegmentStore::open(&agent.data_dir).unwrap();
    let start = std::time::Instant::now();
    let listing = loop {
        let listing = store.list().unwrap().segments;
        if listing.len() >= 2 || start.elapsed() > Duration::from_secs(20) {
            break listing;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(listing.len() >= 2, "{listing:?}");
    let zero_existed = listing[0].0 == 0;
    let got_zero = client.run(&["bad", agent.socket().to_str().unwrap()]);
    std::fs::remove_file(&listing[0].1).unwrap();
    let got = client.run(&["bad", agent.socket().to_str().unwrap()]);
    let marker = format!("lineage-after-bad-input-{}", std::process::id());
    run_to_end(Command::new("/bin/echo").arg(&marker).stdout(Stdio::null()));
    let run = agent.stop();

    let code = |name: &str| got[name]["code"].as_str().unwrap().to_owned();
    assert_eq!(code("tail_bogus_kind"), "INVALID_ARGUMENT", "{got}");
    assert_eq!(code("tail_bad_subtree"), "INVALID_ARGUMENT", "{got}");
    assert_eq!(code("tail_huge_pattern"), "INVALID_ARGUMENT", "{got}");
    assert_eq!(code("ack_max"), "OUT_OF_RANGE", "{got}");
    assert_eq!(code("ack_ok"), "OK", "{got}");
    assert_eq!(code("pull_below_first"), "OUT_OF_RANGE", "{got}");
    assert_eq!(
        got["pull_below_first"]["metadata"]["lineage-first-segment"],
        listing[1].0.to_string(),
        "the refusal names the first available segment"
    );
    assert!(got["pull_below_first"]["details"]
        .as_str()
        .unwrap()
        .contains(&format!("first available is {}", listing[1].0)));
    assert_eq!(code("lineage_huge_id"), "INVALID_ARGUMENT", "{got}");
    assert!(
        got["lineage_huge_id"]["details"].as_str().unwrap().len() < 200,
        "a 1 MiB exec id is not echoed: {}",
        got["lineage_huge_id"]["details"]
    );
    assert_eq!(code("lineage_unknown"), "NOT_FOUND", "{got}");
    assert_eq!(code("garbage_bytes"), "INVALID_ARGUMENT", "{got}");
    assert_eq!(got["health"], "SERVING");
    if zero_existed {
        assert_eq!(
            got_zero["list_zero_alone"]["numbers"],
            serde_json::json!([0]),
            "ListSegments(from 0, to 0) lists segment 0 alone"
        );
    }
    // The ack went under the caller's uid (SO_PEERCRED), not under the name alone.
    let acks: Vec<String> = std::fs::read_dir(run.data_dir.join("acks"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let uid = unsafe { libc::getuid() };
    assert!(acks.contains(&format!("uid+{uid}+c1")), "{acks:?}");
    assert!(
        run.events
            .iter()
            .any(|e| e["kind"] == "exec" && lineage_tests::Run::argv(e).contains(&marker)),
        "the agent kept capturing after every bad input"
    );
}

#[test]
fn a_held_metrics_port_is_a_warning_not_an_exit() {
    // Someone (any user) holds the port first.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = squatter.local_addr().unwrap().to_string();
    let agent = Agent::start(&["--print", "none", "--metrics-listen", &addr]);
    agent.wait_for_log("metrics endpoint not started", Duration::from_secs(5));
    run_to_end(&mut Command::new("/bin/true"));
    let run = agent.stop();
    assert!(run.log.contains("capturing"));
    drop(squatter);
}

#[test]
fn sigterm_ends_streams_with_a_status_and_removes_the_socket() {
    let client = Client::new();
    let agent = Agent::start(&["--print", "none"]);
    let sock = agent.socket();
    let mut tail = client
        .command(&["tailend", sock.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let run = agent.stop();
    let mut out = String::new();
    tail.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(tail.wait().unwrap().success());
    let got: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        got["code"], "UNAVAILABLE",
        "the open Tail stream ended with a status: {got}"
    );
    assert!(!sock.exists(), "the socket file is removed on stop");
    assert!(run.log.contains("stopping"));
}

//! The agent's product is a verifiable log on disk: complete, crash-safe, honest about loss.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use lineage_tests::{chain_entries, chain_events, run_to_end, verify, Agent, Tmpfs};
use serde_json::Value;

/// Runs `n` execs of /bin/true from one shell; returns the shell's pid.
fn exec_storm(n: usize) -> u32 {
    let script = format!("i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done");
    run_to_end(Command::new("sh").args(["-c", &script]))
}

/// Declared loss of exec records on the chain (LOSS entries explain ring buffer gaps; the
/// per-kind split is only in the loss events).
fn declared_exec_loss(events: &[&Value]) -> u64 {
    events
        .iter()
        .filter(|e| e["kind"] == "loss")
        .flat_map(|e| e["failures"].as_array().cloned().unwrap_or_default())
        .filter(|f| f[0] == "exec")
        .map(|f| f[1].as_u64().unwrap_or(0))
        .sum()
}

fn count_kind(entries: &[Value], kind: &str) -> usize {
    entries.iter().filter(|e| e["kind"] == kind).count()
}

#[test]
fn ten_thousand_execs_are_on_a_verified_chain() {
    const N: usize = 10_000;
    let agent = Agent::start(&["--print", "none"]);
    let shell = exec_storm(N);
    let run = agent.stop();

    let (code, report) = verify(&run.data_dir);
    assert!(code == 0 || code == 3, "verify exit {code}: {report:#}");
    let entries = chain_entries(&run.data_dir);
    let events = chain_events(&entries);
    let shell_exec = events
        .iter()
        .find(|e| e["kind"] == "exec" && e["tgid"] == shell)
        .expect("the storm's shell exec is on the chain")["exec_id"]
        .clone();
    let execs = events
        .iter()
        .filter(|e| {
            e["kind"] == "exec" && e["parent_exec_id"] == shell_exec && e["filename"] == "/bin/true"
        })
        .count();
    let lost = declared_exec_loss(&events);
    println!("{execs} of {N} execs on the chain, {lost} declared lost; verify exit {code}");
    assert!(execs <= N, "more execs than were run: {execs}");
    assert!(
        execs + lost as usize >= N,
        "{execs} on the chain + {lost} declared lost < {N}"
    );
    if lost == 0 {
        assert_eq!(execs, N);
        assert_eq!(code, 0, "no loss, so verify is clean: {report:#}");
    }
}

#[test]
fn sigkill_five_times_leaves_a_continuous_verified_chain() {
    let dir = tempfile::tempdir().unwrap();
    let mut storm = Command::new("sh")
        .args(["-c", "while :; do /bin/true; done"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut sealed_before = Vec::new();
    for round in 0..5 {
        let agent = Agent::start_in(dir.path(), &["--print", "none"]);
        std::thread::sleep(Duration::from_millis(1500 + 100 * round));
        sealed_before.push(
            std::fs::read_dir(dir.path().join("segments"))
                .unwrap()
                .count(),
        );
        agent.kill();
    }
    let agent = Agent::start_in(dir.path(), &["--print", "none"]);
    std::thread::sleep(Duration::from_millis(500));
    storm.kill().unwrap();
    storm.wait().unwrap();
    agent.stop();

    let (code, report) = verify(dir.path());
    assert!(
        code == 0 || code == 3,
        "verify over all runs, exit {code}: {report:#}"
    );
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    assert!(
        findings.iter().all(|f| f["kind"] == "DECLARED_LOSS"),
        "only declared loss may be reported: {findings:#?}"
    );
    let entries = chain_entries(dir.path());
    let starts: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "AGENT_START")
        .collect();
    assert_eq!(starts.len(), 6, "six starts");
    assert_eq!(starts[0]["reason"], "first_start");
    let recovered = starts
        .iter()
        .filter(|s| s["reason"] == "recovered_after_crash")
        .count();
    assert_eq!(recovered, 5, "one recovery entry per SIGKILL: {starts:#?}");
    // No sealed segment was lost: every segment present before a kill is still there.
    let now = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .count();
    assert!(sealed_before.iter().all(|&n| n <= now));
    // Entry indices are continuous across all runs.
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["index"], i as u64, "entry index continuity");
    }
    assert_eq!(
        count_kind(&entries, "AGENT_STOP"),
        1,
        "only the last run stopped cleanly"
    );
}

#[test]
fn sigterm_leaves_agent_stop_in_a_sealed_segment() {
    let agent = Agent::start(&["--print", "none"]);
    run_to_end(&mut Command::new("/bin/true"));
    let run = agent.stop();
    let entries = chain_entries(&run.data_dir);
    assert_eq!(entries.last().expect("entries")["kind"], "AGENT_STOP");
    assert_eq!(entries[0]["kind"], "AGENT_START");
    let (code, report) = verify(&run.data_dir);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        std::fs::metadata(run.data_dir.join("open.wal"))
            .unwrap()
            .len(),
        0,
        "nothing left unsealed"
    );
}

#[test]
fn idle_agent_seals_heartbeats() {
    let agent = Agent::start(&["--print", "none", "--config", &heartbeat_config()]);
    std::thread::sleep(Duration::from_millis(2500));
    let run = agent.stop();
    let entries = chain_entries(&run.data_dir);
    let beats = count_kind(&entries, "HEARTBEAT");
    assert!(
        beats >= 2,
        "expected heartbeats every 500 ms while idle, got {beats}"
    );
    assert_eq!(verify(&run.data_dir).0, 0);
}

fn heartbeat_config() -> String {
    let path = std::env::temp_dir().join(format!("lineage-heartbeat-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        // File and socket events of unrelated processes would keep the agent from ever being
        // idle: this test is about the lineage-only case.
        "[evidence]\nheartbeat_interval_ms = 500\nseal_interval_ms = 200\n[filter]\nfile_ops = []\nnet_ops = []\n",
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn disk_full_refuses_and_declares_then_recovers_without_corruption() {
    let fs = Tmpfs::mount("32m");
    let data = fs.0.join("lineage");
    // Lineage events only, so the volume written before the disk fills stays small and fixed.
    let config = fs.0.join("agent.toml");
    std::fs::write(&config, "[filter]\nfile_ops = []\nnet_ops = []\n").unwrap();
    let agent = Agent::start_in(
        &data,
        &["--print", "none", "--config", config.to_str().unwrap()],
    );
    exec_storm(200);
    std::thread::sleep(Duration::from_millis(1500));
    let sealed_before: Vec<_> = std::fs::read_dir(data.join("segments"))
        .unwrap()
        .flatten()
        .map(|e| (e.path(), std::fs::read(e.path()).unwrap()))
        .collect();

    // Fill the disk, then keep producing events.
    let filler = fs.0.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    exec_storm(300);
    agent.wait_for_log("CANNOT WRITE SEALED SEGMENT", Duration::from_secs(10));
    exec_storm(300);
    std::thread::sleep(Duration::from_millis(500));

    // Space returns: the pending segment is written and the refusal declared.
    std::fs::remove_file(&filler).unwrap();
    agent.wait_for_log("disk space is back", Duration::from_secs(10));
    run_to_end(&mut Command::new("/bin/true"));
    let run = agent.stop();

    for (path, bytes) in sealed_before {
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "sealed segment {} changed",
            path.display()
        );
    }
    let (code, report) = verify(&data);
    assert_eq!(code, 3, "declared loss only: {report:#}");
    let entries = chain_entries(&data);
    let dropped: Vec<&Value> = entries.iter().filter(|e| e["kind"] == "DROPPED").collect();
    assert_eq!(
        dropped.len(),
        1,
        "one DROPPED entry for the full-disk episode"
    );
    assert_eq!(dropped[0]["reason"], "storage_unavailable");
    assert!(dropped[0]["count"].as_u64().unwrap() > 0);
    assert!(run.log.contains("CANNOT WRITE SEALED SEGMENT"));
}

#[test]
fn retention_deletes_oldest_segments_and_says_so_on_the_chain() {
    let cfg = std::env::temp_dir().join(format!("lineage-retention-{}.toml", std::process::id()));
    std::fs::write(&cfg, "[evidence]\nseal_interval_ms = 100\n[retention]\nmax_bytes = 20000\nhard_max_bytes = 40000\n").unwrap();
    let agent = Agent::start(&["--print", "none", "--config", cfg.to_str().unwrap()]);
    for _ in 0..8 {
        exec_storm(50);
        std::thread::sleep(Duration::from_millis(900));
    }
    agent.wait_for_log(
        "retention deleted the oldest segments",
        Duration::from_secs(10),
    );
    let run = agent.stop();
    // The identity key anchors the full chain; deleting the prefix deleted the headers that
    // link the first kept segment's one-time key to it (FORMAT.md §8.1 "Retention"), so a
    // pruned log is anchored at that key, as a collector holding the prefix would vouch.
    let first_kept = std::fs::read_dir(run.data_dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .min()
        .expect("segments are left");
    let header = std::fs::read(&first_kept).unwrap();
    let key: String = header[216..248]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (code, report) = lineage_tests::verify_with_key(&run.data_dir, std::path::Path::new(&key));
    assert_eq!(code, 0, "a declared pruned prefix verifies: {report:#}");
    // Against the identity key alone the first kept segment cannot be anchored (and so the
    // RETENTION entry in a later segment is not honoured either).
    let (code, report) = verify(&run.data_dir);
    assert_eq!(code, 1, "{report:#}");
    let first_kept_number: u64 = first_kept
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "UNKNOWN_KEY"
                && f["segments"]["first"].as_u64() == Some(first_kept_number)),
        "{report:#}"
    );
    let entries = chain_entries(&run.data_dir);
    assert!(
        entries.iter().any(|e| e["kind"] == "RETENTION"),
        "the deletion is on the chain"
    );
    assert!(
        !run.data_dir
            .join("segments/00000000000000000000.seg")
            .exists(),
        "segment 0 was deleted"
    );
}

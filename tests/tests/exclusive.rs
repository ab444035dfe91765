//! One agent per data directory (issue 18): a second `lineage-agent run` on a live data
//! directory used to open it as "recovered after crash", seal its own segments and make the
//! first agent refuse every event after. Now the second is refused, naming the first's pid,
//! and the first keeps capturing with nothing lost.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use lineage_tests::{agent_binary, chain_entries, run_to_end, verify, Agent};
use serde_json::Value;

#[test]
fn a_second_agent_on_a_live_data_dir_is_refused_and_the_first_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let first = Agent::start_in(dir.path(), &[]);
    let before = run_to_end(&mut Command::new("/bin/true"));

    // Its own socket, so only the data directory can be the reason for a refusal.
    let mut second = Command::new(agent_binary())
        .args(["run", "--metrics-listen", ""])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--grpc-socket")
        .arg(dir.path().join("second.sock"))
        .env("LINEAGE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the second agent");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = second.kill();
            panic!("the second agent on a live data directory is still running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "the second agent exited with {status}");
    assert!(
        err.contains(&format!("is in use by pid {}", first.pid())),
        "the refusal names the first agent's pid {}: {err}",
        first.pid()
    );
    assert!(
        !err.contains("recovered"),
        "the second agent must not open the store: {err}"
    );

    // The first agent keeps capturing and recording.
    let after = run_to_end(&mut Command::new("/bin/true"));
    let run = first.stop();
    for pid in [before, after] {
        assert!(
            !run.execs_of(pid).is_empty(),
            "the first agent captured /bin/true (pid {pid})"
        );
    }
    let (code, report) = verify(dir.path());
    assert!(code == 0 || code == 3, "verify: exit {code}: {report:#}");
    let entries = chain_entries(dir.path());
    let count = |kind: &str| entries.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!(count("AGENT_START"), 1, "only the first agent started");
    assert_eq!(count("AGENT_STOP"), 1);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["index"], i as u64, "entry index continuity");
    }
    let on_chain = |pid: u32| {
        entries
            .iter()
            .filter(|e| e["kind"] == "EVENT")
            .any(|e: &Value| e["event"]["kind"] == "exec" && e["event"]["tgid"] == pid)
    };
    assert!(
        on_chain(before) && on_chain(after),
        "both execs are on the chain"
    );
    assert_eq!(run.unexplained_loss(), 0, "no unexplained loss");
}

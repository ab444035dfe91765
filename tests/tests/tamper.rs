//! Issue 13: root wrote the filter-config map with bpftool and file events vanished with no
//! trace. Now the agent compares its capture maps with its own copy of the policy twice per
//! seal interval; a difference becomes a signed TAMPER entry (and a `lineagectl verify`
//! finding), and the agent writes its policy back.

use std::{
    fs,
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use lineage_tests::{chain_entries, verify, Agent};
use serde_json::Value;

/// Ids of the BPF maps the process `pid` holds open (from `/proc/<pid>/fdinfo`).
fn map_ids_of(pid: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    for e in fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let Ok(text) = fs::read_to_string(e.unwrap().path()) else {
            continue;
        };
        for line in text.lines() {
            if let Some(id) = line.strip_prefix("map_id:") {
                ids.push(id.trim().parse().unwrap());
            }
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

fn bpftool(args: &[&str]) -> std::process::Output {
    let out = Command::new("bpftool")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("bpftool is needed for this test (apt-get install bpftool): {e}")
        });
    assert!(
        out.status.success(),
        "bpftool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The id of the agent's map called `name`: among the maps its own process holds, so agents
/// other tests run at the same time are never touched.
fn agent_map(pid: u32, name: &str) -> String {
    for id in map_ids_of(pid) {
        let out = bpftool(&["map", "show", "id", &id.to_string(), "-j"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        if v["name"] == name {
            return id.to_string();
        }
    }
    panic!("the agent (pid {pid}) holds no map named {name}");
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
fn writing_the_filter_map_behind_the_agents_back_is_a_signed_tamper_entry() {
    const INTERVAL_MS: u64 = 500;
    let cfg = std::env::temp_dir().join(format!("lineage-tamper-{}.toml", std::process::id()));
    fs::write(
        &cfg,
        format!("[evidence]\nseal_interval_ms = {INTERVAL_MS}\n"),
    )
    .unwrap();
    let agent = Agent::start(&["--print", "none", "--config", cfg.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(2 * INTERVAL_MS));
    let id = agent_map(agent.pid(), "FILTER_CONFIG");
    // FilterConfig is 40 bytes; disabled_ops (the first u32) = all ones turns every file and
    // network operation off.
    let mut value = vec!["0xff"; 4];
    value.extend(std::iter::repeat_n("0x00", 36));
    let mut args = vec![
        "map", "update", "id", &id, "key", "0", "0", "0", "0", "value",
    ];
    args.extend(value.iter().copied());
    let written = now_ns();
    bpftool(&args);
    agent.wait_for_log("CAPTURE POLICY TAMPERED", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(2 * INTERVAL_MS));
    let run = agent.stop();
    let _ = fs::remove_file(&cfg);

    let entries = chain_entries(&run.data_dir);
    let tampers: Vec<&Value> = entries.iter().filter(|e| e["kind"] == "TAMPER").collect();
    assert_eq!(
        tampers.len(),
        1,
        "one TAMPER entry, the policy was written back: {tampers:#?}"
    );
    let t = tampers[0];
    assert_eq!(t["what"], "capture_map");
    assert!(
        t["detail"].as_str().unwrap().contains("FILTER_CONFIG"),
        "{t:#}"
    );
    let noticed = t["noticed_ns"].as_u64().unwrap();
    let late_ms = noticed.saturating_sub(written) / 1_000_000;
    assert!(
        late_ms <= INTERVAL_MS,
        "noticed {late_ms} ms after the write, more than one seal interval ({INTERVAL_MS} ms)"
    );
    let (code, report) = verify(&run.data_dir);
    assert_eq!(code, 1, "{report:#}");
    let findings = report["findings"].as_array().unwrap();
    assert!(findings.iter().any(|f| f["kind"] == "TAMPER"), "{report:#}");
    eprintln!("TAMPER noticed {late_ms} ms after bpftool wrote the map");
}

/// The load-time settings that decide what is captured — the agent's own pid (excluded from
/// capture), the kernel structure offsets, the io_uring field layout — are globals in the
/// object's read-only data, which the loader freezes (BPF_MAP_FREEZE): root cannot change them
/// with bpftool at all, so nothing is left to compare. (The filter maps change on SIGHUP and
/// cannot be frozen; they are compared instead, above.)
#[test]
fn the_load_time_capture_settings_are_frozen_against_bpftool() {
    let agent = Agent::start(&["--print", "none"]);
    let mut rodata = Vec::new();
    for id in map_ids_of(agent.pid()) {
        let out = bpftool(&["map", "show", "id", &id.to_string(), "-j"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        if v["name"].as_str().is_some_and(|n| n.contains(".rodata")) {
            rodata.push((id, v));
        }
    }
    assert!(
        !rodata.is_empty(),
        "the agent (pid {}) holds no .rodata map",
        agent.pid()
    );
    for (id, v) in &rodata {
        assert_eq!(v["frozen"], 1, "map {id} is not frozen: {v:#}");
        let size = v["bytes_value"].as_u64().unwrap() as usize;
        let mut args: Vec<String> = [
            "map",
            "update",
            "id",
            &id.to_string(),
            "key",
            "0",
            "0",
            "0",
            "0",
            "value",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(std::iter::repeat_n("0xff".to_string(), size));
        let out = Command::new("bpftool").args(&args).output().unwrap();
        assert!(
            !out.status.success(),
            "bpftool wrote the frozen map {id} ({v:#})"
        );
        eprintln!(
            "map {id} ({}): bpftool refused: {}",
            v["name"],
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    agent.stop();
}

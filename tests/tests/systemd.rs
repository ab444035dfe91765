//! The shipped systemd units under a real systemd (issue 17).
//!
//! Each test boots a Debian bookworm container with systemd as PID 1 (`systemd-nspawn`, see
//! `lineage_tests::nspawn`), installs the release tarball by running the steps of
//! docs/OPERATIONS.md verbatim, and drives the units with `systemctl` the way an SRE would.
//! The container's system-call filter is the knob: with `bpf` and `perf_event_open` allowed the
//! agent must run; without one of them it must fail at once and say that a seccomp filter
//! refused that system call, not that the kernel lacks a feature.

use std::{
    collections::BTreeSet,
    path::Path,
    time::{Duration, Instant},
};

use lineage_tests::{
    chain_entries,
    nspawn::{documented_install_steps, release_tarball, Machine},
    verify_with_key,
};
use serde_json::Value;

const AGENT: &str = "lineage-agent.service";
const COLLECTOR: &str = "lineage-collector.service";
/// What the units need beyond nspawn's default system-call list (docs/OPERATIONS.md).
const ALLOWED: &str = "bpf perf_event_open";

/// Copies the tarball in and runs the documented install steps; returns the script's output.
fn install(machine: &Machine, strict: bool) -> std::process::Output {
    let tarball = release_tarball();
    let name = tarball.file_name().expect("file name").to_string_lossy();
    machine.copy_in(&tarball, &format!("/root/install/{name}"));
    machine.write("/root/install.sh", &documented_install_steps(), 0o755);
    let shell = if strict { "sh -ex" } else { "sh -x" };
    let started = Instant::now();
    let out = machine.sh(&format!("cd /root/install && {shell} /root/install.sh"));
    eprintln!("documented install steps ran in {:.1?}", started.elapsed());
    if strict {
        assert!(
            out.status.success(),
            "the install steps of docs/OPERATIONS.md failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Capability names and numbers (linux/capability.h) for the ones the docs may list.
const CAPS: &[(&str, u32)] = &[
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_DAC_READ_SEARCH", 2),
    ("CAP_NET_ADMIN", 12),
    ("CAP_SYS_PTRACE", 19),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_RESOURCE", 24),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
];

/// The capabilities docs/OPERATIONS.md says the agent unit grants (its capability table).
fn documented_capabilities() -> u64 {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/OPERATIONS.md"),
    )
    .expect("reading docs/OPERATIONS.md");
    let mut mask = 0u64;
    for line in doc.lines() {
        let Some(rest) = line.trim_start().strip_prefix("| `CAP_") else {
            continue;
        };
        let name = format!("CAP_{}", rest.split('`').next().unwrap_or_default());
        let bit = CAPS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("unknown capability {name} in the docs' table"))
            .1;
        mask |= 1 << bit;
    }
    assert_ne!(mask, 0, "docs/OPERATIONS.md lists no capabilities");
    mask
}

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
        .trim()
        .to_owned()
}

fn cap_names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|b| mask & (1 << b) != 0)
        .map(|b| {
            CAPS.iter()
                .find(|(_, n)| *n == b)
                .map(|(name, _)| (*name).to_owned())
                .unwrap_or_else(|| format!("cap {b}"))
        })
        .collect()
}

/// `getent passwd NAME` → uid; `getent group NAME` → gid.
fn id_of(machine: &Machine, db: &str, name: &str) -> String {
    machine
        .ok(&format!("getent {db} {name}"))
        .split(':')
        .nth(2)
        .expect("a getent line")
        .to_owned()
}

fn agent_entries(machine: &Machine) -> Vec<Value> {
    chain_entries(&machine.root().join("var/lib/lineage"))
}

fn kinds<'a>(entries: &'a [Value], kind: &'a str) -> Vec<&'a Value> {
    entries.iter().filter(|e| e["kind"] == kind).collect()
}

fn assert_verifies(dir: &Path, key: &Path, what: &str) {
    let (code, report) = verify_with_key(dir, key);
    assert!(
        code == 0 || code == 3,
        "lineagectl verify over {what}: exit {code}: {report:#}"
    );
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    assert!(
        findings.iter().all(|f| f["kind"] == "DECLARED_LOSS"),
        "{what}: only declared loss may be reported: {findings:#?}"
    );
}

/// `systemctl start` returns only when the agent is ready, and ready means every required
/// probe is attached and the API answers: asked the moment the start returns, it says so.
fn assert_ready_means_attached(machine: &Machine) {
    assert_eq!(machine.property(AGENT, "Type"), "notify");
    assert_eq!(machine.property(AGENT, "NotifyAccess"), "main");
    assert_eq!(machine.property(AGENT, "ActiveState"), "active");
    let status: Value = serde_json::from_str(&machine.ok("lineagectl status --json"))
        .expect("lineagectl status --json prints JSON");
    let probes = status["probes"].as_array().expect("status lists probes");
    assert!(!probes.is_empty(), "no probes in {status:#}");
    for p in probes.iter().filter(|p| p["required"] == true) {
        assert_eq!(p["attached"], true, "required probe not attached: {p}");
    }
}

#[test]
fn agent_and_collector_units_run_restart_recover_and_fail_fast_under_systemd() {
    let started = Instant::now();
    let machine = Machine::boot(ALLOWED);
    install(&machine, true);
    // `systemctl enable --now` in the steps returned: the unit must be ready now.
    assert_ready_means_attached(&machine);

    // The user and exactly the documented capabilities, nothing else.
    let pid = machine.main_pid(AGENT);
    let status = machine.ok(&format!("cat /proc/{pid}/status"));
    let uid = id_of(&machine, "passwd", "lineage");
    assert!(
        status_field(&status, "Uid")
            .split_whitespace()
            .all(|u| u == uid),
        "agent must run as lineage ({uid}): {status}"
    );
    let documented = documented_capabilities();
    for field in ["CapEff", "CapPrm", "CapBnd", "CapAmb"] {
        let mask = u64::from_str_radix(&status_field(&status, field), 16).expect("hex caps");
        assert_eq!(
            mask,
            documented,
            "{field} of the agent is {:?}, the docs say {:?}",
            cap_names(mask),
            cap_names(documented)
        );
    }
    let socket = machine.ok("stat -c '%a %U %G' /run/lineage/agent.sock");
    assert_eq!(
        socket.trim(),
        "660 lineage lineage",
        "socket mode and owner"
    );

    // restart and stop: each run ends with AGENT_STOP, and the chain verifies.
    machine.ok(&format!("systemctl restart {AGENT}"));
    assert_ready_means_attached(&machine);
    machine.ok(&format!("systemctl stop {AGENT}"));
    let data = machine.root().join("var/lib/lineage");
    let key = data.join("keys/agent.pub");
    let entries = agent_entries(&machine);
    let starts = kinds(&entries, "AGENT_START");
    let stops = kinds(&entries, "AGENT_STOP");
    assert_eq!(starts.len(), 2, "two starts: {starts:#?}");
    assert_eq!(starts[0]["reason"], "first_start");
    assert_eq!(starts[1]["reason"], "restart");
    assert_eq!(stops.len(), 2, "restart and stop each leave AGENT_STOP");
    assert_eq!(
        entries.last().expect("entries")["kind"],
        "AGENT_STOP",
        "the stopped chain ends with AGENT_STOP"
    );
    assert_verifies(
        &data,
        &key,
        "the agent's data directory after restart and stop",
    );
    assert!(
        !machine.root().join("run/lineage/agent.sock").exists(),
        "no socket is left once the unit is stopped"
    );

    // kill -9 of the main process: systemd restarts it and the chain says it crashed.
    machine.ok(&format!("systemctl start {AGENT}"));
    assert_ready_means_attached(&machine);
    let before = machine.main_pid(AGENT);
    machine.ok(&format!("kill -9 {before}"));
    machine.wait_until(
        "systemd restarts the killed agent",
        Duration::from_secs(30),
        || {
            machine.property(AGENT, "ActiveState") == "active"
                && machine.main_pid(AGENT) != before
                && machine.main_pid(AGENT) != 0
        },
    );
    assert_eq!(machine.property(AGENT, "NRestarts"), "1");
    machine.wait_until(
        "the restarted agent records a crash recovery",
        Duration::from_secs(20),
        || {
            kinds(&agent_entries(&machine), "AGENT_START")
                .last()
                .is_some_and(|s| s["reason"] == "recovered_after_crash")
        },
    );
    assert_verifies(&data, &key, "the agent's data directory after kill -9");

    // The collector pulls over the socket as its own user, in group lineage as documented.
    let pid = machine.main_pid(COLLECTOR);
    let status = machine.ok(&format!("cat /proc/{pid}/status"));
    let uid = id_of(&machine, "passwd", "lineage-collector");
    assert!(
        status_field(&status, "Uid")
            .split_whitespace()
            .all(|u| u == uid),
        "collector must run as lineage-collector ({uid})"
    );
    let groups: BTreeSet<String> = status_field(&status, "Groups")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(
        groups.contains(&id_of(&machine, "group", "lineage")),
        "collector is in group lineage: {groups:?}"
    );
    assert_eq!(status_field(&status, "CapEff"), "0000000000000000");
    let host = std::fs::read_to_string(data.join("host-id")).expect("host-id");
    let stored = machine
        .root()
        .join("var/lib/lineage-collector/store")
        .join(host.trim());
    let sealed = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir.join("segments"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".seg"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let held = sealed(&data);
    machine.wait_until(
        "the collector pulls every segment the agent holds",
        Duration::from_secs(30),
        || sealed(&stored).is_superset(&held),
    );
    assert_verifies(&stored, &key, "the collector's store");
    let journal = machine.journal(COLLECTOR);
    assert!(
        !journal.contains("ermission denied"),
        "collector journal: {journal}"
    );

    // A broken config: `systemctl start` fails at once with the reason in the journal, and
    // systemd does not retry a configuration error.
    machine.ok(&format!("systemctl stop {AGENT}"));
    machine.write(
        "/etc/lineage/agent.toml",
        "[capture]\nring_buffer_byte = 65536\n",
        0o644,
    );
    let t = Instant::now();
    let out = machine.sh(&format!("systemctl start {AGENT}"));
    let took = t.elapsed();
    assert!(
        !out.status.success(),
        "start with a broken config succeeded"
    );
    assert!(
        took < Duration::from_secs(10),
        "start with a broken config took {took:?}"
    );
    let journal = machine.journal(AGENT);
    assert!(
        journal.contains("unknown field `ring_buffer_byte`"),
        "the journal names the config error: {journal}"
    );
    assert_eq!(machine.property(AGENT, "ActiveState"), "failed");
    eprintln!("systemd unit test took {:.1?}", started.elapsed());
}

/// Boots with one of the two system calls missing from the container's filter and checks the
/// agent fails at once, naming the refused call, the errno and the seccomp filter.
fn refused_syscall_is_named(allowed: &str, refused: &str) {
    let machine = Machine::boot(allowed);
    let t = Instant::now();
    let out = install(&machine, false);
    let took = t.elapsed();
    let steps = String::from_utf8_lossy(&out.stderr);
    assert!(
        steps.contains(&format!("systemctl enable --now {AGENT}")),
        "the install steps reached the agent's start: {steps}"
    );
    assert!(
        took < Duration::from_secs(20),
        "the failing start took {took:?}"
    );
    assert!(
        steps.contains(&format!("Job for {AGENT} failed")),
        "systemctl start reported the failure: {steps}"
    );
    // Not retried yet (RestartSec=5s) or given up: either way not running.
    let sub = machine.property(AGENT, "SubState");
    assert!(
        sub == "failed" || sub == "auto-restart",
        "agent unit state {sub}"
    );
    let journal = machine.journal(AGENT);
    eprintln!("journal of the refused start:\n{journal}");
    for needle in [refused, "EPERM", "seccomp"] {
        assert!(
            journal.contains(needle),
            "the agent's error must name {needle:?}; journal:\n{journal}"
        );
    }
    assert!(
        !journal.contains("does not support"),
        "a refused call is not a missing kernel feature; journal:\n{journal}"
    );
}

#[test]
fn seccomp_refusing_bpf_is_named_as_the_cause() {
    refused_syscall_is_named("perf_event_open", "bpf");
}

#[test]
fn seccomp_refusing_perf_event_open_is_named_as_the_cause() {
    refused_syscall_is_named("bpf", "perf_event_open");
}

//! Where the kernel-side time goes: the run time per call of each of the agent's eBPF
//! programs during each storm, from the kernel's BPF statistics
//! (`kernel.bpf_stats_enabled = 1`, read with `bpftool prog show --json`).
//!
//! Statistics add two clock reads per program call, so this runs as a separate profiling pass
//! after the timed runs and never overlaps them; the sysctl is restored afterwards.

use std::{collections::BTreeMap, path::Path, process::Command};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Prog {
    id: u64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    run_time_ns: u64,
    #[serde(default)]
    run_cnt: u64,
}

/// One program during one storm.
#[derive(Debug, Clone, Serialize)]
pub struct ProgCost {
    pub storm: String,
    pub program: String,
    pub calls: u64,
    pub ns_per_call: f64,
    /// Program time divided by the generator's operations.
    pub ns_per_op: f64,
}

fn progs() -> anyhow::Result<BTreeMap<u64, Prog>> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "--json"])
        .output()
        .context("running bpftool")?;
    if !out.status.success() {
        bail!("bpftool prog show failed");
    }
    let v: Vec<Prog> = serde_json::from_slice(&out.stdout)?;
    Ok(v.into_iter().map(|p| (p.id, p)).collect())
}

pub fn available() -> bool {
    Path::new("/proc/sys/kernel/bpf_stats_enabled").exists()
        && Command::new("bpftool")
            .arg("version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
}

/// Enables the statistics until dropped.
pub struct Stats {
    before: String,
}

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl Stats {
    pub fn enable() -> anyhow::Result<Stats> {
        let before = std::fs::read_to_string(SYSCTL)?.trim().to_owned();
        std::fs::write(SYSCTL, "1")?;
        Ok(Stats { before })
    }
}

impl Drop for Stats {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, &self.before);
    }
}

/// Program ids present now (to tell the agent's new programs apart).
pub fn ids() -> anyhow::Result<Vec<u64>> {
    Ok(progs()?.into_keys().collect())
}

pub struct Snapshot(BTreeMap<u64, Prog>);

pub fn snapshot() -> anyhow::Result<Snapshot> {
    Ok(Snapshot(progs()?))
}

/// Cost of the programs not in `existing` between `a` and `b`.
pub fn costs(existing: &[u64], a: &Snapshot, b: &Snapshot, storm: &str, ops: u64) -> Vec<ProgCost> {
    let mut by_name: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (id, p) in &b.0 {
        if existing.contains(id) {
            continue;
        }
        let (c0, t0) =
            a.0.get(id)
                .map(|q| (q.run_cnt, q.run_time_ns))
                .unwrap_or((0, 0));
        let e = by_name.entry(p.name.clone()).or_default();
        e.0 += p.run_cnt.saturating_sub(c0);
        e.1 += p.run_time_ns.saturating_sub(t0);
    }
    by_name
        .into_iter()
        .filter(|(_, (calls, _))| *calls > 0)
        .map(|(program, (calls, ns))| ProgCost {
            storm: storm.to_owned(),
            program,
            calls,
            ns_per_call: ns as f64 / calls as f64,
            ns_per_op: if ops > 0 {
                ns as f64 / ops as f64
            } else {
                f64::NAN
            },
        })
        .collect()
}

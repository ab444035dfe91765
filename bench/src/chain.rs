//! What reached the chain: `lineagectl entries <data_dir> --json`, one entry per line, counted
//! for one generator process, plus every LOSS entry and every `loss` event.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Line {
    kind: String,
    #[serde(default)]
    event: Option<Ev>,
    // LOSS entries.
    #[serde(default)]
    first_seq: Option<u64>,
    #[serde(default)]
    last_seq: Option<u64>,
    #[serde(default)]
    counter_delta: Option<u64>,
    #[serde(default)]
    flags: Option<u32>,
}

#[derive(Deserialize)]
struct Ev {
    kind: String,
    /// File events: `open`, `unlink`, ...
    #[serde(default)]
    op: Option<String>,
    #[serde(default)]
    tgid: u32,
    #[serde(default)]
    ppid: Option<u32>,
    // `loss` events.
    #[serde(default)]
    failures: Vec<(String, u64)>,
    #[serde(default)]
    unexplained: u64,
}

/// Counts for one generator (`pid`) and the chain's loss accounting.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChainCount {
    pub entries: u64,
    /// EVENT entries by event kind (file events as `file:<op>`), whole chain.
    pub events_by_kind: BTreeMap<String, u64>,
    /// EVENT entries whose `tgid` is the generator's, by kind.
    pub gen_events_by_kind: BTreeMap<String, u64>,
    /// `exec` events whose parent (`ppid`) is the generator: the exec storm's children.
    pub gen_child_execs: u64,
    /// The generator's `open…` events that name the storm's target file (the generator's own
    /// start-up opens — loader, libc — do not).
    pub gen_target_opens: u64,
    pub loss_entries: u64,
    /// Sum of `last_seq - first_seq + 1` over LOSS entries.
    pub loss_missing: u64,
    /// Sum of `counter_delta` (the part the kernel's counters explain).
    pub loss_explained: u64,
    /// LOSS entries flagged unexplained.
    pub loss_unexplained_entries: u64,
    /// Reservation failures by record kind, from the `loss` events.
    pub failures_by_kind: BTreeMap<String, u64>,
    pub unexplained_in_events: u64,
}

impl ChainCount {
    /// Captured events of the storm's own kind: `exec` children for the exec storm; for the
    /// others, the generator's events whose kind names the syscall (`open…`, `connect…`).
    pub fn captured(&self, storm: crate::gen::Storm) -> u64 {
        use crate::gen::Storm;
        match storm {
            Storm::Exec => self.gen_child_execs,
            // Prefer the events naming the target file; fall back to every open event if the
            // agent does not record the path.
            Storm::Openat if self.gen_target_opens > 0 => self.gen_target_opens,
            Storm::Openat => self.gen_kinds_matching("open"),
            Storm::Connect => self.gen_kinds_matching("connect"),
        }
    }

    fn gen_kinds_matching(&self, needle: &str) -> u64 {
        self.gen_events_by_kind
            .iter()
            .filter(|(k, _)| k.contains(needle))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn add_line(&mut self, line: &str, pid: u32, target: &str) -> anyhow::Result<()> {
        let l: Line = serde_json::from_str(line).with_context(|| format!("entry line {line:?}"))?;
        self.entries += 1;
        match l.kind.as_str() {
            "EVENT" => {
                let Some(mut ev) = l.event else {
                    return Ok(());
                };
                // File events are counted per operation: `file:open`, `file:unlink`, ...
                if let Some(op) = ev.op.take().filter(|_| ev.kind == "file") {
                    ev.kind = format!("file:{op}");
                }
                *self.events_by_kind.entry(ev.kind.clone()).or_default() += 1;
                if ev.tgid == pid {
                    *self.gen_events_by_kind.entry(ev.kind.clone()).or_default() += 1;
                    if ev.kind.contains("open") && !target.is_empty() && line.contains(target) {
                        self.gen_target_opens += 1;
                    }
                }
                if ev.kind == "exec" && ev.ppid == Some(pid) {
                    self.gen_child_execs += 1;
                }
                if ev.kind == "loss" {
                    for (kind, n) in ev.failures {
                        *self.failures_by_kind.entry(kind).or_default() += n;
                    }
                    self.unexplained_in_events += ev.unexplained;
                }
            }
            "LOSS" => {
                self.loss_entries += 1;
                if let (Some(f), Some(t)) = (l.first_seq, l.last_seq) {
                    self.loss_missing += t.saturating_sub(f) + 1;
                }
                self.loss_explained += l.counter_delta.unwrap_or(0);
                if l.flags.unwrap_or(0) & 1 != 0 {
                    self.loss_unexplained_entries += 1;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Streams `lineagectl entries DIR --json` and counts.
pub fn count(
    lineagectl: &Path,
    data_dir: &Path,
    pid: u32,
    target: &str,
) -> anyhow::Result<ChainCount> {
    let mut child = Command::new(lineagectl)
        .arg("entries")
        .arg(data_dir)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", lineagectl.display()))?;
    let out = child.stdout.take().context("stdout")?;
    let mut c = ChainCount::default();
    for line in BufReader::with_capacity(1 << 20, out).lines() {
        c.add_line(&line?, pid, target)?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "lineagectl entries failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::Storm;

    #[test]
    fn counts_generator_events_and_loss() {
        let mut c = ChainCount::default();
        for l in [
            r#"{"index":0,"segment":0,"kind":"AGENT_START","reason":"first_start"}"#,
            r#"{"index":1,"segment":0,"kind":"EVENT","schema":1,"event":{"kind":"exec","tgid":11,"ppid":7}}"#,
            r#"{"index":2,"segment":0,"kind":"EVENT","schema":1,"event":{"kind":"fork","tgid":7}}"#,
            r#"{"index":3,"segment":0,"kind":"EVENT","schema":1,"event":{"kind":"open","tgid":7,"path":"/lib/libc.so.6"}}"#,
            r#"{"index":3,"segment":0,"kind":"EVENT","schema":1,"event":{"kind":"file","op":"open","tgid":7,"path":"/var/tmp/x/openat-target"}}"#,
            r#"{"index":3,"segment":0,"kind":"EVENT","schema":1,"event":{"kind":"file","op":"unlink","tgid":7,"path":"/var/tmp/x/openat-target"}}"#,
            r#"{"index":4,"segment":0,"kind":"EVENT","schema":1,"event":{"kind":"loss","tgid":0,"failures":[["open",5]],"unexplained":0}}"#,
            r#"{"index":5,"segment":0,"kind":"LOSS","cpu":1,"flags":0,"first_seq":10,"last_seq":14,"counter_delta":5,"counter_total":5}"#,
        ] {
            c.add_line(l, 7, "openat-target").unwrap();
        }
        assert_eq!(c.captured(Storm::Exec), 1);
        assert_eq!(c.captured(Storm::Openat), 1);
        assert_eq!(c.captured(Storm::Connect), 0);
        assert_eq!(
            (c.loss_entries, c.loss_missing, c.loss_explained),
            (1, 5, 5)
        );
        assert_eq!(c.failures_by_kind["open"], 5);
        assert_eq!(c.entries, 8);
        assert_eq!(c.gen_events_by_kind["open"], 1);
        assert_eq!(c.gen_events_by_kind["file:open"], 1);
        assert_eq!(c.gen_events_by_kind["file:unlink"], 1);
        assert_eq!(c.gen_target_opens, 1);
    }
}

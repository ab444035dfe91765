//! The enforcement state the capture thread keeps: mode and policy in force, the decisions
//! ring, the heartbeat, and the kernel counters last declared on the chain.
//!
//! It lives on the capture thread because that thread owns the eBPF object and the process
//! table; everything it records goes to the writer thread's queue as control entries, which
//! are never dropped.

use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use lineage_common::ENFORCE_SLOTS;
use lineage_evidence::entry::{Enforcement, EnforcementForm};

use super::{kernel, mode_entry, policy_entry, EnforceError, EnforcementSettings, Mode};
use crate::{
    capture::lineage::ProcessTable,
    config::Config,
    record::writer::{Entry, RecorderStats, WriterHandle},
    runtime::boot_time_ns,
};

/// The writer must have published within this long for the pipeline to count as healthy: a
/// writer stuck in fsync or sealing stops the heartbeat even though capture still drains.
const WRITER_STALE: Duration = Duration::from_secs(1);

/// How often the heartbeat is refreshed (well inside any sane deadline).
const BEAT_EVERY: Duration = Duration::from_millis(100);

pub struct Enforcer {
    mode: Mode,
    deadline_ms: u64,
    decisions: Option<RingBuf<MapData>>,
    declared: [u64; ENFORCE_SLOTS as usize],
    last_beat: Option<Instant>,
}

fn record(writer: &mut WriterHandle, entry: Enforcement) {
    writer.control(Entry::Enforcement(Box::new(entry), boot_time_ns()));
}

impl Enforcer {
    /// Applies the policy, attaches the programs unless observing, and records mode and policy.
    pub fn start(
        ebpf: &mut aya::Ebpf,
        settings: &EnforcementSettings,
        writer: &mut WriterHandle,
    ) -> Result<Enforcer, EnforceError> {
        let compiled = settings.compile()?;
        // Healthy as of now: the deadline starts counting when the pipeline runs.
        kernel::beat(ebpf, boot_time_ns())?;
        let decisions = if compiled.mode == Mode::Observe {
            None
        } else {
            let ring = kernel::take_decisions(ebpf)?;
            kernel::attach(ebpf, &settings.cgroup_root)?;
            Some(ring)
        };
        kernel::apply(ebpf, &compiled)?;
        record(
            writer,
            mode_entry(compiled.mode, None, settings.heartbeat_deadline_ms),
        );
        record(writer, policy_entry(&compiled));
        tracing::info!(
            mode = compiled.mode.name(),
            deadline_ms = settings.heartbeat_deadline_ms,
            "enforcement"
        );
        Ok(Enforcer {
            mode: compiled.mode,
            deadline_ms: settings.heartbeat_deadline_ms,
            decisions,
            declared: kernel::counters(ebpf).unwrap_or_default(),
            last_beat: None,
        })
    }

    /// SIGHUP: a new policy and possibly a new mode (observe cannot be left or entered without
    /// a restart, since the programs are attached at start).
    pub fn reload(&mut self, ebpf: &mut aya::Ebpf, config: &Config, writer: &mut WriterHandle) {
        let compiled = match config.enforcement.compile() {
            Ok(c) => c,
            Err(e) => return tracing::error!(error = %e, "SIGHUP: enforcement not changed"),
        };
        if (compiled.mode == Mode::Observe) != (self.mode == Mode::Observe) {
            return tracing::error!(
                "SIGHUP: switching to or from observe needs a restart; enforcement not changed"
            );
        }
        if let Err(e) = kernel::apply(ebpf, &compiled) {
            return tracing::error!(error = %e, "SIGHUP: applying the enforcement policy failed");
        }
        let deadline_ms = config.enforcement.heartbeat_deadline_ms;
        if compiled.mode != self.mode || deadline_ms != self.deadline_ms {
            record(
                writer,
                mode_entry(compiled.mode, Some(self.mode), deadline_ms),
            );
        }
        record(writer, policy_entry(&compiled));
        self.mode = compiled.mode;
        self.deadline_ms = deadline_ms;
        tracing::info!(
            mode = self.mode.name(),
            "SIGHUP: enforcement reloaded and recorded"
        );
    }

    /// Refreshes the heartbeat, but only while the whole pipeline works: this thread is
    /// draining (it is the caller), and the writer takes entries and has published lately.
    pub fn beat(&mut self, ebpf: &mut aya::Ebpf, writer: &RecorderStats) {
        if self.last_beat.is_some_and(|t| t.elapsed() < BEAT_EVERY) {
            return;
        }
        let writer_alive = writer
            .published_at
            .is_some_and(|t| t.elapsed() < WRITER_STALE);
        if writer.degraded || !writer_alive {
            return;
        }
        match kernel::beat(ebpf, boot_time_ns()) {
            Ok(()) => self.last_beat = Some(Instant::now()),
            Err(e) => tracing::warn!(error = %e, "heartbeat not refreshed"),
        }
    }

    /// One DECISION entry per kernel decision record, joined with the process's lineage.
    pub fn drain(&mut self, writer: &mut WriterHandle, table: &ProcessTable) {
        let Some(ring) = self.decisions.as_mut() else {
            return;
        };
        kernel::drain(ring, |rec| {
            let mut json = kernel::decision_json(&rec);
            if let Some(img) = table.image_of_tgid(rec.tgid) {
                json["exec_id"] = img.exec_id.to_string().into();
                json["ancestors"] = table
                    .ancestors(&img.exec_id)
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .into();
            }
            let entry = Enforcement {
                form: EnforcementForm::Decision,
                json: json.to_string(),
            };
            record(writer, entry);
        });
    }

    /// A SUMMARY entry whenever the kernel counters moved since the last one.
    pub fn declare(&mut self, ebpf: &aya::Ebpf, writer: &mut WriterHandle) {
        if self.mode == Mode::Observe {
            return;
        }
        let Ok(counts) = kernel::counters(ebpf) else {
            return;
        };
        if counts != self.declared {
            record(writer, kernel::summary_entry(&counts, self.mode));
            self.declared = counts;
        }
    }
}

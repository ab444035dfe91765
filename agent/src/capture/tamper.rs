//! Tamper-evident capture policy (FORMAT.md §4.12): the capture thread, which owns the kernel
//! objects, compares the filter maps with its own copy of the policy twice per seal interval.
//! Root can write those maps behind the agent's back (`bpftool map update`); a difference
//! becomes a TAMPER entry, which the writer seals at once, and the policy is written back.

use std::time::{Duration, Instant};

use lineage_evidence::{
    digest::Digest,
    entry::{Filter, Tamper, TamperWhat},
};

use crate::{
    kernel::filter::{self, Compiled},
    runtime::wall_time_ns,
};

/// The digest FILTER POLICY records for `compiled` (and every seal carries).
fn digest_of(compiled: &Compiled) -> Digest {
    match Filter::policy(&compiled.policy_text) {
        Filter::Policy { policy_digest, .. } | Filter::Counts { policy_digest, .. } => {
            policy_digest
        }
    }
}

/// The agent's copy of the filter policy and when the kernel's maps were last compared.
pub struct PolicyWatch {
    compiled: Compiled,
    digest: Digest,
    every: Duration,
    last: Instant,
}

impl PolicyWatch {
    /// Watches `compiled` (already applied), comparing every `every`.
    pub fn new(compiled: Compiled, every: Duration) -> Self {
        PolicyWatch {
            digest: digest_of(&compiled),
            compiled,
            every,
            last: Instant::now(),
        }
    }

    /// A reloaded policy is now the one the maps must hold.
    pub fn replace(&mut self, compiled: Compiled) {
        self.digest = digest_of(&compiled);
        self.compiled = compiled;
    }

    /// When a comparison is due: how the kernel's maps differ from the policy, with the
    /// policy written back, as the TAMPER entry to record (`None` when they match).
    pub fn check(&mut self, ebpf: &mut aya::Ebpf) -> Option<Tamper> {
        if self.last.elapsed() < self.every {
            return None;
        }
        self.last = Instant::now();
        let diffs = match filter::differences(ebpf, &self.compiled) {
            Ok(d) if d.is_empty() => return None,
            Ok(d) => d,
            Err(e) => vec![format!("the filter maps cannot be read back: {e}")],
        };
        let restored = match filter::apply(ebpf, &self.compiled) {
            Ok(()) => "the agent wrote its policy back".to_string(),
            Err(e) => format!("restoring the policy failed: {e}"),
        };
        let detail = format!("{}; {restored}", diffs.join("; "));
        tracing::error!(%detail, "CAPTURE POLICY TAMPERED WITH: recording TAMPER");
        Some(Tamper {
            what: TamperWhat::CaptureMap,
            noticed_ns: wall_time_ns(),
            policy_digest: self.digest,
            detail,
        })
    }
}

//! Counters for everything notable in the pipeline: each is logged where it happens and counted
//! here, so a summary (and later the metrics endpoint) can report it.

use std::collections::BTreeMap;

use lineage_common::RecordKind;

use crate::capture::decode::DecodeError;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    /// Records decoded, by kind name.
    pub records: BTreeMap<&'static str, u64>,
    /// Records that failed to decode, by reason.
    pub decode_errors: BTreeMap<&'static str, u64>,
    /// Failed ring-buffer reservations reported by the kernel, by kind name.
    pub reserve_failures: BTreeMap<&'static str, u64>,
    /// Records missing from confirmed sequence gaps.
    pub lost_records: u64,
    /// Missing records no kernel counter explains.
    pub unexplained_loss: u64,
    /// exec-args records dropped because their exec never came.
    pub args_unjoined: u64,
    /// io_uring completions whose submission record was lost (counted as LOSS by its gap).
    pub uring_unjoined: u64,
}

impl Default for Stats {
    /// Every kind and reason present at zero, so each counter has a series before its first
    /// increment.
    fn default() -> Self {
        let kinds = || RecordKind::ALL.iter().map(|k| (k.name(), 0)).collect();
        Stats {
            records: kinds(),
            decode_errors: DecodeError::LABELS.iter().map(|l| (*l, 0)).collect(),
            reserve_failures: kinds(),
            lost_records: 0,
            unexplained_loss: 0,
            args_unjoined: 0,
            uring_unjoined: 0,
        }
    }
}

impl Stats {
    pub fn record(&mut self, kind: u32) {
        let name = RecordKind::try_from(kind)
            .map(RecordKind::name)
            .unwrap_or("unknown");
        *self.records.entry(name).or_default() += 1;
    }

    pub fn decode_error(&mut self, e: &DecodeError) {
        tracing::warn!(error = %e, "undecodable ring buffer record");
        *self.decode_errors.entry(e.label()).or_default() += 1;
    }

    pub fn reserve_failed(&mut self, kind: &'static str, n: u64) {
        *self.reserve_failures.entry(kind).or_default() += n;
    }
}

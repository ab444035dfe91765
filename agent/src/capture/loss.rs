//! Loss accounting: per-CPU sequence gaps reconciled against the kernel's reservation-failure
//! counters.
//!
//! Every reservation attempt in the kernel takes the next per-CPU sequence number, so a record
//! that never arrives leaves a gap. A gap is only *confirmed* once it has stayed open for a
//! grace period (preemption can reorder two records of one CPU by a few microseconds). A
//! confirmed gap is *explained* when the kernel counted as many failed reservations on that CPU
//! as are missing; anything beyond that is unexplained loss and an alarm.

use std::time::{Duration, Instant};

/// Sequence numbers `[from, to)` on `cpu` that never arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub cpu: u32,
    pub from: u64,
    pub to: u64,
}

impl Gap {
    pub fn len(&self) -> u64 {
        self.to - self.from
    }
}

/// The outcome of one reconciliation on one CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LossReport {
    pub cpu: u32,
    /// Confirmed gaps since the last report.
    pub gaps: Vec<Gap>,
    /// Records missing in those gaps.
    pub missing: u64,
    /// New reservation failures the kernel counted on this CPU since the last report, by kind
    /// slot (index = record kind number).
    pub failures_by_kind: Vec<u64>,
    /// Cumulative reservation failures on this CPU, all kinds.
    pub failures_total: u64,
    /// Missing records the kernel's counters do not account for.
    pub unexplained: u64,
}

#[derive(Default)]
struct CpuState {
    /// The next sequence number expected in order (the kernel's counters start at 0 when the
    /// maps are created, before any program is attached).
    next: u64,
    /// Open gaps, oldest first, with when they were first seen.
    open: Vec<(Gap, Instant)>,
    /// Kernel failure counters already matched to a report, by kind slot.
    failures_seen: Vec<u64>,
    /// Failures counted but not yet matched by a confirmed gap (the gap appears only when a
    /// later record arrives on that CPU).
    failures_pending: u64,
}

pub struct SequenceTracker {
    cpus: Vec<CpuState>,
    grace: Duration,
    /// Records that arrived with a sequence number already seen: a kernel or agent bug.
    pub duplicates: u64,
}

impl SequenceTracker {
    pub fn new(cpus: usize, kind_slots: usize, grace: Duration) -> Self {
        let cpus = (0..cpus)
            .map(|_| CpuState {
                failures_seen: vec![0; kind_slots],
                ..Default::default()
            })
            .collect();
        SequenceTracker {
            cpus,
            grace,
            duplicates: 0,
        }
    }

    /// Accounts one arrived record.
    pub fn observe(&mut self, cpu: u32, seq: u64, now: Instant) {
        let Some(state) = self.cpus.get_mut(cpu as usize) else {
            return;
        };
        if seq >= state.next {
            if seq > state.next {
                state.open.push((
                    Gap {
                        cpu,
                        from: state.next,
                        to: seq,
                    },
                    now,
                ));
            }
            state.next = seq + 1;
            return;
        }
        // A late record: it fills (part of) an open gap, or it is a duplicate.
        let Some(i) = state
            .open
            .iter()
            .position(|(g, _)| g.from <= seq && seq < g.to)
        else {
            self.duplicates += 1;
            return;
        };
        let (gap, seen) = state.open.remove(i);
        if seq + 1 < gap.to {
            state.open.insert(
                i,
                (
                    Gap {
                        cpu,
                        from: seq + 1,
                        to: gap.to,
                    },
                    seen,
                ),
            );
        }
        if gap.from < seq {
            state.open.insert(
                i,
                (
                    Gap {
                        cpu,
                        from: gap.from,
                        to: seq,
                    },
                    seen,
                ),
            );
        }
    }

    /// Confirms gaps older than the grace period and matches them against the kernel's
    /// per-CPU, per-kind failure counters (`failures[cpu][kind]`, cumulative).
    pub fn reconcile(&mut self, failures: &[Vec<u64>], now: Instant) -> Vec<LossReport> {
        let mut reports = Vec::new();
        for (cpu, state) in self.cpus.iter_mut().enumerate() {
            let counters = failures.get(cpu).cloned().unwrap_or_default();
            let failures_by_kind: Vec<u64> = counters
                .iter()
                .zip(state.failures_seen.iter().chain(std::iter::repeat(&0)))
                .map(|(now, seen)| now.saturating_sub(*seen))
                .collect();
            let new_failures: u64 = failures_by_kind.iter().sum();
            let (confirmed, open): (Vec<_>, Vec<_>) = state
                .open
                .drain(..)
                .partition(|(_, seen)| now.duration_since(*seen) >= self.grace);
            state.open = open;
            let gaps: Vec<Gap> = confirmed.into_iter().map(|(g, _)| g).collect();
            let missing: u64 = gaps.iter().map(Gap::len).sum();
            if missing == 0 && new_failures == 0 {
                continue;
            }
            state.failures_seen = counters;
            let available = state.failures_pending + new_failures;
            let explained = missing.min(available);
            state.failures_pending = available - explained;
            reports.push(LossReport {
                cpu: cpu as u32,
                gaps,
                missing,
                failures_total: state.failures_seen.iter().sum(),
                failures_by_kind,
                unexplained: missing - explained,
            });
        }
        reports
    }

    /// At shutdown, after the last drain: records the kernel numbered (`next_seq[cpu]`) but that
    /// never arrived, past the last one received, become a trailing gap now.
    pub fn close(&mut self, next_seq: &[u64], now: Instant) {
        for (cpu, state) in self.cpus.iter_mut().enumerate() {
            if let Some(&end) = next_seq.get(cpu) {
                if end > state.next {
                    let gap = Gap {
                        cpu: cpu as u32,
                        from: state.next,
                        to: end,
                    };
                    state.open.push((gap, now - self.grace));
                    state.next = end;
                }
            }
            for (_, seen) in state.open.iter_mut() {
                *seen = now - self.grace;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_millis(100);

    fn tracker() -> SequenceTracker {
        SequenceTracker::new(2, 8, GRACE)
    }

    #[test]
    fn in_order_records_report_nothing() {
        let mut t = tracker();
        let now = Instant::now();
        for s in 0..100 {
            t.observe(0, s, now);
        }
        assert!(t
            .reconcile(&[vec![0; 8], vec![0; 8]], now + GRACE)
            .is_empty());
    }

    #[test]
    fn gap_explained_by_failures() {
        let mut t = tracker();
        let now = Instant::now();
        t.observe(1, 0, now);
        t.observe(1, 4, now); // 1, 2, 3 missing
        let mut f = vec![vec![0; 8], vec![0; 8]];
        f[1][2] = 3;
        // Not yet confirmed inside the grace period.
        assert_eq!(
            t.reconcile(&f, now).iter().map(|r| r.missing).sum::<u64>(),
            0
        );
        let r = t.reconcile(&f, now + GRACE);
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].gaps,
            vec![Gap {
                cpu: 1,
                from: 1,
                to: 4
            }]
        );
        assert_eq!((r[0].missing, r[0].unexplained), (3, 0));
    }

    #[test]
    fn gap_without_failures_is_unexplained() {
        let mut t = tracker();
        let now = Instant::now();
        t.observe(0, 0, now);
        t.observe(0, 5, now);
        let r = t.reconcile(&[vec![0; 8], vec![0; 8]], now + GRACE);
        assert_eq!((r[0].missing, r[0].unexplained), (4, 4));
    }

    #[test]
    fn late_record_fills_gap_and_is_not_loss() {
        let mut t = tracker();
        let now = Instant::now();
        t.observe(0, 0, now);
        t.observe(0, 3, now);
        t.observe(0, 1, now);
        t.observe(0, 2, now);
        assert!(t
            .reconcile(&[vec![0; 8], vec![0; 8]], now + GRACE)
            .is_empty());
        t.observe(0, 2, now);
        assert_eq!(t.duplicates, 1);
    }

    #[test]
    fn trailing_loss_found_at_close() {
        let mut t = tracker();
        let now = Instant::now();
        t.observe(0, 0, now);
        let mut f = vec![vec![0; 8], vec![0; 8]];
        f[0][1] = 2;
        t.close(&[3, 0], now);
        let r = t.reconcile(&f, now);
        assert_eq!((r[0].missing, r[0].unexplained), (2, 0));
        assert_eq!(r[0].failures_by_kind[1], 2);
    }
}

//! Retention: keep sealed segments within a disk budget, oldest first, and put every deletion
//! on the chain before it happens.
//!
//! Under the soft budget (`max_bytes`) only segments every registered collector has
//! acknowledged may go; beyond the hard cap (`hard_max_bytes`) the oldest go regardless, since
//! a full disk would stop recording altogether. The newest segment always stays: the chain
//! continues from it, and it holds (or precedes) the newest RETENTION entry.
//!
//! Collectors acknowledge by writing the highest segment number they have stored into
//! `<data_dir>/acks/<collector name>`.

use std::path::Path;

use lineage_evidence::entry::RetentionReason;

/// What to delete: segments up to and including `last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub last: u64,
    pub segments: u64,
    pub bytes: u64,
    pub reason: RetentionReason,
}

/// `segments`: (number, file size) sorted by number. `acked`: the lowest acknowledgement over
/// all registered collectors, `None` when no collector is registered.
pub fn plan(
    segments: &[(u64, u64)],
    acked: Option<Option<u64>>,
    max_bytes: u64,
    hard_max_bytes: u64,
) -> Option<Plan> {
    let mut total: u64 = segments.iter().map(|(_, size)| size).sum();
    if total <= max_bytes || segments.len() < 2 {
        return None;
    }
    let deletable = &segments[..segments.len() - 1];
    let mut plan: Option<Plan> = None;
    for &(number, size) in deletable {
        let over_soft = total > max_bytes;
        let over_hard = total > hard_max_bytes;
        let acknowledged = match acked {
            None => true,
            Some(Some(upto)) => number <= upto,
            Some(None) => false,
        };
        let reason = if acknowledged && over_soft {
            RetentionReason::Budget
        } else if over_hard {
            RetentionReason::HardCap
        } else {
            break;
        };
        total -= size;
        let p = plan.get_or_insert(Plan {
            last: number,
            segments: 0,
            bytes: 0,
            reason,
        });
        p.last = number;
        p.segments += 1;
        p.bytes += size;
        if reason == RetentionReason::HardCap {
            p.reason = RetentionReason::HardCap;
        }
    }
    plan
}

/// Lowest acknowledged segment over the collectors registered in `dir`; `None` when there are
/// none; `Some(None)` when one has registered but acknowledged nothing yet.
pub fn read_acks(dir: &Path) -> Option<Option<u64>> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut lowest: Option<Option<u64>> = None;
    for entry in entries.flatten() {
        // `.NAME.tmp`: an acknowledgement being written (renamed into place when complete).
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let value = std::fs::read_to_string(entry.path())
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok());
        lowest = Some(match (lowest, value) {
            (None, v) => v,
            (Some(None), _) | (_, None) => None,
            (Some(Some(a)), Some(b)) => Some(a.min(b)),
        });
    }
    lowest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(n: u64) -> Vec<(u64, u64)> {
        (0..n).map(|i| (i, 100)).collect()
    }

    #[test]
    fn within_budget_nothing_goes() {
        assert_eq!(plan(&segs(5), None, 500, 1000), None);
    }

    #[test]
    fn oldest_go_first_and_the_newest_stays() {
        let p = plan(&segs(10), None, 450, 2000).unwrap();
        assert_eq!(
            (p.last, p.segments, p.bytes, p.reason),
            (5, 6, 600, RetentionReason::Budget)
        );
        let p = plan(&segs(3), None, 0, 0).unwrap();
        assert_eq!(p.last, 1, "the newest segment is never deleted");
    }

    #[test]
    fn unacknowledged_segments_stay_until_the_hard_cap() {
        // A collector acknowledged up to segment 2: the budget can only take 0..=2.
        let p = plan(&segs(10), Some(Some(2)), 450, 2000).unwrap();
        assert_eq!((p.last, p.reason), (2, RetentionReason::Budget));
        // Nothing acknowledged and under the hard cap: nothing goes.
        assert_eq!(plan(&segs(10), Some(None), 450, 2000), None);
        // Beyond the hard cap the oldest go anyway.
        let p = plan(&segs(10), Some(None), 450, 800).unwrap();
        assert_eq!(
            (p.last, p.segments, p.reason),
            (1, 2, RetentionReason::HardCap)
        );
    }

    #[test]
    fn acks_take_the_slowest_collector() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_acks(&dir.path().join("missing")), None);
        std::fs::write(dir.path().join("a"), "7\n").unwrap();
        std::fs::write(dir.path().join("b"), "3").unwrap();
        assert_eq!(read_acks(dir.path()), Some(Some(3)));
        std::fs::write(dir.path().join("c"), "").unwrap();
        assert_eq!(read_acks(dir.path()), Some(None));
    }
}

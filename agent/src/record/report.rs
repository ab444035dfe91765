//! Turning pipeline state into evidence entries (metrics: `serve::metrics`).

use lineage_evidence::entry::{Loss, LOSS_FLAG_UNEXPLAINED};

use crate::capture::event::{Detail, Event};

/// One LOSS entry per missing sequence range. The kernel's new failures explain ranges in
/// order; a range they do not fully cover is flagged unexplained.
pub fn loss_entries(event: &Event) -> Vec<Loss> {
    let Detail::Loss {
        loss_cpu,
        ranges,
        missing,
        failures_total,
        unexplained,
        ..
    } = &event.detail
    else {
        return Vec::new();
    };
    let mut explained_left = missing - unexplained;
    ranges
        .iter()
        .filter(|(from, to)| to > from)
        .map(|&(from, to)| {
            let len = to - from;
            let delta = len.min(explained_left);
            explained_left -= delta;
            Loss {
                cpu: *loss_cpu,
                flags: if delta < len {
                    LOSS_FLAG_UNEXPLAINED
                } else {
                    0
                },
                first_seq: from,
                last_seq: to - 1,
                counter_delta: delta,
                counter_total: *failures_total,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss(ranges: Vec<(u64, u64)>, missing: u64, unexplained: u64) -> Event {
        Event {
            container: None,
            time_ns: 0,
            pid: 0,
            tgid: 0,
            exec_id: None,
            parent_exec_id: None,
            ancestors: vec![],
            cpu: None,
            seq: None,
            creds: None,
            detail: Detail::Loss {
                loss_cpu: 1,
                ranges,
                missing,
                failures: vec![],
                failures_total: 9,
                unexplained,
            },
        }
    }

    #[test]
    fn explained_loss_covers_ranges_in_order() {
        let entries = loss_entries(&loss(vec![(10, 13), (20, 22)], 5, 1));
        assert_eq!(entries.len(), 2);
        assert_eq!(
            (
                entries[0].first_seq,
                entries[0].last_seq,
                entries[0].counter_delta
            ),
            (10, 12, 3)
        );
        assert!(entries[0].is_explained());
        assert_eq!(entries[1].counter_delta, 1);
        assert!(!entries[1].is_explained());
        assert_eq!(entries[1].flags, LOSS_FLAG_UNEXPLAINED);
    }
}

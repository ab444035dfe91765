//! Turning pipeline and recorder state into evidence entries and metrics.

use lineage_evidence::entry::{Loss, LOSS_FLAG_UNEXPLAINED};

use crate::{
    capture::event::{Detail, Event},
    capture::pipeline::Pipeline,
    kernel::probes::ProbeStatus,
    record::writer::RecorderStats,
    serve::metrics::Render,
};

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

fn as_ref(v: &[(String, f64)]) -> Vec<(&str, f64)> {
    v.iter().map(|(l, x)| (l.as_str(), *x)).collect()
}

fn labelled<'a>(pairs: impl Iterator<Item = (&'a str, u64)>, label: &str) -> Vec<(String, f64)> {
    pairs
        .map(|(k, v)| (format!("{label}=\"{k}\""), v as f64))
        .collect()
}

pub fn metrics_page(
    pipeline: &Pipeline,
    recorder: &RecorderStats,
    queue_dropped: u64,
    probes: &[ProbeStatus],
    ring_fill: u64,
) -> String {
    let s = &pipeline.stats;
    let mut r = Render::default();
    let events = labelled(s.records.iter().map(|(k, v)| (*k, *v)), "kind");
    r.metric(
        "lineage_records_total",
        "counter",
        "Kernel records decoded, by kind.",
        &as_ref(&events),
    );
    let failures = labelled(s.reserve_failures.iter().map(|(k, v)| (*k, *v)), "kind");
    r.metric(
        "lineage_ringbuf_reservation_failures_total",
        "counter",
        "Records the kernel could not reserve (ring buffer full), by kind.",
        &as_ref(&failures),
    );
    r.metric(
        "lineage_loss_records_total",
        "counter",
        "Records lost, by reason.",
        &[
            (
                "reason=\"ring_buffer_full\"",
                (s.lost_records - s.unexplained_loss) as f64,
            ),
            ("reason=\"unexplained\"", s.unexplained_loss as f64),
            (
                "reason=\"storage_unavailable\"",
                recorder.refused_entries as f64,
            ),
            ("reason=\"queue_full\"", queue_dropped as f64),
        ],
    );
    let decode = labelled(s.decode_errors.iter().map(|(k, v)| (*k, *v)), "reason");
    r.metric(
        "lineage_decode_errors_total",
        "counter",
        "Ring buffer records that failed to decode.",
        &as_ref(&decode),
    );
    r.metric(
        "lineage_chain_entries_total",
        "counter",
        "Entries appended to the chain by this run.",
        &[("", recorder.appended_entries as f64)],
    );
    r.metric(
        "lineage_chain_next_index",
        "gauge",
        "Index the next chain entry gets.",
        &[("", recorder.next_index as f64)],
    );
    r.metric(
        "lineage_segments_sealed_total",
        "counter",
        "Segments sealed by this run.",
        &[("", recorder.sealed_segments as f64)],
    );
    r.metric(
        "lineage_seal_latency_seconds",
        "gauge",
        "Duration of the last seal (sign and durable write).",
        &[("", recorder.last_seal_latency.as_secs_f64())],
    );
    r.metric(
        "lineage_storage_degraded",
        "gauge",
        "1 while a sealed segment cannot be written (disk full).",
        &[("", f64::from(u8::from(recorder.degraded)))],
    );
    if let Some((size, witnessed)) = recorder.witness_lag {
        r.metric(
            "lineage_checkpoint_segments",
            "gauge",
            "Segments in the newest published checkpoint (docs/FORMAT.md §12).",
            &[("", size as f64)],
        );
        r.metric(
            "lineage_witness_behind_segments",
            "gauge",
            "Segments sealed after the newest checkpoint a witness cosigned (all of them when none has).",
            &[("", size.saturating_sub(witnessed.unwrap_or(0)) as f64)],
        );
    }
    r.metric(
        "lineage_ringbuf_fill_bytes",
        "gauge",
        "Bytes waiting in the kernel ring buffer at the last submit.",
        &[("", ring_fill as f64)],
    );
    r.metric(
        "lineage_process_table_size",
        "gauge",
        "Processes the lineage table tracks.",
        &[("", pipeline.table().len() as f64)],
    );
    let probe_samples: Vec<(String, f64)> = probes
        .iter()
        .map(|p| {
            (
                format!("probe=\"{}\"", p.program),
                f64::from(u8::from(p.attached)),
            )
        })
        .collect();
    r.metric(
        "lineage_probe_attached",
        "gauge",
        "1 when the probe is attached.",
        &as_ref(&probe_samples),
    );
    r.finish()
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

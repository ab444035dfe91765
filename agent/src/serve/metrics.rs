//! The agent's Prometheus page and health verdict, built by the capture thread once per
//! reconcile tick (from its own state and the writer's published [`RecorderStats`]) and handed
//! to the shared endpoint (`lineage_ops`), which the serve runtime answers `/metrics`,
//! `/healthz` and `/readyz` from on loopback, never touching capture.
//!
//! Conventions (checked by a kernel test with a real exposition parser): one series per hook
//! labelled by `program` and `hook`, every counter ends in `_total` and has a series from the
//! first scrape (every record kind, decode error, loss reason and filter rule at zero), seal
//! latency is a histogram. Every series is listed in docs/OPERATIONS.md.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use lineage_ops::{system, Health, Histogram, Page};

use crate::{
    capture::pipeline::Pipeline,
    kernel::{filter::NamedRule, probes::ProbeStatus},
    record::{recorder::RETENTION_REASONS, writer::RecorderStats},
};

pub use lineage_ops::{serve, Endpoint};

/// Seal latency buckets, in seconds: a seal signs (tens of µs) and writes with fsync (ms on
/// SSDs, more on busy disks).
pub const SEAL_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl Publisher {
    /// Renders the page and the health verdict and hands both to the endpoint.
    pub fn publish(
        &self,
        pipeline: &Pipeline,
        recorder: &RecorderStats,
        queue_dropped: u64,
        ring_fill: u64,
        filter_counts: &[u64],
    ) {
        let page = render(&Inputs {
            pipeline,
            recorder,
            queue_dropped,
            probes: &self.probes,
            ring_fill,
            ring_size: self.ring_size,
            filter_rules: &self.filter_rules,
            filter_counts,
            data_dir: &self.data_dir,
            kernel_version: &self.kernel_version,
        });
        self.endpoint.update(page, health(recorder, &self.probes));
    }
}

/// A new seal-latency histogram with [`SEAL_BUCKETS`].
pub fn seal_histogram() -> Histogram {
    Histogram::new(SEAL_BUCKETS)
}

/// The writer must have published within this long for `/healthz` to pass (it publishes every
/// 20 ms while it runs; a writer stuck in fsync stops).
const WRITER_STALE: Duration = Duration::from_secs(5);

/// What the capture thread keeps to publish metrics: the endpoint and the facts that do not
/// come from the pipeline or the writer.
pub struct Publisher {
    pub endpoint: Endpoint,
    pub data_dir: PathBuf,
    pub kernel_version: String,
    pub ring_size: u32,
    pub probes: Vec<ProbeStatus>,
    /// The filter rules in force (replaced on SIGHUP).
    pub filter_rules: Vec<NamedRule>,
}

/// Everything the page is made of, borrowed from the capture thread for one render.
pub struct Inputs<'a> {
    pub pipeline: &'a Pipeline,
    pub recorder: &'a RecorderStats,
    /// Events dropped because the writer's queue was full (declared on the chain).
    pub queue_dropped: u64,
    pub probes: &'a [ProbeStatus],
    pub ring_fill: u64,
    pub ring_size: u32,
    /// Filter rules in force and the kernel's cumulative suppressed counts by rule slot.
    pub filter_rules: &'a [NamedRule],
    pub filter_counts: &'a [u64],
    pub data_dir: &'a Path,
    pub kernel_version: &'a str,
}

/// The map's entries as label values (the pipeline's maps start with every kind at zero).
fn entries(map: &std::collections::BTreeMap<&'static str, u64>) -> Vec<(&'static str, u64)> {
    map.iter().map(|(k, v)| (*k, *v)).collect()
}

fn labelled<'a>(
    label: &'a str,
    values: &'a [(&'a str, u64)],
) -> Vec<([(&'a str, &'a str); 1], u64)> {
    values.iter().map(|(k, v)| ([(label, *k)], *v)).collect()
}

fn counter_by(page: &mut Page, name: &str, help: &str, label: &str, values: &[(&str, u64)]) {
    let rows = labelled(label, values);
    let samples: Vec<_> = rows.iter().map(|(l, v)| (&l[..], *v)).collect();
    page.counter(name, help, &samples);
}

pub fn render(i: &Inputs) -> String {
    let s = &i.pipeline.stats;
    let r = i.recorder;
    let mut p = Page::default();
    p.gauge(
        "lineage_build_info",
        "Always 1; the labels say which agent build runs on which kernel.",
        &[(
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("kernel", i.kernel_version),
            ],
            1.0,
        )],
    );
    counter_by(
        &mut p,
        "lineage_records_total",
        "Kernel records decoded, by kind.",
        "kind",
        &entries(&s.records),
    );
    counter_by(
        &mut p,
        "lineage_ringbuf_reservation_failures_total",
        "Records the kernel could not reserve (ring buffer full), by kind.",
        "kind",
        &entries(&s.reserve_failures),
    );
    counter_by(
        &mut p,
        "lineage_decode_errors_total",
        "Ring buffer records that failed to decode, by reason.",
        "reason",
        &entries(&s.decode_errors),
    );
    counter_by(
        &mut p,
        "lineage_loss_records_total",
        "Records lost, by reason.",
        "reason",
        &[
            ("ring_buffer_full", s.lost_records - s.unexplained_loss),
            ("unexplained", s.unexplained_loss),
            ("storage_unavailable", r.refused_entries),
            ("queue_full", i.queue_dropped),
        ],
    );
    let rule_ids: Vec<String> = i.filter_rules.iter().map(|n| n.id.to_string()).collect();
    let rules: Vec<_> = i
        .filter_rules
        .iter()
        .zip(&rule_ids)
        .map(|(n, id)| {
            (
                [("rule_id", id.as_str()), ("rule", n.description.as_str())],
                i.filter_counts.get(n.id as usize).copied().unwrap_or(0),
            )
        })
        .collect();
    let samples: Vec<_> = rules.iter().map(|(l, v)| (&l[..], *v)).collect();
    p.counter(
        "lineage_filter_suppressed_total",
        "Events the kernel filter suppressed, by rule (also recorded on the chain as FILTER entries).",
        &samples,
    );
    p.counter1(
        "lineage_chain_entries_total",
        "Entries appended to the chain by this run.",
        r.appended_entries,
    );
    p.gauge1(
        "lineage_chain_next_index",
        "Index the next chain entry gets.",
        r.next_index as f64,
    );
    p.counter1(
        "lineage_segments_sealed_total",
        "Segments sealed by this run.",
        r.sealed_segments,
    );
    p.histogram(
        "lineage_seal_duration_seconds",
        "Time to seal a segment: sign and write it durably.",
        &r.seal_latency,
    );
    p.gauge1(
        "lineage_storage_degraded",
        "1 while a sealed segment cannot be written (disk full): new entries are refused.",
        f64::from(u8::from(r.degraded)),
    );
    p.gauge1(
        "lineage_segments_stored",
        "Sealed segments in the data directory (as of the last retention check).",
        r.disk.segments as f64,
    );
    p.gauge1(
        "lineage_segments_stored_bytes",
        "Bytes of sealed segments in the data directory (as of the last retention check).",
        r.disk.bytes as f64,
    );
    p.gauge1(
        "lineage_unacknowledged_bytes",
        "Bytes of sealed segments the slowest registered collector has not acknowledged (all of them when none has registered).",
        r.disk.unacked_bytes as f64,
    );
    p.gauge1(
        "lineage_collectors_registered",
        "Collectors that acknowledge segments (files under <data_dir>/acks).",
        r.disk.collectors as f64,
    );
    let deleted = |f: fn(&(u64, u64)) -> u64| -> Vec<(&str, u64)> {
        RETENTION_REASONS
            .iter()
            .zip(r.retention_deleted.iter())
            .map(|(reason, d)| (*reason, f(d)))
            .collect()
    };
    counter_by(
        &mut p,
        "lineage_retention_deleted_segments_total",
        "Segments deleted by retention, by reason (budget: acknowledged and over max_bytes; hard_cap: over hard_max_bytes).",
        "reason",
        &deleted(|d| d.0),
    );
    counter_by(
        &mut p,
        "lineage_retention_deleted_bytes_total",
        "Bytes deleted by retention, by reason.",
        "reason",
        &deleted(|d| d.1),
    );
    if let Some(space) = system::FsSpace::of(i.data_dir) {
        p.gauge1(
            "lineage_data_dir_filesystem_size_bytes",
            "Size of the filesystem holding the data directory.",
            space.size_bytes as f64,
        );
        p.gauge1(
            "lineage_data_dir_filesystem_avail_bytes",
            "Bytes free for the agent on the data directory's filesystem.",
            space.avail_bytes as f64,
        );
    }
    if let Some((size, witnessed)) = r.witness_lag {
        p.gauge1(
            "lineage_checkpoint_segments",
            "Segments in the newest published checkpoint (docs/FORMAT.md §12).",
            size as f64,
        );
        p.gauge1(
            "lineage_witness_behind_segments",
            "Segments sealed after the newest checkpoint a witness cosigned (all of them when none has).",
            size.saturating_sub(witnessed.unwrap_or(0)) as f64,
        );
    }
    p.gauge1(
        "lineage_ringbuf_fill_bytes",
        "Bytes waiting in the kernel ring buffer at the last submit.",
        i.ring_fill as f64,
    );
    p.gauge1(
        "lineage_ringbuf_size_bytes",
        "Size of the kernel ring buffer.",
        f64::from(i.ring_size),
    );
    p.gauge1(
        "lineage_process_table_size",
        "Processes the lineage table tracks.",
        i.pipeline.table().len() as f64,
    );
    let probes: Vec<_> = i
        .probes
        .iter()
        .map(|s| {
            (
                [
                    ("program", s.program),
                    ("hook", s.hook.as_str()),
                    ("required", if s.required { "true" } else { "false" }),
                ],
                f64::from(u8::from(s.attached)),
            )
        })
        .collect();
    let samples: Vec<_> = probes.iter().map(|(l, v)| (&l[..], *v)).collect();
    p.gauge(
        "lineage_probe_attached",
        "1 when the program is attached to the hook, 0 when attaching failed (reason in the log and lineagectl status).",
        &samples,
    );
    if let Some(proc) = system::Process::read() {
        proc.render(&mut p);
    }
    p.finish()
}

/// `/healthz` fails while the recorder refuses entries or the writer has stopped publishing;
/// `/readyz` also until every required probe is attached. A stuck capture thread stops calling
/// this, which the endpoint reports.
pub fn health(recorder: &RecorderStats, probes: &[ProbeStatus]) -> Health {
    let mut h = Health::default();
    if recorder.degraded {
        h.unhealthy.push(
            "the recorder cannot write sealed segments (disk full?): new events are refused and counted"
                .into(),
        );
    }
    if let Some(t) = recorder.published_at.filter(|t| t.elapsed() > WRITER_STALE) {
        h.unhealthy.push(format!(
            "the writer thread has not reported for {} s (stuck writing to disk?)",
            t.elapsed().as_secs()
        ));
    }
    let missing: Vec<&str> = probes
        .iter()
        .filter(|p| p.required && !p.attached)
        .map(|p| p.program)
        .collect();
    if probes.is_empty() {
        h.not_ready.push("probes not attached yet".into());
    } else if !missing.is_empty() {
        h.not_ready.push(format!(
            "required probes not attached: {}",
            missing.join(", ")
        ));
    }
    h
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::kernel::probes::all_probes;

    fn recorder() -> RecorderStats {
        RecorderStats {
            appended_entries: 5,
            next_index: 5,
            sealed_segments: 1,
            published_at: Some(std::time::Instant::now()),
            ..RecorderStats::default()
        }
    }

    #[test]
    fn one_series_per_hook_and_counters_from_zero() {
        let pipeline = Pipeline::new("boot", 2, Duration::from_millis(500));
        let probes: Vec<ProbeStatus> = all_probes()
            .iter()
            .map(|p| ProbeStatus {
                program: p.program,
                hook: p.hook.to_string(),
                required: p.required,
                attached: true,
                error: None,
            })
            .collect();
        let rules = crate::kernel::filter::FilterSettings::default()
            .compile()
            .unwrap()
            .rules;
        let text = render(&Inputs {
            pipeline: &pipeline,
            recorder: &recorder(),
            queue_dropped: 0,
            probes: &probes,
            ring_fill: 0,
            ring_size: 1 << 24,
            filter_rules: &rules,
            filter_counts: &[],
            data_dir: Path::new("/"),
            kernel_version: "6.18",
        });
        let attached: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("lineage_probe_attached{"))
            .collect();
        assert_eq!(attached.len(), probes.len());
        let unique: std::collections::BTreeSet<_> = attached.iter().collect();
        assert_eq!(unique.len(), attached.len(), "duplicate probe series");
        assert!(text.contains(
            "lineage_probe_attached{program=\"sys_exit_file\",hook=\"tracepoint/syscalls/sys_exit_openat\",required=\"false\"} 1\n"
        ));
        for line in [
            "lineage_ringbuf_reservation_failures_total{kind=\"exec\"} 0\n",
            "lineage_decode_errors_total{reason=\"short\"} 0\n",
            "lineage_loss_records_total{reason=\"queue_full\"} 0\n",
            "lineage_retention_deleted_segments_total{reason=\"hard_cap\"} 0\n",
            "lineage_seal_duration_seconds_bucket{le=\"+Inf\"} 0\n",
            "lineage_filter_suppressed_total{rule_id=\"0\",rule=\"event kind disabled\"} 0\n",
        ] {
            assert!(text.contains(line), "missing {line}");
        }
        assert!(text.contains("lineage_build_info{version=\""));
    }

    #[test]
    fn health_follows_the_recorder_and_probes() {
        let probes = [ProbeStatus {
            program: "sched_process_exec",
            hook: "tracepoint/sched/sched_process_exec".into(),
            required: true,
            attached: true,
            error: None,
        }];
        assert_eq!(health(&recorder(), &probes), Health::default());
        let mut r = recorder();
        r.degraded = true;
        let h = health(&r, &probes);
        assert!(h.unhealthy[0].contains("disk full"), "{h:?}");
        assert!(!health(&recorder(), &[]).not_ready.is_empty());
    }
}

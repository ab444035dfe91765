//! The collector's Prometheus page, rendered by the status board once a second from the same
//! per-agent status the status file shows (so the two never disagree). Every per-agent
//! counter has a series from the first scrape, findings one per kind at zero. The series are
//! listed in docs/OPERATIONS.md.

use std::path::Path;

use lineage_evidence::verify::FindingKind;
use lineage_ops::{system, Page};

use crate::status::AgentStatus;

/// Findings the collector raises that are not verifier finding kinds.
const COLLECTOR_FINDINGS: &[&str] = &["HOST_CONFLICT"];

fn per_agent<T>(
    agents: &[AgentStatus],
    value: impl Fn(&AgentStatus) -> T,
) -> Vec<([(&'static str, &str); 1], T)> {
    agents
        .iter()
        .map(|a| ([("agent", a.name.as_str())], value(a)))
        .collect()
}

fn counter(
    page: &mut Page,
    name: &str,
    help: &str,
    agents: &[AgentStatus],
    f: fn(&AgentStatus) -> u64,
) {
    let rows = per_agent(agents, f);
    let samples: Vec<_> = rows.iter().map(|(l, v)| (&l[..], *v)).collect();
    page.counter(name, help, &samples);
}

fn gauge(
    page: &mut Page,
    name: &str,
    help: &str,
    agents: &[AgentStatus],
    f: fn(&AgentStatus) -> f64,
) {
    let rows = per_agent(agents, f);
    let samples: Vec<_> = rows.iter().map(|(l, v)| (&l[..], *v)).collect();
    page.gauge(name, help, &samples);
}

/// The page for `agents` (a snapshot taken by the status board).
pub fn render(collector: &str, agents: &[AgentStatus], store_dir: Option<&Path>) -> String {
    let mut p = Page::default();
    p.gauge(
        "lineage_collector_build_info",
        "Always 1; the labels say which collector build runs.",
        &[(
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("collector", collector),
            ],
            1.0,
        )],
    );
    counter(
        &mut p,
        "lineage_collector_segments_pulled_total",
        "Segments received from the agent (stored or rejected).",
        agents,
        |a| a.segments_fetched,
    );
    counter(
        &mut p,
        "lineage_collector_segments_stored_total",
        "Segments verified and stored.",
        agents,
        |a| a.segments_stored,
    );
    counter(
        &mut p,
        "lineage_collector_bytes_stored_total",
        "Bytes of the segments verified and stored.",
        agents,
        |a| a.bytes_stored,
    );
    counter(
        &mut p,
        "lineage_collector_segments_quarantined_total",
        "Segments rejected and kept (or dropped past the budget) under quarantine/.",
        agents,
        |a| a.segments_quarantined,
    );
    counter(
        &mut p,
        "lineage_collector_reconnects_total",
        "Connection attempts after the first.",
        agents,
        |a| a.reconnects,
    );
    counter(
        &mut p,
        "lineage_collector_ack_failures_total",
        "AckSegments calls that failed.",
        agents,
        |a| a.ack_failures,
    );
    counter(
        &mut p,
        "lineage_collector_checkpoints_refused_total",
        "Checkpoints the collector refused to cosign.",
        agents,
        |a| a.checkpoints_refused,
    );

    let kinds: Vec<&str> = FindingKind::ALL
        .iter()
        .map(|k| k.name())
        .chain(COLLECTOR_FINDINGS.iter().copied())
        .collect();
    let mut rows = Vec::new();
    for a in agents {
        for kind in &kinds {
            rows.push((
                [("agent", a.name.as_str()), ("kind", *kind)],
                a.findings.get(*kind).copied().unwrap_or(0),
            ));
        }
        // A kind this list does not know still shows up rather than vanish.
        for (kind, n) in a
            .findings
            .iter()
            .filter(|(k, _)| !kinds.contains(&k.as_str()))
        {
            rows.push(([("agent", a.name.as_str()), ("kind", kind.as_str())], *n));
        }
    }
    let samples: Vec<_> = rows.iter().map(|(l, v)| (&l[..], *v)).collect();
    p.counter(
        "lineage_collector_findings_total",
        "Findings by kind (docs/FORMAT.md), one series per kind from the start.",
        &samples,
    );

    gauge(
        &mut p,
        "lineage_collector_agent_connected",
        "1 while a pull stream to the agent is open.",
        agents,
        |a| f64::from(u8::from(a.connected)),
    );
    gauge(
        &mut p,
        "lineage_collector_agent_silent",
        "1 when no segment arrived within the heartbeat timeout.",
        agents,
        |a| f64::from(u8::from(a.silent)),
    );
    gauge(
        &mut p,
        "lineage_collector_agent_lag_seconds",
        "Seconds since the last segment from the agent was stored (since start when none was).",
        agents,
        |a| a.silent_for_secs as f64,
    );
    gauge(
        &mut p,
        "lineage_collector_agent_cursor_segment",
        "Next segment number the collector will pull (-1 before the first).",
        agents,
        |a| a.cursor.map_or(-1.0, |c| c as f64),
    );
    gauge(
        &mut p,
        "lineage_collector_agent_gaps",
        "Ranges the agent no longer had when the collector asked.",
        agents,
        |a| a.gaps.len() as f64,
    );
    gauge(
        &mut p,
        "lineage_collector_witness_behind_segments",
        "Segments stored but not yet covered by a checkpoint this collector cosigned.",
        agents,
        |a| a.witness_behind as f64,
    );

    if let Some(space) = store_dir.and_then(system::FsSpace::of) {
        p.gauge1(
            "lineage_collector_store_filesystem_size_bytes",
            "Size of the filesystem holding the store (fs stores only).",
            space.size_bytes as f64,
        );
        p.gauge1(
            "lineage_collector_store_filesystem_avail_bytes",
            "Bytes free for the collector on the store's filesystem (fs stores only).",
            space.avail_bytes as f64,
        );
    }
    if let Some(proc) = system::Process::read() {
        proc.render(&mut p);
    }
    p.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_starts_at_zero_and_findings_are_per_kind() {
        let a = AgentStatus::new("web-1", "unix:///x");
        let b = AgentStatus::new("web-2", "unix:///y");
        b.lock().unwrap().rejected("MODIFIED", 3, "x");
        b.lock().unwrap().stored(100, 4);
        let agents = vec![a.lock().unwrap().clone(), b.lock().unwrap().clone()];
        let text = render("c1", &agents, Some(Path::new("/")));
        assert!(text.contains("lineage_collector_segments_stored_total{agent=\"web-1\"} 0\n"));
        assert!(text.contains("lineage_collector_bytes_stored_total{agent=\"web-2\"} 100\n"));
        assert!(text
            .contains("lineage_collector_findings_total{agent=\"web-1\",kind=\"MODIFIED\"} 0\n"));
        assert!(text
            .contains("lineage_collector_findings_total{agent=\"web-2\",kind=\"MODIFIED\"} 1\n"));
        assert!(text.contains(
            "lineage_collector_findings_total{agent=\"web-2\",kind=\"HOST_CONFLICT\"} 0\n"
        ));
        // Every kind verify can report has its series before the first finding.
        for kind in FindingKind::ALL {
            let series = format!(
                "lineage_collector_findings_total{{agent=\"web-1\",kind=\"{}\"}} 0\n",
                kind.name()
            );
            assert!(text.contains(&series), "{series}");
        }
        assert!(
            text.contains("lineage_collector_findings_total{agent=\"web-1\",kind=\"TAMPER\"} 0\n")
        );
        assert!(text.contains("lineage_collector_agent_cursor_segment{agent=\"web-2\"} 4\n"));
        assert!(text.contains("lineage_collector_store_filesystem_avail_bytes "));
        assert!(text.contains("process_cpu_seconds_total "));
    }
}

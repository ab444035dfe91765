//! Turns [`Results`] into the verdicts on the targets, a markdown page and JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    gen::Storm,
    stats::median,
    suite::{med, Results, Setup, Trial},
};

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub target: String,
    pub goal: String,
    pub measured: String,
    /// None: not measured (section skipped, events not captured, auditd missing).
    pub met: Option<bool>,
}

fn fmt(x: f64, digits: usize) -> String {
    if x.is_finite() {
        format!("{x:.digits$}")
    } else {
        "—".into()
    }
}

fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    // `+ 0.0` turns the -0.0 an empty float sum starts from into 0.
    let s = format!("{:.0}", x.round() + 0.0);
    let (sign, digits) = s.strip_prefix('-').map(|d| ("-", d)).unwrap_or(("", &s));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn trials(r: &Results, storm: Storm, setup: Setup) -> Vec<&Trial> {
    r.overhead
        .iter()
        .filter(|t| t.storm == storm && t.setup == setup)
        .collect()
}

/// Median over rounds of (setup wall / no-agent wall) within the same round.
pub fn ratio(r: &Results, storm: Storm, setup: Setup, f: impl Fn(&Trial) -> f64) -> f64 {
    let base = trials(r, storm, Setup::None);
    let other = trials(r, storm, setup);
    let v: Vec<f64> = base
        .iter()
        .zip(other.iter())
        .map(|(b, o)| f(o) / f(b))
        .collect();
    median(&v)
}

fn wall(t: &Trial) -> f64 {
    t.gen.wall_ns as f64
}

fn cpu(t: &Trial) -> f64 {
    t.gen.cpu_ns() as f64
}

fn captured_note(r: &Results, storm: Storm) -> Option<&'static str> {
    r.not_captured
        .iter()
        .any(|s| s == storm.name())
        .then_some("not captured by this agent build")
}

/// Whether every Lineage trial of the storm at full speed put every event on the chain.
fn all_on_chain(r: &Results, storm: Storm) -> (usize, usize, u64, u64) {
    let ts = trials(r, storm, Setup::Lineage);
    let ok = ts.iter().filter(|t| t.complete() == Some(true)).count();
    let ops: u64 = ts.iter().map(|t| t.gen.ops).sum();
    let got: u64 = ts.iter().filter_map(|t| t.captured).sum();
    (ok, ts.len(), ops, got)
}

pub fn verdicts(r: &Results) -> Vec<Verdict> {
    let mut v = Vec::new();
    let seal_ms = r.plan.as_ref().map(|p| p.seal_interval_ms).unwrap_or(1000) as f64;
    if !r.pipeline.is_empty() {
        let eps = median(
            &r.pipeline
                .iter()
                .filter(|p| p.durable)
                .map(|p| p.events_per_s)
                .collect::<Vec<_>>(),
        );
        v.push(Verdict {
            target: "1. pipeline capacity, one core".into(),
            goal: "≥ 1,000,000 events/s".into(),
            measured: format!("{} events/s ({:.2}× the goal)", thousands(eps), eps / 1e6),
            met: Some(eps >= 1e6),
        });
    }
    if !r.overhead.is_empty() {
        let storm = Storm::Openat;
        if let Some(note) = captured_note(r, storm) {
            v.push(Verdict {
                target: "2. zero loss at the fastest openat loop".into(),
                goal: "all events on the chain, no LOSS".into(),
                measured: note.into(),
                met: None,
            });
        } else {
            let (ok, n, ops, got) = all_on_chain(r, storm);
            let rate = med(&trials(r, storm, Setup::Lineage), |t| {
                Some(t.gen.achieved_rate())
            });
            v.push(Verdict {
                target: "2. zero loss at the fastest openat loop".into(),
                goal: "all events on the chain, no LOSS".into(),
                measured: format!(
                    "{ok}/{n} runs complete at {} opens/s, the loop's top rate with the agent (without: {}/s); {} of {} on the chain",
                    thousands(rate),
                    thousands(med(&trials(r, storm, Setup::None), |t| Some(t.gen.achieved_rate()))),
                    thousands(got as f64),
                    thousands(ops as f64)
                ),
                met: if got == 0 { None } else { Some(ok == n) },
            });
        }
        for (storm, goal) in [
            (Storm::Openat, 1.5),
            (Storm::Exec, 1.1),
            (Storm::Connect, 1.3),
        ] {
            let x = ratio(r, storm, Setup::Lineage, wall);
            let (ok, n, ops, got) = all_on_chain(r, storm);
            let note = captured_note(r, storm);
            let measured = match note {
                Some(note) => format!(
                    "{}× wall ({note}: the figure is the agent's cost without the probe)",
                    fmt(x, 2)
                ),
                None => format!(
                    "{}× wall; {ok}/{n} runs with every event on the chain ({} of {})",
                    fmt(x, 2),
                    thousands(got as f64),
                    thousands(ops as f64)
                ),
            };
            v.push(Verdict {
                target: format!("3. {} storm overhead", storm.name()),
                goal: format!("≤ {goal}× no agent, every event on the chain"),
                measured,
                met: if note.is_some() || !x.is_finite() {
                    None
                } else {
                    Some(x <= goal && ok == n)
                },
            });
        }
    }
    if !r.latency.is_empty() {
        let p99 = median(&r.latency.iter().map(|l| l.tail_p99_ms).collect::<Vec<_>>());
        let p50 = median(&r.latency.iter().map(|l| l.tail_p50_ms).collect::<Vec<_>>());
        v.push(Verdict {
            target: "4. exec → Tail client".into(),
            goal: "p99 ≤ 20 ms".into(),
            measured: format!("p50 {} ms, p99 {} ms", fmt(p50, 2), fmt(p99, 2)),
            met: p99.is_finite().then_some(p99 <= 20.0),
        });
        let p99 = median(
            &r.latency
                .iter()
                .map(|l| l.sealed_p99_ms)
                .collect::<Vec<_>>(),
        );
        let p50 = median(
            &r.latency
                .iter()
                .map(|l| l.sealed_p50_ms)
                .collect::<Vec<_>>(),
        );
        v.push(Verdict {
            target: "4. exec → sealed and durable".into(),
            goal: format!("p99 ≤ {} ms (seal interval + 50 ms)", seal_ms + 50.0),
            measured: format!("p50 {} ms, p99 {} ms", fmt(p50, 0), fmt(p99, 0)),
            met: p99.is_finite().then_some(p99 <= seal_ms + 50.0),
        });
        let rss = median(
            &r.latency
                .iter()
                .map(|l| l.agent_rss_kib as f64)
                .collect::<Vec<_>>(),
        );
        v.push(Verdict {
            target: "5. agent RSS at steady state".into(),
            goal: "≤ 64 MiB".into(),
            measured: format!("{} MiB", fmt(rss / 1024.0, 1)),
            met: rss.is_finite().then_some(rss <= 64.0 * 1024.0),
        });
    }
    v
}

pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(w, "# Lineage benchmarks — {} run\n", r.mode);
    if r.mode == "quick" {
        let _ = writeln!(w, "> **Smoke run** (`--quick`): one run per figure, small workloads. Do not quote these numbers.\n");
    }
    if let Some(m) = &r.machine {
        let _ = writeln!(
            w,
            "Machine: {} × {} cores, kernel {}. Agent: {}, binary built {} UTC, run from commit {}. Load average (1/5/15 min) before: {}, after: {}. Suite took {:.0} s.\n",
            m.cpu_model, m.cores, m.kernel, m.agent_version, m.agent_built, m.commit, m.load_before, m.load_after, m.duration_s
        );
        let load1 = |l: &str| {
            l.split_whitespace()
                .next()
                .and_then(|x| x.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let _ = writeln!(w, "Outside the suite's own processes, the machine was {}% busy during the run (the load average after includes the suite's own generator, agent and auditd).\n", fmt(m.other_cpu_pct, 0));
        if load1(&m.load_before) > 0.5 || m.other_cpu_pct > 15.0 {
            let _ = writeln!(w, "> **Taken under load**: other work shared these {} cores (1-minute load before the run {}, {}% of the machine busy outside the suite during it). Ratios are measured within the same round and are less affected than absolute figures.\n", m.cores, m.load_before.split_whitespace().next().unwrap_or("?"), fmt(m.other_cpu_pct, 0));
        }
    }
    let all: Vec<&Trial> = r
        .overhead
        .iter()
        .chain(r.sweep.iter().flat_map(|s| s.runs.iter()))
        .collect();
    let shared = all.iter().filter(|t| t.other_agents > 0).count();
    if shared > 0 {
        let _ = writeln!(w, "> **Other Lineage agents were running** during {shared} of {} storms (their probes run on every syscall too, so overhead figures are inflated for those runs; see `other_agents` in the JSON).\n", all.len());
    }
    let runs = r.plan.as_ref().map(|p| p.runs).unwrap_or(0);
    let _ = writeln!(w, "Every figure is the median of {runs} run(s); ratios are the median of per-round ratios (each setup measured back to back in the same round). See `docs/BENCHMARKS.md` for the method.\n");

    let _ = writeln!(
        w,
        "## Targets\n\n| target | goal | measured | met |\n|---|---|---|---|"
    );
    for v in verdicts(r) {
        let met = match v.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "n/a",
        };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} |",
            v.target, v.goal, v.measured, met
        );
    }

    if !r.pipeline.is_empty() {
        let _ = writeln!(
            w,
            "\n## 1. Pipeline capacity (no kernel, one core{})\n",
            r.pipeline_cpu
                .map(|c| format!(", pinned to CPU {c}"))
                .unwrap_or_default()
        );
        let p0 = &r.pipeline[0];
        let _ = writeln!(w, "{} events per run (exec, fork, exit in turn); JSON payload {} bytes on average, entry {} bytes. *To disk* is the agent's path: JSON, EVENT entry, chain append, journal write, seal every 100,000 entries or 16 MiB with the segment written and fsynced. *CPU only* skips the journal and segment writes (still seals and signs), to separate CPU from storage.\n",
            thousands(p0.events as f64), r.pipeline_payload_bytes, fmt(p0.entry_bytes, 0));
        let _ = writeln!(w, "| variant | events/s | JSON ns/event | append+journal ns/event | seal+sign+store ns/event | seals per run | slowest seal ms |\n|---|---|---|---|---|---|---|");
        for durable in [true, false] {
            let p: Vec<&crate::pipeline::CapacityRun> =
                r.pipeline.iter().filter(|p| p.durable == durable).collect();
            if p.is_empty() {
                continue;
            }
            let m = |f: fn(&crate::pipeline::CapacityRun) -> f64| {
                median(&p.iter().map(|x| f(x)).collect::<Vec<_>>())
            };
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} |",
                if durable { "to disk" } else { "CPU only" },
                thousands(m(|x| x.events_per_s)),
                fmt(m(|x| x.json_ns_per_event), 0),
                fmt(m(|x| x.chain_ns_per_event), 0),
                fmt(m(|x| x.seal_ns_per_event), 0),
                fmt(m(|x| x.seals as f64), 0),
                fmt(m(|x| x.max_seal_ms), 1)
            );
        }
        let _ = writeln!(w, "\nNot included (agent binary code, not a library): ring-buffer record decoding and the lineage join.");
    }

    if !r.sweep.is_empty() || !r.overhead.is_empty() {
        let _ = writeln!(w, "\n## 2. Kernel to disk: paced storms, loss\n");
        let _ = writeln!(w, "Each run starts a fresh agent, runs one paced generator, waits until the chain stops growing, stops the agent (SIGTERM: final drain and seal) and reads the chain back with `lineagectl entries --json`. *On chain* counts the generator's own events; *declared lost* sums the LOSS entries (all kinds); *unaccounted* is generated − on chain − declared.\n");
        let _ = writeln!(w, "| storm | asked/s | achieved/s | generated | on chain | declared lost | reservation failures | unaccounted | runs with zero loss |\n|---|---|---|---|---|---|---|---|---|");
        let mut rows: Vec<(Storm, String, Vec<&Trial>)> = r
            .sweep
            .iter()
            .map(|s| (s.storm, thousands(s.rate), s.runs.iter().collect()))
            .collect();
        for storm in Storm::ALL {
            let ts = trials(r, storm, Setup::Lineage);
            if !ts.is_empty() {
                rows.push((storm, "unpaced".into(), ts));
            }
        }
        rows.sort_by_key(|(s, _, _)| Storm::ALL.iter().position(|x| x == s));
        for (storm, asked, ts) in &rows {
            let gen: u64 = ts.iter().map(|t| t.gen.ops).sum();
            let got: u64 = ts.iter().filter_map(|t| t.captured).sum();
            let lost: u64 = ts
                .iter()
                .filter_map(|t| t.chain.as_ref().map(|c| c.loss_missing))
                .sum();
            let fails: f64 = ts
                .iter()
                .filter_map(|t| {
                    t.metrics_reservation_failures
                        .as_ref()
                        .map(|m| m.values().sum::<f64>())
                })
                .sum();
            let ok = ts.iter().filter(|t| t.complete() == Some(true)).count();
            let uncaptured = captured_note(r, *storm).is_some();
            let note = if uncaptured {
                " (not captured by this agent build)"
            } else {
                ""
            };
            let unaccounted = if uncaptured {
                "—".to_owned()
            } else {
                (gen as i64 - got as i64 - lost as i64).to_string()
            };
            let _ = writeln!(
                w,
                "| {}{} | {} | {} | {} | {} | {} | {} | {} | {}/{} |",
                storm.name(),
                note,
                asked,
                thousands(med(ts, |t| Some(t.gen.achieved_rate()))),
                thousands(gen as f64),
                thousands(got as f64),
                thousands(lost as f64),
                thousands(fails),
                unaccounted,
                ok,
                ts.len()
            );
        }
        for storm in Storm::ALL {
            if captured_note(r, storm).is_some() {
                continue;
            }
            let best = rows
                .iter()
                .filter(|(s, _, ts)| {
                    *s == storm && !ts.is_empty() && ts.iter().all(|t| t.complete() == Some(true))
                })
                .map(|(_, _, ts)| med(ts, |t| Some(t.gen.achieved_rate())))
                .fold(f64::NAN, f64::max);
            let _ = writeln!(
                w,
                "\nHighest {} rate with zero loss in every run: {}/s.",
                storm.name(),
                thousands(best)
            );
        }
        if !r.not_captured.is_empty() {
            let _ = writeln!(w, "\nNot captured by this agent build (no such events on the chain): {}. Their sweep stopped at the first step; the figures above are the storms' cost with the agent running, not capture figures.", r.not_captured.join(", "));
        }
    }

    if !r.overhead.is_empty() {
        let _ = writeln!(w, "\n## 3. Overhead: unpaced storms\n");
        if let Some(why) = &r.auditd_skipped {
            let _ = writeln!(w, "auditd comparison skipped: {why}.\n");
        }
        let _ = writeln!(w, "Wall time and CPU (generator + its children) of the same fixed storm; ratio = median over rounds of (setup ÷ no agent in the same round). Completeness: Lineage — generator's events on the chain / operations; auditd — SYSCALL records in its log / operations, and records the kernel dropped (`auditctl -s` lost).\n");
        let _ = writeln!(w, "| storm | setup | operations | wall s | ops/s | CPU s | wall ratio | CPU ratio | completeness |\n|---|---|---|---|---|---|---|---|---|");
        for storm in Storm::ALL {
            for setup in [Setup::None, Setup::Lineage, Setup::Auditd] {
                let ts = trials(r, storm, setup);
                if ts.is_empty() {
                    continue;
                }
                let complete = match setup {
                    Setup::None => "—".to_owned(),
                    Setup::Lineage => {
                        let (ok, n, ops, got) = all_on_chain(r, storm);
                        match captured_note(r, storm) {
                            Some(n) => n.to_owned(),
                            None => format!(
                                "{} / {} ({ok}/{n} runs complete)",
                                thousands(got as f64),
                                thousands(ops as f64)
                            ),
                        }
                    }
                    Setup::Auditd => {
                        let rec: u64 = ts
                            .iter()
                            .filter_map(|t| t.audit.as_ref().map(|a| a.records))
                            .sum();
                        let lost: u64 = ts
                            .iter()
                            .filter_map(|t| t.audit.as_ref().map(|a| a.kernel_lost))
                            .sum();
                        let ops: u64 = ts.iter().map(|t| t.gen.ops).sum();
                        format!(
                            "{} / {} records, {} lost in kernel",
                            thousands(rec as f64),
                            thousands(ops as f64),
                            thousands(lost as f64)
                        )
                    }
                };
                let (wr, cr) = if setup == Setup::None {
                    ("1.00".to_owned(), "1.00".to_owned())
                } else {
                    (
                        fmt(ratio(r, storm, setup, wall), 2),
                        fmt(ratio(r, storm, setup, cpu), 2),
                    )
                };
                let _ = writeln!(
                    w,
                    "| {} | {} | {} | {} | {} | {} | {}× | {}× | {} |",
                    storm.name(),
                    setup.name(),
                    thousands(ts[0].gen.ops as f64),
                    fmt(med(&ts, |t| Some(t.gen.wall_ns as f64 / 1e9)), 3),
                    thousands(med(&ts, |t| Some(t.gen.achieved_rate()))),
                    fmt(med(&ts, |t| Some(t.gen.cpu_ns() as f64 / 1e9)), 3),
                    wr,
                    cr,
                    complete
                );
            }
        }
    }

    if !r.latency.is_empty() {
        let l = &r.latency;
        let m = |f: fn(&crate::latency::LatencyRun) -> f64| {
            median(&l.iter().map(f).collect::<Vec<_>>())
        };
        let p = r.plan.as_ref();
        let _ = writeln!(w, "\n## 4. Latency\n");
        let _ = writeln!(w, "{} execs of a uniquely named binary, one every {} ms, per run; seal interval {} ms (the agent's default). Median over runs of each run's percentile.\n",
            p.map(|p| p.latency_samples).unwrap_or(0), p.map(|p| p.latency_interval_ms).unwrap_or(0), p.map(|p| p.seal_interval_ms).unwrap_or(0));
        let _ = writeln!(
            w,
            "| path | p50 ms | p99 ms | max ms | samples seen |\n|---|---|---|---|---|"
        );
        let samples: u64 = l.iter().map(|x| x.samples).sum();
        let tailed: u64 = l.iter().map(|x| x.tail_received).sum();
        let sealed: u64 = l.iter().map(|x| x.sealed_found).sum();
        let _ = writeln!(
            w,
            "| spawn call → Tail client | {} | {} | {} | {tailed}/{samples} |",
            fmt(m(|x| x.tail_p50_ms), 2),
            fmt(m(|x| x.tail_p99_ms), 2),
            fmt(m(|x| x.tail_max_ms), 2)
        );
        let _ = writeln!(
            w,
            "| exec tracepoint → Tail client | {} | {} | — | {tailed}/{samples} |",
            fmt(m(|x| x.tail_from_kernel_p50_ms), 2),
            fmt(m(|x| x.tail_from_kernel_p99_ms), 2)
        );
        let _ = writeln!(
            w,
            "| spawn call → sealed segment on disk | {} | {} | {} | {sealed}/{samples} |",
            fmt(m(|x| x.sealed_p50_ms), 0),
            fmt(m(|x| x.sealed_p99_ms), 0),
            fmt(m(|x| x.sealed_max_ms), 0)
        );
        let missed: u64 = l.iter().map(|x| x.tail_missed).sum();
        if missed > 0 {
            let _ = writeln!(
                w,
                "\nThe agent reported {missed} events missed by the Tail client."
            );
        }
    }

    if !r.overhead.is_empty() || !r.latency.is_empty() {
        let _ = writeln!(w, "\n## 5. Cost\n");
        if !r.latency.is_empty() {
            let rss = median(
                &r.latency
                    .iter()
                    .map(|l| l.agent_rss_kib as f64)
                    .collect::<Vec<_>>(),
            );
            let _ = writeln!(w, "Steady state (end of a latency run: ~100 execs/s for a few seconds): RSS {} MiB.\n", fmt(rss / 1024.0, 1));
        }
        if !r.overhead.is_empty() {
            let _ = writeln!(w, "| storm (unpaced, with Lineage) | agent CPU µs per chain entry | agent CPU, % of one core over the window | chain entries per run | RSS before MiB | RSS max MiB | VmHWM MiB |\n|---|---|---|---|---|---|---|");
            for storm in Storm::ALL {
                let ts = trials(r, storm, Setup::Lineage);
                if ts.is_empty() {
                    continue;
                }
                let mib = |x: Option<u64>| x.map(|k| k as f64 / 1024.0);
                let _ = writeln!(
                    w,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    storm.name(),
                    fmt(med(&ts, |t| t.agent_cpu_us_per_event()), 2),
                    fmt(
                        med(&ts, |t| Some(
                            t.agent_cpu_ns? as f64 / t.agent_window_ns?.max(1) as f64 * 100.0
                        )),
                        0
                    ),
                    thousands(med(&ts, |t| t.agent_entries.map(|x| x as f64))),
                    fmt(med(&ts, |t| mib(t.agent_rss_before_kib)), 1),
                    fmt(med(&ts, |t| mib(t.agent_rss_max_kib)), 1),
                    fmt(med(&ts, |t| mib(t.agent_hwm_kib)), 1)
                );
            }
            let _ = writeln!(w, "\nAgent CPU (all its threads, `/proc/<pid>/stat`) is measured from the storm's start until the chain stops growing, so it includes draining any backlog, and divided by the chain entries appended in that window (every event on the host, not only the generator's). RSS is `VmRSS` sampled every 50 ms; VmHWM is the kernel's peak.");
        }
    }
    if !r.bpf_costs.is_empty() {
        let _ = writeln!(w, "\n## Profile: the agent's eBPF programs\n");
        let _ = writeln!(w, "A separate pass after the timed runs (BPF statistics add two clock reads per call): one agent, each unpaced storm once, `kernel.bpf_stats_enabled = 1`. Time per call of each program, and summed per generator operation (programs also run for other processes' syscalls, so per-operation figures are upper bounds).\n");
        let _ = writeln!(
            w,
            "| storm | program | calls | ns per call | ns per operation |\n|---|---|---|---|---|"
        );
        // Programs that barely ran during a storm (other processes' syscalls) are in the JSON only.
        for c in r.bpf_costs.iter().filter(|c| c.ns_per_op >= 10.0) {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} |",
                c.storm,
                c.program,
                thousands(c.calls as f64),
                fmt(c.ns_per_call, 0),
                fmt(c.ns_per_op, 0)
            );
        }
    }
    for n in &r.notes {
        let _ = writeln!(w, "\n{n}");
    }
    s
}

/// UTC `YYYYMMDD-HHMMSS` from Unix seconds (no date crate needed).
pub fn stamp(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

pub fn write(
    r: &Results,
    out: &std::path::Path,
) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    std::fs::create_dir_all(out)?;
    let md = markdown(r);
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "verdicts": verdicts(r),
        "results": r,
    }))?;
    let unix = r.machine.as_ref().map(|m| m.started_unix).unwrap_or(0);
    let tag = format!("{}-{}", stamp(unix), r.mode);
    let md_path = out.join("latest.md");
    let json_path = out.join("latest.json");
    std::fs::write(&md_path, &md)?;
    std::fs::write(&json_path, &json)?;
    std::fs::write(out.join(format!("{tag}.md")), &md)?;
    std::fs::write(out.join(format!("{tag}.json")), &json)?;
    Ok((md_path, json_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_and_thousands() {
        assert_eq!(stamp(0), "19700101-000000");
        assert_eq!(stamp(1_795_000_000), "20261118-110640");
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(f64::NAN), "—");
    }

    fn trial(setup: Setup, wall_ns: u64, ops: u64, captured: Option<u64>) -> Trial {
        Trial {
            storm: Storm::Connect,
            setup,
            gen: crate::gen::GenResult {
                ops,
                wall_ns,
                ..Default::default()
            },
            chain: captured.map(|_| crate::chain::ChainCount::default()),
            captured,
            agent_cpu_ns: None,
            agent_entries: None,
            agent_window_ns: None,
            agent_rss_before_kib: None,
            agent_rss_max_kib: None,
            agent_hwm_kib: None,
            metrics_loss: None,
            metrics_reservation_failures: None,
            audit: None,
            other_agents: 0,
        }
    }

    #[test]
    fn ratios_pair_rounds_and_verdicts_need_every_event() {
        let mut r = Results::default();
        // Round 1: 1.0 s vs 1.2 s; round 2: 2.0 s vs 2.6 s (drift); ratios 1.2 and 1.3.
        for (base, with) in [
            (1_000_000_000, 1_200_000_000),
            (2_000_000_000, 2_600_000_000),
        ] {
            r.overhead.push(trial(Setup::None, base, 100, None));
            r.overhead.push(trial(Setup::Lineage, with, 100, Some(100)));
        }
        let x = ratio(&r, Storm::Connect, Setup::Lineage, wall);
        assert!((x - 1.25).abs() < 1e-9, "{x}");
        let v = verdicts(&r);
        let connect = v.iter().find(|v| v.target.contains("connect")).unwrap();
        assert_eq!(connect.met, Some(true));
        // One event missing from the chain fails the target whatever the ratio.
        r.overhead[3].captured = Some(99);
        let v = verdicts(&r);
        let connect = v.iter().find(|v| v.target.contains("connect")).unwrap();
        assert_eq!(connect.met, Some(false));
    }

    #[test]
    fn an_empty_result_renders() {
        let md = markdown(&Results::default());
        assert!(md.contains("## Targets"));
        assert!(verdicts(&Results::default()).is_empty());
    }
}

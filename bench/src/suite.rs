//! The suite: runs every section and collects typed results for the report.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _};
use serde::Serialize;

use crate::{
    agent::{self, Agent, RssSampler},
    auditd::{self, AuditCount, Auditd},
    chain::{self, ChainCount},
    gen::{GenResult, Storm},
    latency::{self, LatencyRun},
    pipeline::{self, CapacityRun},
    stats::median,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    Pipeline,
    Latency,
    Sweep,
    Overhead,
}

#[derive(Debug, clap::Args)]
pub struct SuiteArgs {
    /// The agent binary under test.
    #[arg(long, default_value = "target/release/lineage-agent")]
    pub agent: PathBuf,
    /// lineagectl, used to read the chain back (`entries --json`).
    #[arg(long, default_value = "target/release/lineagectl")]
    pub lineagectl: PathBuf,
    /// Where latest.md, latest.json and the timestamped copies go.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Smoke run (≤ 2 minutes): one run per figure and small workloads. Not for quoting.
    #[arg(long)]
    pub quick: bool,
    /// Runs per figure (default 5, quick 1).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Only these sections (repeatable); default all.
    #[arg(long, value_enum)]
    pub only: Vec<Section>,
    /// Skip the auditd comparison.
    #[arg(long)]
    pub no_auditd: bool,
    /// Scratch directory (default: a new directory under /var/tmp, removed afterwards).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// Workload sizes for one mode.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub runs: usize,
    pub pipeline_events: u64,
    /// Unpaced storm sizes for the overhead comparison.
    pub overhead_count: BTreeMap<String, u64>,
    /// Paced rates for the sweep, per storm.
    pub sweep_rates: BTreeMap<String, Vec<f64>>,
    pub sweep_seconds: f64,
    pub latency_samples: u64,
    pub latency_interval_ms: u64,
    pub seal_interval_ms: u64,
}

impl Plan {
    pub fn new(quick: bool, runs: Option<usize>) -> Plan {
        let m = |v: [(Storm, u64); 3]| v.iter().map(|(s, n)| (s.name().to_owned(), *n)).collect();
        let r = |v: [(Storm, Vec<f64>); 3]| {
            v.into_iter()
                .map(|(s, n)| (s.name().to_owned(), n))
                .collect()
        };
        if quick {
            Plan {
                runs: runs.unwrap_or(1),
                pipeline_events: 200_000,
                overhead_count: m([
                    (Storm::Openat, 50_000),
                    (Storm::Exec, 300),
                    (Storm::Connect, 3_000),
                ]),
                sweep_rates: r([
                    (Storm::Openat, vec![100_000.0, 300_000.0]),
                    (Storm::Exec, vec![500.0]),
                    (Storm::Connect, vec![10_000.0]),
                ]),
                sweep_seconds: 1.0,
                latency_samples: 50,
                latency_interval_ms: 10,
                seal_interval_ms: 1000,
            }
        } else {
            Plan {
                runs: runs.unwrap_or(5),
                pipeline_events: 1_000_000,
                overhead_count: m([
                    (Storm::Openat, 300_000),
                    (Storm::Exec, 1_500),
                    (Storm::Connect, 15_000),
                ]),
                sweep_rates: r([
                    (
                        Storm::Openat,
                        vec![50_000.0, 100_000.0, 200_000.0, 300_000.0, 400_000.0],
                    ),
                    (Storm::Exec, vec![250.0, 500.0, 1_000.0]),
                    (Storm::Connect, vec![5_000.0, 10_000.0, 20_000.0]),
                ]),
                sweep_seconds: 1.5,
                latency_samples: 200,
                latency_interval_ms: 10,
                seal_interval_ms: 1000,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Setup {
    None,
    Lineage,
    Auditd,
}

impl Setup {
    pub fn name(self) -> &'static str {
        match self {
            Setup::None => "no agent",
            Setup::Lineage => "Lineage",
            Setup::Auditd => "auditd",
        }
    }
}

/// One storm under one setup.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub storm: Storm,
    pub setup: Setup,
    pub gen: GenResult,
    /// Lineage: what the chain holds for this generator, and the loss it declares.
    pub chain: Option<ChainCount>,
    pub captured: Option<u64>,
    /// Lineage: agent CPU over the storm (from its start until the chain stopped growing).
    pub agent_cpu_ns: Option<u64>,
    /// Lineage: chain entries appended over the same window (metrics).
    pub agent_entries: Option<u64>,
    /// Lineage: length of that window (storm start → chain stopped growing).
    pub agent_window_ns: Option<u64>,
    pub agent_rss_before_kib: Option<u64>,
    pub agent_rss_max_kib: Option<u64>,
    pub agent_hwm_kib: Option<u64>,
    /// Lineage: the metrics page's loss counters at the end (all reasons) and reservation
    /// failures by kind.
    pub metrics_loss: Option<f64>,
    pub metrics_reservation_failures: Option<BTreeMap<String, f64>>,
    pub audit: Option<AuditCount>,
    /// Other `lineage-agent` processes seen just before the storm (their probes also run).
    pub other_agents: usize,
}

impl Trial {
    /// Every generated operation is on the chain and nothing was declared lost.
    pub fn complete(&self) -> Option<bool> {
        let c = self.chain.as_ref()?;
        Some(self.captured? >= self.gen.ops && c.loss_entries == 0)
    }

    pub fn agent_cpu_us_per_event(&self) -> Option<f64> {
        let cpu = self.agent_cpu_ns? as f64;
        let n = self.agent_entries? as f64;
        (n > 0.0).then(|| cpu / 1e3 / n)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    pub load_before: String,
    /// Includes the suite's own processes (generator, agent, auditd), so it is high after
    /// any run; `other_cpu_pct` is the figure that tells whether other work shared the cores.
    pub load_after: String,
    /// CPU used during the run by everything outside the suite's own processes, as % of all
    /// cores (busy time from /proc/stat minus the suite's and its children's CPU). Kernel
    /// threads working for the suite (kauditd, writeback) count as outside.
    pub other_cpu_pct: f64,
    pub agent_version: String,
    /// When the agent binary under test was built (its mtime, UTC): `commit` is the checkout
    /// the suite ran in, which may be newer than the binary.
    pub agent_built: String,
    pub commit: String,
    pub started_unix: u64,
    pub duration_s: f64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Results {
    pub mode: String,
    pub machine: Option<Machine>,
    pub plan: Option<Plan>,
    pub pipeline: Vec<CapacityRun>,
    pub pipeline_payload_bytes: usize,
    pub pipeline_cpu: Option<usize>,
    pub latency: Vec<LatencyRun>,
    /// (storm, requested rate) → runs.
    pub sweep: Vec<SweepStep>,
    /// Storms whose events this agent build does not produce (probe not there yet).
    pub not_captured: Vec<String>,
    pub overhead: Vec<Trial>,
    pub auditd_skipped: Option<String>,
    /// Profiling pass: the agent's eBPF programs' time per call during each storm.
    pub bpf_costs: Vec<crate::bpfstats::ProgCost>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepStep {
    pub storm: Storm,
    pub rate: f64,
    pub runs: Vec<Trial>,
}

pub struct Suite {
    pub args: SuiteArgs,
    pub plan: Plan,
    pub work: PathBuf,
    _owned: Option<tempfile::TempDir>,
    trials: u64,
    probe_file: PathBuf,
    agent_built: String,
}

/// Busy CPU time of the whole machine (ns), from the first line of /proc/stat.
fn machine_busy_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0usize, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|i| f.get(*i))
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    busy * (1_000_000_000 / hz)
}

/// CPU of this process and its reaped children (ns).
fn own_cpu_ns() -> u64 {
    let mut total = 0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage fills the struct we own.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut ru) };
        let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
        total += ns(ru.ru_utime) + ns(ru.ru_stime);
    }
    total
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A file's mtime as `YYYYMMDD-HHMMSS` (UTC).
fn built(path: &Path) -> String {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| crate::report::stamp(d.as_secs()))
        .unwrap_or_default()
}

fn machine(agent: &Path) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let out = |cmd: &mut Command| {
        cmd.stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    Machine {
        cpu_model,
        cores,
        kernel,
        load_before: loadavg(),
        load_after: String::new(),
        other_cpu_pct: f64::NAN,
        agent_version: out(Command::new(agent).arg("--version")),
        agent_built: built(agent),
        commit: out(Command::new("git").args(["rev-parse", "--short", "HEAD"])),
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        duration_s: 0.0,
    }
}

impl Suite {
    pub fn new(args: SuiteArgs) -> anyhow::Result<Suite> {
        let plan = Plan::new(args.quick, args.runs);
        let (work, owned) = match &args.work_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("lineage-bench-")
                    .tempdir_in("/var/tmp")?;
                crate::children::scratch(t.path().to_owned());
                (t.path().to_owned(), Some(t))
            }
        };
        // Private copies of the binaries: a rebuild of target/release during the run must not
        // change what is measured half-way.
        let mut args = args;
        let agent_built = built(&args.agent);
        for (name, path) in [
            ("lineage-agent", &mut args.agent),
            ("lineagectl", &mut args.lineagectl),
        ] {
            if path.exists() {
                let copy = work.join(name);
                std::fs::copy(&*path, &copy)
                    .with_context(|| format!("copying {}", path.display()))?;
                *path = copy;
            }
        }
        let probe_file = work.join("openat-target");
        std::fs::write(&probe_file, b"lineage-bench\n")?;
        Ok(Suite {
            args,
            plan,
            work,
            _owned: owned,
            trials: 0,
            probe_file,
            agent_built,
        })
    }

    fn wants(&self, s: Section) -> bool {
        self.args.only.is_empty() || self.args.only.contains(&s)
    }

    pub fn run(&mut self) -> anyhow::Result<Results> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("the benchmarks load eBPF programs and start auditd: run as root");
        }
        let kernel = [Section::Latency, Section::Sweep, Section::Overhead]
            .iter()
            .any(|s| self.wants(*s));
        for (what, p) in [
            ("agent", &self.args.agent),
            ("lineagectl", &self.args.lineagectl),
        ] {
            if kernel && !p.exists() {
                bail!(
                    "{what} binary {} not found (build with cargo build --release)",
                    p.display()
                );
            }
        }
        let started = std::time::Instant::now();
        let (busy0, own0) = (machine_busy_ns(), own_cpu_ns());
        let mut r = Results {
            mode: if self.args.quick {
                "quick".into()
            } else {
                "full".into()
            },
            machine: Some(Machine {
                agent_built: self.agent_built.clone(),
                ..machine(&self.args.agent)
            }),
            plan: Some(self.plan.clone()),
            ..Default::default()
        };
        // After each section the results so far are written, so a failure later still
        // leaves what was measured (the page then lacks the later sections).
        let out = self.args.out.clone();
        let checkpoint = |r: &Results| {
            if let Err(e) = crate::report::write(r, &out) {
                eprintln!("   writing partial results: {e:#}");
            }
        };
        if self.wants(Section::Pipeline) {
            self.pipeline(&mut r)?;
            checkpoint(&r);
        }
        if self.wants(Section::Latency) {
            self.latency(&mut r)?;
            checkpoint(&r);
        }
        if self.wants(Section::Sweep) {
            self.sweep(&mut r)?;
            checkpoint(&r);
        }
        if self.wants(Section::Overhead) {
            self.overhead(&mut r)?;
            if crate::bpfstats::available() {
                if let Err(e) = self.bpf_profile(&mut r) {
                    r.notes
                        .push(format!("The eBPF profiling pass failed: {e:#}"));
                }
            } else {
                r.notes.push("eBPF program costs not measured: bpftool or kernel.bpf_stats_enabled unavailable.".into());
            }
        }
        if let Some(m) = r.machine.as_mut() {
            m.load_after = loadavg();
            m.duration_s = started.elapsed().as_secs_f64();
            let other = machine_busy_ns().saturating_sub(busy0) as f64
                - own_cpu_ns().saturating_sub(own0) as f64;
            m.other_cpu_pct =
                (other.max(0.0) / (m.duration_s * 1e9 * m.cores.max(1) as f64) * 100.0).min(100.0);
        }
        Ok(r)
    }

    fn pipeline(&mut self, r: &mut Results) -> anyhow::Result<()> {
        eprintln!(
            "== pipeline capacity ({} events × {} runs)",
            self.plan.pipeline_events, self.plan.runs
        );
        r.pipeline_payload_bytes = pipeline::payload_len();
        // Pin a dedicated thread so the rest of the harness keeps its own affinity.
        let events = self.plan.pipeline_events;
        let runs = self.plan.runs;
        let base = self.work.join("pipeline");
        let (cpu, out) = std::thread::spawn(move || -> anyhow::Result<(Option<usize>, Vec<CapacityRun>)> {
            let cpu = pipeline::pin_to_one_cpu();
            let mut out = Vec::new();
            for i in 0..runs {
                for durable in [true, false] {
                    let dir = base.join(format!("{i}-{durable}"));
                    std::fs::create_dir_all(&dir)?;
                    let run = pipeline::run_once(events, &dir, durable)?;
                    eprintln!("   {} {:.0} events/s (json {:.0} ns, chain+journal {:.0} ns, seal {:.0} ns per event)",
                        if durable { "to disk: " } else { "CPU only:" },
                        run.events_per_s, run.json_ns_per_event, run.chain_ns_per_event, run.seal_ns_per_event);
                    out.push(run);
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
            Ok((cpu, out))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("pipeline thread panicked"))??;
        r.pipeline_cpu = cpu;
        r.pipeline = out;
        Ok(())
    }

    fn latency(&mut self, r: &mut Results) -> anyhow::Result<()> {
        eprintln!(
            "== latency ({} samples every {} ms × {} runs)",
            self.plan.latency_samples, self.plan.latency_interval_ms, self.plan.runs
        );
        for _ in 0..self.plan.runs {
            let run = match latency::run_once(
                &self.args.agent,
                &self.work,
                self.plan.latency_samples,
                Duration::from_millis(self.plan.latency_interval_ms),
                Duration::from_millis(self.plan.seal_interval_ms),
            ) {
                Ok(run) => run,
                Err(e) => {
                    let note = format!("A latency run failed: {e:#}");
                    eprintln!("   {note}");
                    r.notes.push(note);
                    continue;
                }
            };
            eprintln!(
                "   tail p50 {:.2} ms p99 {:.2} ms; sealed p50 {:.0} ms p99 {:.0} ms; {}/{} tailed, {}/{} sealed; RSS {} KiB",
                run.tail_p50_ms, run.tail_p99_ms, run.sealed_p50_ms, run.sealed_p99_ms,
                run.tail_received, run.samples, run.sealed_found, run.samples, run.agent_rss_kib
            );
            r.latency.push(run);
        }
        Ok(())
    }

    fn sweep(&mut self, r: &mut Results) -> anyhow::Result<()> {
        eprintln!(
            "== kernel to disk: paced sweep ({} s per step × {} runs)",
            self.plan.sweep_seconds, self.plan.runs
        );
        for storm in Storm::ALL {
            let rates = self
                .plan
                .sweep_rates
                .get(storm.name())
                .cloned()
                .unwrap_or_default();
            'rates: for rate in rates {
                let count = (rate * self.plan.sweep_seconds).round() as u64;
                let mut step = SweepStep {
                    storm,
                    rate,
                    runs: Vec::new(),
                };
                for _ in 0..self.plan.runs {
                    let t = self.trial_retry(r, storm, Setup::Lineage, Some(rate), count)?;
                    eprintln!(
                        "   {:<7} {:>8.0}/s asked, {:>8.0}/s achieved: {} ops, {} on chain, {} declared lost",
                        storm.name(), rate, t.gen.achieved_rate(), t.gen.ops,
                        t.captured.unwrap_or(0),
                        t.chain.as_ref().map(|c| c.loss_missing).unwrap_or(0)
                    );
                    let none = t.captured == Some(0) && t.gen.ops > 0;
                    step.runs.push(t);
                    if none && storm != Storm::Exec {
                        eprintln!(
                            "   no {} events on the chain: not captured by this agent build",
                            storm.name()
                        );
                        r.not_captured.push(storm.name().into());
                        r.sweep.push(step);
                        break 'rates;
                    }
                }
                let achieved = med(&step.runs.iter().collect::<Vec<_>>(), |t| {
                    Some(t.gen.achieved_rate())
                });
                r.sweep.push(step);
                // Higher steps would only repeat the unpaced run: the generator cannot issue
                // more with the agent running.
                if achieved < 0.8 * rate {
                    let note = format!(
                        "The {} sweep stopped at {}/s asked: the generator reached only {:.0}/s with the agent running (the unpaced rows show what it reaches with and without the agent), so higher steps would be unpaced runs.",
                        storm.name(),
                        rate,
                        achieved
                    );
                    eprintln!("   {note}");
                    r.notes.push(note);
                    break 'rates;
                }
            }
        }
        Ok(())
    }

    fn overhead(&mut self, r: &mut Results) -> anyhow::Result<()> {
        let audit = if self.args.no_auditd {
            Some("--no-auditd given".to_owned())
        } else {
            auditd::unavailable()
        };
        if let Some(why) = &audit {
            eprintln!("   auditd comparison skipped: {why}");
        }
        r.auditd_skipped = audit.clone();
        let mut setups = vec![Setup::None, Setup::Lineage];
        if audit.is_none() {
            setups.push(Setup::Auditd);
        }
        eprintln!(
            "== overhead (unpaced storms × {:?} × {} runs)",
            setups, self.plan.runs
        );
        for round in 0..self.plan.runs {
            for storm in Storm::ALL {
                let count = self.plan.overhead_count[storm.name()];
                // Rotate the order each round so drift does not favour one setup.
                let n = setups.len();
                for k in 0..n {
                    let setup = setups[(k + round) % n];
                    let t = self.trial_retry(r, storm, setup, None, count)?;
                    eprintln!(
                        "   round {round} {:<7} {:<8}: {} ops in {:.3} s ({:.0}/s), cpu {:.3} s{}",
                        storm.name(),
                        setup.name(),
                        t.gen.ops,
                        t.gen.wall_ns as f64 / 1e9,
                        t.gen.achieved_rate(),
                        t.gen.cpu_ns() as f64 / 1e9,
                        match (&t.captured, &t.audit) {
                            (Some(c), _) => format!(
                                ", {c} on chain, {} declared lost, agent {:.2} µs/event",
                                t.chain.as_ref().map(|c| c.loss_missing).unwrap_or(0),
                                t.agent_cpu_us_per_event().unwrap_or(f64::NAN)
                            ),
                            (_, Some(a)) => format!(
                                ", {} audit records, {} lost in kernel",
                                a.records, a.kernel_lost
                            ),
                            _ => String::new(),
                        }
                    );
                    r.overhead.push(t);
                }
            }
        }
        Ok(())
    }

    /// Profiling pass (not timed): one agent, BPF statistics on, each storm once.
    fn bpf_profile(&mut self, r: &mut Results) -> anyhow::Result<()> {
        eprintln!("== eBPF program cost per call (profiling pass, statistics on)");
        let existing = crate::bpfstats::ids()?;
        let dir = self.work.join("bpf-profile");
        let a = Agent::start(&self.args.agent, &dir)?;
        let stats = crate::bpfstats::Stats::enable()?;
        for storm in Storm::ALL {
            let count = self.plan.overhead_count[storm.name()];
            let s0 = crate::bpfstats::snapshot()?;
            let g = self.run_gen(storm, None, count)?;
            let s1 = crate::bpfstats::snapshot()?;
            for c in crate::bpfstats::costs(&existing, &s0, &s1, storm.name(), g.ops) {
                eprintln!(
                    "   {:<7} {:<24} {:>9} calls {:>7.0} ns/call {:>7.0} ns per operation",
                    c.storm, c.program, c.calls, c.ns_per_call, c.ns_per_op
                );
                r.bpf_costs.push(c);
            }
        }
        drop(stats);
        a.stop()?;
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    /// A trial, retried once if it fails (the failure is noted in the results).
    fn trial_retry(
        &mut self,
        r: &mut Results,
        storm: Storm,
        setup: Setup,
        rate: Option<f64>,
        count: u64,
    ) -> anyhow::Result<Trial> {
        match self.trial(storm, setup, rate, count) {
            Ok(t) => Ok(t),
            Err(e) => {
                let note = format!(
                    "A {} trial with {} failed and was retried once: {e:#}",
                    storm.name(),
                    setup.name()
                );
                eprintln!("   {note}");
                r.notes.push(note);
                self.trial(storm, setup, rate, count)
            }
        }
    }

    fn run_gen(&self, storm: Storm, rate: Option<f64>, count: u64) -> anyhow::Result<GenResult> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.args([
            "gen",
            "--storm",
            storm.name(),
            "--count",
            &count.to_string(),
        ]);
        cmd.arg("--file").arg(&self.probe_file);
        if let Some(r) = rate {
            cmd.args(["--rate", &r.to_string()]);
        }
        let out = cmd
            .stderr(Stdio::inherit())
            .output()
            .context("running the generator")?;
        if !out.status.success() {
            bail!("generator {} failed with {}", storm.name(), out.status);
        }
        serde_json::from_slice(&out.stdout).context("generator output")
    }

    pub fn trial(
        &mut self,
        storm: Storm,
        setup: Setup,
        rate: Option<f64>,
        count: u64,
    ) -> anyhow::Result<Trial> {
        self.trials += 1;
        let mut t = Trial {
            storm,
            setup,
            gen: GenResult::default(),
            chain: None,
            captured: None,
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
        };
        match setup {
            Setup::None => {
                t.other_agents = agent::other_agents(None).len();
                t.gen = self.run_gen(storm, rate, count)?;
            }
            Setup::Lineage => {
                let dir = self.work.join(format!("trial-{}", self.trials));
                let a = Agent::start(&self.args.agent, &dir)?;
                // Let startup (snapshot, first seal checks) finish before the storm.
                std::thread::sleep(Duration::from_millis(300));
                let m0 = a.metrics()?;
                let cpu0 = agent::cpu_ns(a.pid())?;
                let window = std::time::Instant::now();
                t.agent_rss_before_kib = agent::rss_kib(a.pid()).ok().map(|x| x.0);
                t.other_agents = agent::other_agents(Some(a.pid())).len();
                let sampler = RssSampler::start(a.pid());
                let gen = self.run_gen(storm, rate, count);
                let m1 = a.settle(Duration::from_secs(20));
                let cpu1 = agent::cpu_ns(a.pid());
                t.agent_window_ns = Some(window.elapsed().as_nanos() as u64);
                let rss_max = sampler.finish();
                let hwm = agent::rss_kib(a.pid()).ok().map(|x| x.1);
                let log = a.stop()?;
                t.gen = gen?;
                let (m1, cpu1) = (m1?, cpu1?);
                t.agent_cpu_ns = Some(cpu1.saturating_sub(cpu0));
                let e = |m: &agent::Metrics| m.get("lineage_chain_entries_total");
                t.agent_entries = Some((e(&m1) - e(&m0)).max(0.0) as u64);
                t.agent_rss_max_kib = Some(rss_max);
                t.agent_hwm_kib = hwm;
                t.metrics_loss = Some(m1.sum("lineage_loss_records_total"));
                t.metrics_reservation_failures =
                    Some(m1.by_label("lineage_ringbuf_reservation_failures_total"));
                let target = self
                    .probe_file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let c = chain::count(&self.args.lineagectl, &dir, t.gen.pid, &target)
                    .with_context(|| {
                        format!("reading the chain in {}; agent log:\n{log}", dir.display())
                    })?;
                t.captured = Some(c.captured(storm));
                t.chain = Some(c);
                let _ = std::fs::remove_dir_all(&dir);
                let _ = std::fs::remove_file(dir.with_extension("log"));
            }
            Setup::Auditd => {
                let dir = self.work.join(format!("audit-{}", self.trials));
                let a = Auditd::start(&dir)?;
                t.other_agents = agent::other_agents(None).len();
                let gen = self.run_gen(storm, rate, count);
                match gen {
                    Ok(g) => {
                        t.audit = Some(a.finish(storm, g.pid)?);
                        t.gen = g;
                    }
                    Err(e) => {
                        drop(a);
                        return Err(e);
                    }
                }
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        Ok(t)
    }
}

/// Median over trials of `f`.
pub fn med<T>(xs: &[&T], f: impl Fn(&T) -> Option<f64>) -> f64 {
    let v: Vec<f64> = xs.iter().filter_map(|x| f(x)).collect();
    median(&v)
}

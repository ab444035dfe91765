//! The agent under test as a subprocess with a fresh data directory, its Prometheus page, and
//! its CPU and memory from `/proc/<pid>`.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

pub struct Agent {
    pub data_dir: PathBuf,
    pub metrics_port: u16,
    child: Child,
    log_path: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Agent {
    /// `lineage-agent run --print none --data-dir DIR --grpc-socket DIR/agent.sock
    /// --metrics-listen 127.0.0.1:PORT`, waiting for "capturing" in its log.
    pub fn start(binary: &Path, data_dir: &Path) -> anyhow::Result<Agent> {
        std::fs::create_dir_all(data_dir)?;
        let port = free_port()?;
        let log_path = data_dir.with_extension("log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(binary)
            .arg("run")
            .args(["--print", "none"])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--grpc-socket")
            .arg(data_dir.join("agent.sock"))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("LINEAGE_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        crate::children::register(child.id());
        let mut agent = Agent {
            data_dir: data_dir.into(),
            metrics_port: port,
            child,
            log_path,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if agent.log().contains("capturing") && agent.metrics().is_ok() {
                return Ok(agent);
            }
            if let Some(status) = agent.child.try_wait()? {
                bail!(
                    "agent exited with {status} at startup; log:\n{}",
                    agent.log()
                );
            }
            if Instant::now() > deadline {
                let _ = agent.child.kill();
                bail!("agent did not start within 30 s; log:\n{}", agent.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn socket(&self) -> PathBuf {
        self.data_dir.join("agent.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn metrics(&self) -> anyhow::Result<Metrics> {
        Metrics::scrape(self.metrics_port)
    }

    /// Waits until the agent has caught up: the chain stopped growing, or (on a host where
    /// other work keeps producing events) the kernel ring buffer held less than 64 KiB at two
    /// readings 150 ms apart. At most `max`.
    pub fn settle(&self, max: Duration) -> anyhow::Result<Metrics> {
        let deadline = Instant::now() + max;
        let mut last = self.metrics()?;
        loop {
            std::thread::sleep(Duration::from_millis(150));
            let m = self.metrics()?;
            let entries = |m: &Metrics| m.get("lineage_chain_entries_total");
            let fill = |m: &Metrics| m.get("lineage_ringbuf_fill_bytes");
            let drained = fill(&m) < 65536.0 && fill(&last) < 65536.0;
            if entries(&m) == entries(&last) || drained || Instant::now() > deadline {
                return Ok(m);
            }
            last = m;
        }
    }

    /// SIGTERM and wait; fails unless it exits 0 within a minute.
    pub fn stop(mut self) -> anyhow::Result<String> {
        crate::children::unregister(self.child.id());
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = self.log();
                if !status.success() {
                    bail!("agent exited with {status}; log:\n{log}");
                }
                return Ok(log);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("agent did not stop within 60 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        crate::children::unregister(self.child.id());
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One scrape of the Prometheus text page: `name{labels}` → value.
#[derive(Debug, Clone, Default)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    pub fn scrape(port: u16) -> anyhow::Result<Metrics> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        let text = body.split_once("\r\n\r\n").map(|x| x.1).unwrap_or(&body);
        Ok(Metrics::parse(text))
    }

    pub fn parse(text: &str) -> Metrics {
        let mut m = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some((name, value)) = line.rsplit_once(' ') {
                if let Ok(v) = value.trim().parse::<f64>() {
                    m.insert(name.trim().to_owned(), v);
                }
            }
        }
        Metrics(m)
    }

    pub fn get(&self, key: &str) -> f64 {
        self.0.get(key).copied().unwrap_or(0.0)
    }

    /// Sum over every label set of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| *k == name || k.starts_with(&format!("{name}{{")))
            .map(|(_, v)| v)
            .sum()
    }

    /// `name{label="x"}` → x → value.
    pub fn by_label(&self, name: &str) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(name)?.strip_prefix('{')?.strip_suffix('}')?;
                let (_, val) = rest.split_once('=')?;
                Some((val.trim_matches('"').to_owned(), *v))
            })
            .collect()
    }
}

/// Pids of `lineage-agent` processes other than `ours`: another agent (a test, another
/// engineer's run) doubles the probes every syscall goes through, so trials record it.
pub fn other_agents(ours: Option<u32>) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| Some(*pid) != ours)
        .filter(|pid| {
            // `<pid> (comm) <state> ...`; a zombie runs no probes.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| {
                    let comm = s.split_once('(').and_then(|(_, r)| r.rsplit_once(')'));
                    matches!(comm, Some((c, rest)) if c == "lineage-agent" && !rest.trim_start().starts_with('Z'))
                })
                .unwrap_or(false)
        })
        .collect()
}

/// CPU time of a process (all threads), in nanoseconds, from `/proc/<pid>/stat`.
pub fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok((utime + stime) * 1_000_000_000 / hz)
}

/// (VmRSS, VmHWM) in KiB from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// Samples a process's RSS every 50 ms in the background and keeps the maximum.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), max.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok((rss, _)) = rss_kib(pid) {
                    m.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        RssSampler {
            stop,
            max,
            thread: Some(thread),
        }
    }

    /// Stops sampling; returns the largest RSS seen (KiB).
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_metrics_page() {
        let m = Metrics::parse(
            "# HELP x y\n# TYPE x counter\nlineage_records_total{kind=\"exec\"} 6\nlineage_records_total{kind=\"fork\"} 8\nlineage_chain_entries_total 90\nlineage_loss_records_total{reason=\"unexplained\"} 0\n",
        );
        assert_eq!(m.get("lineage_chain_entries_total"), 90.0);
        assert_eq!(m.sum("lineage_records_total"), 14.0);
        assert_eq!(m.by_label("lineage_records_total")["fork"], 8.0);
        assert_eq!(m.sum("lineage_chain_entries"), 0.0);
    }

    #[test]
    fn other_agents_excludes_ours() {
        // No agent runs under `cargo test`; at least it must not list this process.
        assert!(!other_agents(None).contains(&std::process::id()));
    }

    #[test]
    fn reads_own_cpu_and_rss() {
        let pid = std::process::id();
        assert!(cpu_ns(pid).is_ok());
        let (rss, hwm) = rss_kib(pid).unwrap();
        assert!(rss > 0 && hwm >= rss);
    }
}

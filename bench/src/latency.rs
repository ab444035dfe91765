//! Latency from an exec to (a) its event arriving at a `Tail` client and (b) its entry being
//! in a sealed segment on disk.
//!
//! A copy of `/bin/true` under a unique name is spawned at a fixed interval with the sample
//! number as its argument. The harness timestamps (CLOCK_BOOTTIME) just before `posix_spawn`;
//! a tonic `Tail` client on the agent's Unix socket, filtered on that binary name,
//! timestamps each event on arrival; a poller lists the segments directory every 2 ms and
//! timestamps each new segment file (the store renames a segment into place only after it is
//! written and fsynced), then reads which samples it holds. The event's own `time_ns`
//! (the kernel's exec tracepoint, same clock) gives the kernel-side start as a second
//! reference.

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::CString,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use lineage_evidence::{Entry, SegmentView};
use lineage_proto::v1::{tail_message, TailFilter, TailRequest};
use serde::Serialize;

use crate::{agent::Agent, gen, stats};

pub fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyRun {
    pub samples: u64,
    pub tail_received: u64,
    pub sealed_found: u64,
    /// `missed` messages from the agent (a slow client), if any.
    pub tail_missed: u64,
    /// spawn call → event at the Tail client.
    pub tail_p50_ms: f64,
    pub tail_p99_ms: f64,
    pub tail_max_ms: f64,
    /// kernel exec tracepoint (event `time_ns`) → event at the Tail client.
    pub tail_from_kernel_p50_ms: f64,
    pub tail_from_kernel_p99_ms: f64,
    /// spawn call → segment holding the entry renamed into place (durable).
    pub sealed_p50_ms: f64,
    pub sealed_p99_ms: f64,
    pub sealed_max_ms: f64,
    /// Agent after the run: RSS (KiB) and CPU used during the sampling.
    pub agent_rss_kib: u64,
    pub agent_cpu_ms: f64,
}

#[derive(Default)]
struct Seen {
    /// sample → (kernel time_ns, arrival boot ns)
    tail: BTreeMap<u64, (u64, u64)>,
    missed: u64,
    /// sample → boot ns its segment was first seen
    sealed: BTreeMap<u64, u64>,
}

fn sample_of(json: &str, probe: &str) -> Option<(String, u64)> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    if v["kind"] != "exec" || !v["binary"].as_str().unwrap_or_default().contains(probe) {
        return None;
    }
    let arg = v["argv"].get(1)?.as_str()?.to_owned();
    Some((arg, v["time_ns"].as_u64().unwrap_or(0)))
}

async fn tail(
    socket: std::path::PathBuf,
    probe: String,
    seen: Arc<Mutex<Seen>>,
) -> anyhow::Result<()> {
    let mut client = lineage_client::connect(&lineage_client::Target::Unix(socket), None)
        .await
        .context("connecting to the agent's gRPC socket")?;
    let mut stream = client
        .tail(TailRequest {
            filter: Some(TailFilter {
                kinds: vec!["exec".into()],
                binary_pattern: probe.clone(),
                ..Default::default()
            }),
        })
        .await
        .context("Tail")?
        .into_inner();
    while let Some(msg) = stream.message().await? {
        let now = boot_ns();
        match msg.message {
            Some(tail_message::Message::EventJson(json)) => {
                if let Some((arg, kernel_ns)) = sample_of(&json, &probe) {
                    let id = if arg == "warmup" {
                        u64::MAX
                    } else {
                        arg.parse().unwrap_or(u64::MAX - 1)
                    };
                    seen.lock()
                        .unwrap()
                        .tail
                        .entry(id)
                        .or_insert((kernel_ns, now));
                }
            }
            Some(tail_message::Message::Missed(n)) => seen.lock().unwrap().missed += n,
            None => {}
        }
    }
    Ok(())
}

/// Scans new segment files; returns false when the directory is not there yet.
fn scan_segments(dir: &Path, done: &mut BTreeSet<String>, probe: &str, seen: &Mutex<Seen>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let now = boot_ns();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".seg") || done.contains(&name) {
            continue;
        }
        done.insert(name);
        let Ok(bytes) = std::fs::read(e.path()) else {
            continue;
        };
        let Ok(view) = SegmentView::parse(&bytes) else {
            continue;
        };
        for entry in view.entries() {
            if let Ok(Entry::Event(ev)) = Entry::parse(entry) {
                let Ok(text) = std::str::from_utf8(ev.payload) else {
                    continue;
                };
                if !text.contains(probe) {
                    continue;
                }
                if let Some((arg, _)) = sample_of(text, probe) {
                    if let Ok(id) = arg.parse::<u64>() {
                        seen.lock().unwrap().sealed.entry(id).or_insert(now);
                    }
                }
            }
        }
    }
}

pub fn run_once(
    agent_bin: &Path,
    work: &Path,
    samples: u64,
    interval: Duration,
    seal_interval: Duration,
) -> anyhow::Result<LatencyRun> {
    let nonce = format!(
        "lbprobe{}x{}",
        std::process::id(),
        boot_ns() % 1_000_000_007
    );
    let probe_path = work.join(&nonce);
    std::fs::copy("/bin/true", &probe_path).context("copying /bin/true")?;
    let data = work.join(format!("{nonce}-data"));
    let agent = Agent::start(agent_bin, &data)?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let tail_task = rt.spawn(tail(agent.socket(), nonce.clone(), seen.clone()));

    let exe = CString::new(probe_path.to_string_lossy().as_bytes())?;
    let warm = CString::new("warmup")?;
    // Warm-up: the subscription is live once the warm-up exec arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.lock().unwrap().tail.contains_key(&u64::MAX) {
        if Instant::now() > deadline {
            anyhow::bail!("Tail client received nothing within 10 s");
        }
        if tail_task.is_finished() {
            anyhow::bail!("Tail stream ended early");
        }
        let pid = gen::spawn(&exe, &[&warm])?;
        gen::wait_ok(pid);
        std::thread::sleep(Duration::from_millis(50));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (stop, seen, probe) = (stop.clone(), seen.clone(), nonce.clone());
        let dir = data.join("segments");
        std::thread::spawn(move || {
            let mut done = BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                scan_segments(&dir, &mut done, &probe, &seen);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let cpu0 = crate::agent::cpu_ns(agent.pid()).unwrap_or(0);
    let mut spawned: BTreeMap<u64, u64> = BTreeMap::new();
    let start = Instant::now();
    for i in 0..samples {
        let due = start + interval * i as u32;
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let arg = CString::new(i.to_string())?;
        let t0 = boot_ns();
        let pid = gen::spawn(&exe, &[&arg])?;
        spawned.insert(i, t0);
        gen::wait_ok(pid);
    }
    let cpu1 = crate::agent::cpu_ns(agent.pid()).unwrap_or(0);
    // Wait for every sample to be sealed (at most a seal interval plus slack).
    let deadline = Instant::now() + seal_interval + Duration::from_secs(3);
    while Instant::now() < deadline {
        let s = seen.lock().unwrap();
        if s.sealed.len() as u64 >= samples && s.tail.len() as u64 > samples {
            break;
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (rss, _) = crate::agent::rss_kib(agent.pid()).unwrap_or((0, 0));
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();
    tail_task.abort();
    drop(rt);
    agent.stop()?;
    let _ = std::fs::remove_file(&probe_path);
    let _ = std::fs::remove_dir_all(&data);

    let s = seen.lock().unwrap();
    let ms = |ns: u64| ns as f64 / 1e6;
    let mut tail_lat = Vec::new();
    let mut tail_k = Vec::new();
    let mut sealed_lat = Vec::new();
    for (i, t0) in &spawned {
        if let Some((k, at)) = s.tail.get(i) {
            tail_lat.push(ms(at.saturating_sub(*t0)));
            tail_k.push(ms(at.saturating_sub(*k)));
        }
        if let Some(at) = s.sealed.get(i) {
            sealed_lat.push(ms(at.saturating_sub(*t0)));
        }
    }
    Ok(LatencyRun {
        samples,
        tail_received: tail_lat.len() as u64,
        sealed_found: sealed_lat.len() as u64,
        tail_missed: s.missed,
        tail_p50_ms: stats::percentile(&tail_lat, 50.0),
        tail_p99_ms: stats::percentile(&tail_lat, 99.0),
        tail_max_ms: stats::percentile(&tail_lat, 100.0),
        tail_from_kernel_p50_ms: stats::percentile(&tail_k, 50.0),
        tail_from_kernel_p99_ms: stats::percentile(&tail_k, 99.0),
        sealed_p50_ms: stats::percentile(&sealed_lat, 50.0),
        sealed_p99_ms: stats::percentile(&sealed_lat, 99.0),
        sealed_max_ms: stats::percentile(&sealed_lat, 100.0),
        agent_rss_kib: rss,
        agent_cpu_ms: (cpu1.saturating_sub(cpu0)) as f64 / 1e6,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_probe_samples() {
        let j = r#"{"kind":"exec","binary":"/tmp/lbprobe1x2","argv":["/tmp/lbprobe1x2","17"],"time_ns":99}"#;
        assert_eq!(sample_of(j, "lbprobe1x2"), Some(("17".into(), 99)));
        assert_eq!(sample_of(j, "other"), None);
        let fork = r#"{"kind":"fork","binary":"/tmp/lbprobe1x2"}"#;
        assert_eq!(sample_of(fork, "lbprobe1x2"), None);
    }
}

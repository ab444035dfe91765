//! The capture loop: load and attach, snapshot, drain the ring buffer, reconcile loss, and on
//! shutdown detach and drain once more so nothing submitted is left behind.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
    time::{interval, MissedTickBehavior},
};

use crate::{
    btf::Btf,
    config::Config,
    pipeline::Pipeline,
    probes::{self, LoadParams},
    sink::Sink,
    snapshot,
};

fn boot_time_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer; CLOCK_BOOTTIME matches bpf_ktime_get_boot_ns.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn read_boot_id(proc_root: &Path) -> anyhow::Result<String> {
    let path = proc_root.join("sys/kernel/random/boot_id");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading the boot id from {}", path.display()))?
        .trim()
        .to_owned())
}

struct Drain<'a> {
    pipeline: &'a mut Pipeline,
    sink: &'a mut Sink,
}

impl Drain<'_> {
    fn drain(&mut self, ring: &mut RingBuf<MapData>) -> usize {
        let now = Instant::now();
        let mut n = 0;
        while let Some(item) = ring.next() {
            n += 1;
            if let Some(event) = self.pipeline.handle(&item, now) {
                self.sink.emit(&event, self.pipeline.table());
            }
        }
        if n > 0 {
            self.sink.flush();
        }
        n
    }
}

pub async fn run(config: Config, duration: Option<Duration>) -> anyhow::Result<()> {
    probes::preflight(&config.kernel.btf_path)?;
    probes::ensure_tracefs(&config.kernel.tracefs_path)?;
    probes::raise_memlock();
    let offsets = Btf::from_file(&config.kernel.btf_path.to_string_lossy())?.kernel_offsets()?;
    let boot_id = read_boot_id(&config.kernel.proc_path)?;

    let mut ebpf = probes::load(&LoadParams {
        agent_tgid: std::process::id(),
        offsets,
        ring_buffer_bytes: config.capture.ring_buffer_bytes,
    })?;
    let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("EVENTS map missing")?)?;
    // SAFETY: the RingBuf owns its map fd and keeps it open until the AsyncFd drops it.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("registering the ring buffer with the reactor: {e}"))?;
    let cpus = aya::util::nr_cpus()
        .map_err(|(_, e)| e)
        .context("counting CPUs")?;
    let mut pipeline = Pipeline::new(
        &boot_id,
        cpus,
        Duration::from_millis(config.capture.loss_grace_ms),
    );
    let mut sink = Sink::new(config.output.print);

    // The reader exists before anything is attached, so nothing is submitted unread.
    let statuses = probes::attach_all(&mut ebpf)?;
    let attached = statuses.iter().filter(|s| s.attached).count();

    let entries = snapshot::read_processes(&config.kernel.proc_path)
        .with_context(|| format!("reading {}", config.kernel.proc_path.display()))?;
    for event in pipeline.snapshot(entries, boot_time_ns()) {
        sink.emit(&event, pipeline.table());
    }
    sink.flush();
    tracing::info!(
        probes = attached,
        of = statuses.len(),
        processes = pipeline.table().len(),
        ring_buffer_bytes = config.capture.ring_buffer_bytes,
        "capturing"
    );

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut poll = interval(Duration::from_millis(config.capture.poll_interval_ms));
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut reconcile = interval(Duration::from_millis(config.capture.reconcile_interval_ms));
    reconcile.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let deadline = tokio::time::sleep(duration.unwrap_or(Duration::from_secs(u64::MAX / 4)));
    tokio::pin!(deadline);

    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = &mut deadline => { tracing::info!("duration reached: stopping"); break; }
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                Drain { pipeline: &mut pipeline, sink: &mut sink }.drain(guard.get_inner_mut());
                guard.clear_ready();
            }
            _ = poll.tick() => {
                Drain { pipeline: &mut pipeline, sink: &mut sink }.drain(ring.get_mut());
            }
            _ = reconcile.tick() => {
                let failures = probes::reservation_failures(&ebpf)?;
                for event in pipeline.reconcile(&failures, Instant::now(), boot_time_ns()) {
                    sink.emit(&event, pipeline.table());
                }
                sink.flush();
            }
        }
    }

    // Stop producing, then take everything already submitted and account for the rest.
    probes::detach_all(&mut ebpf);
    Drain {
        pipeline: &mut pipeline,
        sink: &mut sink,
    }
    .drain(ring.get_mut());
    pipeline.close(&probes::next_sequences(&ebpf)?, Instant::now());
    let failures = probes::reservation_failures(&ebpf)?;
    for event in pipeline.reconcile(&failures, Instant::now(), boot_time_ns()) {
        sink.emit(&event, pipeline.table());
    }
    sink.flush();
    let stats = serde_json::to_string(&pipeline.stats).unwrap_or_default();
    tracing::info!(%stats, "stopped");
    Ok(())
}

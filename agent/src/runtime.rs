//! The agent's lifecycle, one job per thread: open the evidence store, load and attach, then
//! run the **capture thread** (ring → decode → join, `capture::worker`), the **writer thread**
//! (chain, journal, seal, retention, `record::writer`) and the **serve runtime** (gRPC and
//! metrics, a tokio runtime of their own, on this thread plus its workers) until a signal;
//! then drain once more, record AGENT_STOP and seal, end every stream with a status, and
//! remove the socket. Whatever an API client does runs on the serve runtime and can only slow
//! itself: the capture thread never waits for it, nor for the disk.

use std::{
    path::{Path, PathBuf},
    sync::{mpsc as std_mpsc, Arc},
    time::Duration,
};

use anyhow::Context as _;
use aya::maps::RingBuf;
use lineage_evidence::{
    digest::Digest,
    entry::{AgentStart, ProgramDigest, StopReason},
};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::{mpsc, watch},
};

use crate::{
    capture::{
        pipeline::Pipeline,
        tamper::PolicyWatch,
        worker::{Capture, Control, Inputs, Reload, Settings},
    },
    config::{Config, Fsync},
    enforce::Enforcer,
    kernel::{
        btf::Btf,
        filter::{self, CountsReader, FilterLedger},
        probes::{self, LoadParams, ProbeStatus},
    },
    record::{
        datadir::DataDir,
        recorder::{Recorder, SealPolicy},
        writer::{self, Entry, Head, Published, RecorderStats},
    },
    serve::{
        grpc::{self, tail, LineageQuery, Shared, StaticInfo},
        metrics::{self, Publisher},
        sink::Sink,
    },
};

/// Lineage questions waiting for the capture thread; more callers wait on the serve runtime.
const LINEAGE_QUEUE: usize = 16;

pub fn boot_time_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

pub fn wall_time_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer. CLOCK_BOOTTIME matches bpf_ktime_get_boot_ns.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn read_boot_id(proc_root: &Path) -> anyhow::Result<String> {
    let path = proc_root.join("sys/kernel/random/boot_id");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("reading the boot id from {}", path.display()))?
        .trim()
        .to_owned())
}

/// Tells systemd (`Type=notify`) about the agent's state: `READY=1` once the probes are
/// attached and the API is up, `STOPPING=1` when it starts draining. Without `NOTIFY_SOCKET`
/// this does nothing.
fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => return tracing::warn!(error = %e, "sd_notify: no socket"),
    };
    let bytes = path.as_encoded_bytes();
    // A leading '@' names an abstract socket.
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), std::path::Path::new(&path))
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, state, "sd_notify failed");
    }
}

/// How this run began, in words for the log.
fn start_reason(reason: lineage_evidence::entry::StartReason) -> &'static str {
    use lineage_evidence::entry::StartReason::*;
    match reason {
        FirstStart => "first start (new chain)",
        Restart => "restart after a clean stop",
        RecoveredAfterCrash => "recovered after a crash (journal replayed and sealed)",
    }
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn config_digest(config: &Config) -> Digest {
    Digest(*blake3::hash(toml::to_string(config).unwrap_or_default().as_bytes()).as_bytes())
}

/// AGENT_START names the object that was loaded and each program the kernel accepted (by the
/// kernel's own program tag), so a verifier can tell which capture code produced the chain.
fn program_digests(ebpf: &aya::Ebpf, statuses: &[ProbeStatus]) -> Vec<ProgramDigest> {
    let mut out = vec![ProgramDigest {
        name: "lineage-probes.o".into(),
        digest: Digest(*blake3::hash(probes::object_bytes()).as_bytes()),
    }];
    for status in statuses.iter().filter(|s| s.attached) {
        let tag = probes::kernel_tag(ebpf, status.program).unwrap_or_default();
        out.push(ProgramDigest {
            name: status.program.into(),
            digest: Digest(*blake3::hash(&tag.to_le_bytes()).as_bytes()),
        });
    }
    out
}

/// Re-reads the config file and compiles its filter, here on the serve runtime (file I/O stays
/// off the capture thread, which only applies the result). A config that does not load or
/// validate changes nothing; a filter that does not compile leaves the old filter in place.
fn reload_config(path: Option<&Path>) -> Option<Reload> {
    let Some(path) = path else {
        tracing::warn!("SIGHUP: no --config file to reload");
        return None;
    };
    let config = match Config::load(path).and_then(|c| c.validate().map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: config not reloaded");
            return None;
        }
    };
    let filter = config
        .filter
        .compile()
        .map_err(|e| tracing::error!(error = %e, "SIGHUP: filter not changed"))
        .ok();
    Some(Reload { config, filter })
}

/// Waits for SIGTERM/SIGINT (or the requested duration), forwarding SIGHUP reloads.
async fn wait_for_stop(
    duration: Option<Duration>,
    config_path: Option<PathBuf>,
    reloads: std_mpsc::Sender<Reload>,
    capture: &std::thread::JoinHandle<anyhow::Result<StopReason>>,
) -> anyhow::Result<(&'static str, StopReason)> {
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let deadline = tokio::time::sleep(duration.unwrap_or(Duration::from_secs(u64::MAX / 4)));
    tokio::pin!(deadline);
    // The capture thread ending on its own is an error it reports when joined.
    let mut check = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = sigterm.recv() => return Ok(("SIGTERM", StopReason::Signal)),
            _ = sigint.recv() => return Ok(("SIGINT", StopReason::Signal)),
            _ = &mut deadline => return Ok(("duration reached", StopReason::Requested)),
            _ = sighup.recv() => {
                let path = config_path.clone();
                if let Ok(Some(reload)) = tokio::task::spawn_blocking(move || reload_config(path.as_deref())).await {
                    let _ = reloads.send(reload);
                }
            }
            _ = check.tick() => if capture.is_finished() {
                return Ok(("the capture thread ended", StopReason::Signal));
            },
        }
    }
}

/// How much lower than capture the API threads run (`nice`): when the CPUs are busy, the
/// scheduler gives a client's work what capture leaves, never the other way round.
const SERVE_NICE: libc::c_int = 10;

/// The serve runtime: a small multi-threaded tokio runtime for gRPC and metrics only.
fn serve_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("lineage-serve")
        .on_thread_start(|| {
            // SAFETY: plain syscalls on the calling thread (a tid is a PRIO_PROCESS target).
            let rc = unsafe {
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                libc::setpriority(libc::PRIO_PROCESS, tid, SERVE_NICE)
            };
            if rc != 0 {
                tracing::debug!(error = %std::io::Error::last_os_error(), "lowering the serve threads' priority failed");
            }
        })
        .enable_all()
        .build()
}

pub fn run(
    config: Config,
    config_path: Option<PathBuf>,
    duration: Option<Duration>,
) -> anyhow::Result<()> {
    // Missing privileges or kernel features, then anything wrong with the config or the data
    // dir, all fail before the kernel is touched.
    probes::preflight(&config.kernel.btf_path)?;
    let metrics_addr = config.metrics.address()?;
    let data = DataDir::open(&config.evidence.data_dir)?;
    let host = data.host_id(&config.evidence.machine_id_path)?;
    probes::ensure_tracefs(&config.kernel.tracefs_path)?;
    probes::raise_memlock();
    let btf = Btf::from_file(&config.kernel.btf_path.to_string_lossy())?;
    let offsets = btf.kernel_offsets()?;
    let capture_offsets = btf.capture_offsets()?;
    drop(btf);
    let io_uring_fields = crate::kernel::tracefs::io_uring_fields(&config.kernel.tracefs_path)
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "io_uring requests will not be recorded");
            Default::default()
        });
    match crate::kernel::tracefs::ia32_emulation() {
        Some(true) => tracing::info!(
            "ia32 emulation is enabled: 32-bit (int 0x80) syscalls run here and are recorded by the compat probes"
        ),
        Some(false) => tracing::info!("ia32 emulation is disabled: this kernel runs no 32-bit syscalls"),
        None => tracing::info!("ia32 emulation: not applicable to this architecture"),
    }
    let boot_id = read_boot_id(&config.kernel.proc_path)?;
    let rt = serve_runtime().context("starting the serve runtime")?;

    let policy = SealPolicy {
        interval: Duration::from_millis(config.evidence.seal_interval_ms),
        max_entries: config.evidence.seal_max_entries,
        max_bytes: config.evidence.seal_max_bytes as usize,
        heartbeat: Duration::from_millis(config.evidence.heartbeat_interval_ms),
        fsync_journal: config.evidence.fsync == Fsync::Batch,
        retention_max_bytes: config.retention.max_bytes,
        retention_hard_max_bytes: config.retention.hard_max_bytes,
        acks_dir: data.root.join("acks"),
    };
    let identity_path = config.evidence.key_path.clone();
    let (recorder, recovery) = Recorder::open(
        &data.root,
        &data.wal_path(),
        host,
        |last| data.seal_keys(&host, last, identity_path.as_deref()),
        policy,
    )?;
    tracing::info!(
        data_dir = %data.root.display(),
        host_id = %host.to_hex(),
        key_id = %recorder.public_key().key_id(),
        start = start_reason(recovery.reason),
        next_index = recovery.last_durable.next_index,
        recovered_entries = recovery.replay.recovered,
        discarded_bytes = recovery.replay.discarded_bytes,
        "evidence store opened (verify with: lineagectl verify {})",
        data.root.display()
    );
    let signing_key = recorder.public_key();

    let mut ebpf = probes::load(&LoadParams {
        agent_tgid: std::process::id(),
        offsets,
        capture_offsets,
        io_uring_fields,
        ring_buffer_bytes: config.capture.ring_buffer_bytes,
    })?;
    let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("EVENTS map missing")?)?;
    let cpus = aya::util::nr_cpus()
        .map_err(|(_, e)| e)
        .context("counting CPUs")?;
    let pipeline = Pipeline::new(
        &boot_id,
        cpus,
        Duration::from_millis(config.capture.loss_grace_ms),
    );

    // Filters are in place before the probes they govern are attached.
    let compiled_filter = config.filter.compile()?;
    filter::apply(&mut ebpf, &compiled_filter)?;
    let ledger = FilterLedger::new(&compiled_filter, filter::read_counts(&ebpf)?);
    let policy_entry = ledger.policy_entry().clone();
    let counts = CountsReader::open(&ebpf)
        .map_err(|e| tracing::warn!(error = %e, "filter counters unreadable by the writer; per-segment FILTER counts are not recorded"))
        .ok();

    let (head_tx, head_rx) = watch::channel(Head::default());
    let (stats_tx, stats_rx) = watch::channel(RecorderStats::default());
    let mut writer = writer::spawn(
        recorder,
        ledger,
        counts,
        Published {
            head: head_tx,
            stats: stats_tx,
        },
        config.capture.writer_queue,
    )?;

    // The ring exists before anything is attached, so nothing is submitted unread; the capture
    // thread starts draining right after the snapshot below.
    let statuses = probes::attach_all(&mut ebpf)?;
    let start = AgentStart {
        reason: recovery.reason,
        config_digest: config_digest(&config),
        last_durable: recovery.last_durable,
        agent_version: format!("lineage-agent {}", env!("CARGO_PKG_VERSION")),
        programs: program_digests(&ebpf, &statuses),
    };
    let agent_version = start.agent_version.clone();
    writer.control(Entry::Start(Box::new(start), boot_time_ns()));
    writer.control(Entry::Filter(Box::new(policy_entry), boot_time_ns()));
    let enforcer = Enforcer::start(&mut ebpf, &config.enforcement, &mut writer)?;

    let (hub, fanout) = tail::channel(tail::TailLimits {
        max_streams: config.grpc.tail_max_streams,
        client_events: config.grpc.tail_buffer,
        client_bytes: config.grpc.tail_buffer_bytes,
    });
    let (lineage_tx, lineage_rx) = mpsc::channel::<LineageQuery>(LINEAGE_QUEUE);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        info: StaticInfo {
            host_id: host.0,
            boot_id: boot_id.clone(),
            hostname: hostname(),
            signing_key,
            agent_version,
            kernel_version: kernel_version(),
            probes: statuses.clone(),
        },
        data_dir: data.root.clone(),
        head: head_rx,
        tail: hub,
        lineage: lineage_tx,
        shutdown: shutdown_rx,
    });
    let serving = rt.block_on(grpc::serve(
        &config.grpc,
        shared,
        shutdown_tx,
        stats_rx.clone(),
    ))?;

    // A page older than a few reconcile intervals means the capture thread is stuck.
    let endpoint = metrics::Endpoint::new(
        Duration::from_millis(config.capture.reconcile_interval_ms * 5).max(Duration::from_secs(5)),
    );
    let (reloads_tx, reloads_rx) = std_mpsc::channel();
    let control = Arc::new(Control::default());
    let mut capture = Capture {
        pipeline,
        ebpf,
        ring,
        sink: Sink::new(config.output.print),
        writer,
        enforcer,
        fanout,
        inputs: Inputs {
            lineage: lineage_rx,
            reloads: reloads_rx,
            recorder_stats: stats_rx,
            control: control.clone(),
        },
        settings: Settings {
            poll_interval: Duration::from_millis(config.capture.poll_interval_ms),
            reconcile_interval: Duration::from_millis(config.capture.reconcile_interval_ms),
        },
        metrics: Publisher {
            endpoint: endpoint.clone(),
            data_dir: data.root.clone(),
            kernel_version: kernel_version(),
            ring_size: config.capture.ring_buffer_bytes,
            probes: statuses.clone(),
            filter_rules: compiled_filter.rules.clone(),
        },
        statuses: statuses.clone(),
        // Twice per seal interval (at most every 250 ms), so a change is sealed within one.
        policy: PolicyWatch::new(
            compiled_filter,
            (Duration::from_millis(config.evidence.seal_interval_ms) / 2)
                .min(Duration::from_millis(250)),
        ),
        buf: Vec::with_capacity(1024),
    };
    capture.record_snapshot(&config.kernel.proc_path)?;
    let processes = capture.pipeline.table().len();

    // The first page exists before anyone can scrape.
    capture.render_metrics();
    if let Some(addr) = metrics_addr {
        // Someone else on the port must not stop capture: metrics are a convenience.
        if let Err(e) = rt.block_on(metrics::serve(addr, endpoint.clone())) {
            tracing::warn!(error = %e, %addr, "metrics endpoint not started; capturing without it");
        }
    }
    let thread = std::thread::Builder::new()
        .name("lineage-capture".into())
        .spawn(move || capture.run())
        .context("starting the capture thread")?;
    sd_notify("READY=1\nSTATUS=capturing");
    tracing::info!(
        probes = statuses.iter().filter(|s| s.attached).count(),
        of = statuses.len(),
        processes,
        ring_buffer_bytes = config.capture.ring_buffer_bytes,
        "capturing"
    );

    let stop = rt.block_on(wait_for_stop(duration, config_path, reloads_tx, &thread));
    let (why, reason) = stop.unwrap_or(("signal handling failed", StopReason::Signal));
    tracing::info!(reason = why, "stopping");
    sd_notify("STOPPING=1\nSTATUS=draining and sealing");
    control.stop(reason);
    let captured = thread
        .join()
        .map_err(|_| anyhow::anyhow!("the capture thread panicked"));
    // The last segment is sealed (or sealing failed); now end the streams and remove the socket.
    rt.block_on(serving.stop());
    rt.shutdown_timeout(Duration::from_secs(1));
    captured??;
    tracing::info!(data_dir = %data.root.display(), "stopped; chain sealed");
    Ok(())
}

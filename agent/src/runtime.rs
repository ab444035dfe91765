//! The agent's lifecycle around the capture loop: open the evidence store, load and attach,
//! record AGENT_START, snapshot, drain / reconcile / seal until a signal, then drain once more,
//! record AGENT_STOP and seal, so nothing submitted is left behind.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use lineage_evidence::{
    digest::Digest,
    entry::{AgentStart, ProgramDigest, StopReason},
};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
    time::{interval, MissedTickBehavior},
};

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, watch};

use crate::{
    capture::event::Event,
    capture::pipeline::Pipeline,
    capture::snapshot,
    config::{Config, Fsync},
    enforce::{self, Mode},
    kernel::btf::Btf,
    kernel::filter::{self, FilterLedger},
    kernel::probes::{self, LoadParams, ProbeStatus},
    record::datadir::DataDir,
    record::recorder::{Recorder, SealPolicy},
    record::report,
    serve::grpc::{self, Head, LineageQuery, LiveEvent, Shared, StaticInfo},
    serve::metrics::{self, Page},
    serve::sink::Sink,
};

/// How often the recorder checks its seal cadence: a segment is sealed at most this late after
/// its deadline (the benchmark measured sealed p99 = interval + 82 ms with a 100 ms tick).
const TICK: Duration = Duration::from_millis(20);

pub fn boot_time_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

fn wall_time_ns() -> u64 {
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

/// Where every produced event goes: stdout (if asked), live tail clients, and the chain.
struct Outputs {
    sink: Sink,
    recorder: Recorder,
    /// Reused buffer for the chain encoding of one event.
    buf: Vec<u8>,
    live: broadcast::Sender<Arc<LiveEvent>>,
    head: watch::Sender<Head>,
}

impl Outputs {
    fn publish_live(&self, event: &Event, pipeline: &Pipeline) {
        if self.live.receiver_count() == 0 {
            return;
        }
        let image = event
            .exec_id
            .as_ref()
            .and_then(|id| pipeline.table().image(id));
        let (binary, comm, uid, cgroup_id) = image
            .map(|i| (i.binary.clone(), i.comm.clone(), i.uid, i.cgroup_id))
            .unwrap_or_default();
        let live = LiveEvent {
            json: serde_json::to_string(event).unwrap_or_default(),
            kind: event.detail.kind(),
            exec_id: event.exec_id.clone(),
            ancestors: event.ancestors.clone(),
            binary,
            comm,
            uid,
            cgroup_id,
            container: event.container.as_ref().map(|c| c.id.clone()),
        };
        // No receiver left is fine: nobody is tailing.
        let _ = self.live.send(Arc::new(live));
    }

    fn publish_head(&self) {
        let durable = self.recorder.last_sealed.map(|h| Head {
            next_index: h.end_index(),
            head_link: h.chain_head,
            last_segment: Some((h.segment_number, h.digest())),
        });
        let head = durable.unwrap_or_default();
        self.head.send_if_modified(|current| {
            let changed = *current != head;
            *current = head;
            changed
        });
    }

    fn emit(&mut self, mut event: Event, pipeline: &mut Pipeline) {
        // Ancestry is derivable from parent links on the chain, so it is only walked for the
        // readers of live output, not on every event.
        let live = self.sink.prints() || self.live.receiver_count() > 0;
        if live {
            if let Some(id) = &event.exec_id {
                event.ancestors = pipeline.table().ancestors(id);
            }
            self.sink.emit(&event, pipeline.table());
            self.publish_live(&event, pipeline);
            event.ancestors.clear();
        }
        self.buf.clear();
        if serde_json::to_writer(&mut self.buf, &event).is_ok() {
            self.recorder.append_event(&self.buf, event.time_ns);
            if let Some(id) = &event.exec_id {
                let json: Arc<str> = String::from_utf8_lossy(&self.buf).into();
                pipeline.table_mut().remember(id, json);
            }
        }
        if let crate::capture::event::Detail::Loss { .. } = &event.detail {
            for loss in report::loss_entries(&event) {
                self.recorder.append_loss(&loss, event.time_ns);
            }
        }
    }

    fn flush(&mut self) {
        self.sink.flush();
        self.recorder.flush();
    }

    fn drain(&mut self, ring: &mut RingBuf<MapData>, pipeline: &mut Pipeline) -> usize {
        let now = Instant::now();
        let mut n = 0;
        while let Some(item) = ring.next() {
            n += 1;
            let event = pipeline.handle(&item, now);
            drop(item);
            let extra = pipeline.take_extra();
            for event in event.into_iter().chain(extra) {
                self.emit(event, pipeline);
                if self.recorder.full() {
                    self.recorder.seal(boot_time_ns());
                }
            }
        }
        if n > 0 {
            self.flush();
        }
        n
    }

    fn reconcile(&mut self, ebpf: &aya::Ebpf, pipeline: &mut Pipeline) -> anyhow::Result<()> {
        let failures = probes::reservation_failures(ebpf)?;
        for event in pipeline.reconcile(&failures, Instant::now(), boot_time_ns()) {
            self.emit(event, pipeline);
        }
        self.flush();
        Ok(())
    }

    fn tick(&mut self, ebpf: &aya::Ebpf, ledger: &mut FilterLedger) {
        if self.recorder.seal_due() {
            // Each sealed segment says what the filter suppressed while it was open.
            match filter::read_counts(ebpf) {
                Ok(counts) => {
                    if let Some(entry) = ledger.counts_entry(&counts) {
                        self.recorder.append_filter(&entry, boot_time_ns());
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading filter counters failed"),
            }
        }
        self.recorder.tick(boot_time_ns(), wall_time_ns());
        self.publish_head();
    }
}

fn answer_lineage(query: LineageQuery, pipeline: &Pipeline) {
    let table = pipeline.table();
    let node = |img: &crate::capture::lineage::Image| lineage_proto::v1::LineageNode {
        exec_id: img.exec_id.to_string(),
        parent_exec_id: img.parent_exec_id.as_deref().unwrap_or_default().to_owned(),
        tgid: img.tgid,
        binary: img.binary.clone(),
        argv: img.argv.clone(),
        comm: img.comm.clone(),
        running: table.is_running(img),
        events_json: img.recent_events.iter().map(|e| e.to_string()).collect(),
    };
    let answer = table
        .lineage(&query.exec_id)
        .map(|l| lineage_proto::v1::LineageResponse {
            ancestors: l.ancestors.into_iter().map(node).collect(),
            node: Some(node(l.node)),
            descendants: l.descendants.into_iter().map(node).collect(),
        });
    let _ = query.reply.send(answer);
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

/// Re-reads the filter section of the config file and applies it; the new policy goes on the
/// chain. Anything wrong leaves the old filter in place.
fn reload_filter(
    path: Option<&Path>,
    ebpf: &mut aya::Ebpf,
    out: &mut Outputs,
    ledger: &mut FilterLedger,
) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP: no --config file to reload the filter from");
        return;
    };
    let compiled = match Config::load(path).and_then(|c| c.validate().map(|()| c)) {
        Ok(c) => match c.filter.compile() {
            Ok(compiled) => compiled,
            Err(e) => return tracing::error!(error = %e, "SIGHUP: filter not changed"),
        },
        Err(e) => return tracing::error!(error = %e, "SIGHUP: filter not changed"),
    };
    let counts = filter::read_counts(ebpf).unwrap_or_default();
    // Counts so far belong to the old policy.
    if let Some(entry) = ledger.counts_entry(&counts) {
        out.recorder.append_filter(&entry, boot_time_ns());
    }
    if let Err(e) = filter::apply(ebpf, &compiled) {
        return tracing::error!(error = %e, "SIGHUP: applying the filter failed");
    }
    *ledger = FilterLedger::new(&compiled, counts);
    out.recorder
        .append_filter(ledger.policy_entry(), boot_time_ns());
    tracing::info!(
        rules = compiled.rules.len(),
        "SIGHUP: filter reloaded and recorded"
    );
}

/// Enforcement state: the mode and policy in force, the decisions ring, and the counters last
/// declared on the chain.
struct Enforcer {
    mode: Mode,
    deadline_ms: u64,
    decisions: Option<RingBuf<MapData>>,
    declared: [u64; lineage_common::ENFORCE_SLOTS as usize],
}

impl Enforcer {
    /// Applies the policy, attaches the programs unless observing, and records mode and policy.
    fn start(
        ebpf: &mut aya::Ebpf,
        settings: &enforce::EnforcementSettings,
        out: &mut Outputs,
    ) -> anyhow::Result<Enforcer> {
        let compiled = settings.compile()?;
        // Healthy as of now: the deadline starts counting when the pipeline runs.
        enforce::kernel::beat(ebpf, boot_time_ns())?;
        let decisions = if compiled.mode == Mode::Observe {
            None
        } else {
            let ring = enforce::kernel::take_decisions(ebpf)?;
            enforce::kernel::attach(ebpf, &settings.cgroup_root)?;
            Some(ring)
        };
        enforce::kernel::apply(ebpf, &compiled)?;
        let now = boot_time_ns();
        out.recorder.append_enforcement(
            &enforce::mode_entry(compiled.mode, None, settings.heartbeat_deadline_ms),
            now,
        );
        out.recorder
            .append_enforcement(&enforce::policy_entry(&compiled), now);
        tracing::info!(
            mode = compiled.mode.name(),
            deadline_ms = settings.heartbeat_deadline_ms,
            "enforcement"
        );
        Ok(Enforcer {
            mode: compiled.mode,
            deadline_ms: settings.heartbeat_deadline_ms,
            decisions,
            declared: enforce::kernel::counters(ebpf).unwrap_or_default(),
        })
    }

    /// SIGHUP: a new policy and possibly a new mode (observe cannot be left or entered without
    /// a restart, since the programs are attached at start).
    fn reload(&mut self, ebpf: &mut aya::Ebpf, config: &Config, out: &mut Outputs) {
        let compiled = match config.enforcement.compile() {
            Ok(c) => c,
            Err(e) => return tracing::error!(error = %e, "SIGHUP: enforcement not changed"),
        };
        if (compiled.mode == Mode::Observe) != (self.mode == Mode::Observe) {
            return tracing::error!(
                "SIGHUP: switching to or from observe needs a restart; enforcement not changed"
            );
        }
        if let Err(e) = enforce::kernel::apply(ebpf, &compiled) {
            return tracing::error!(error = %e, "SIGHUP: applying the enforcement policy failed");
        }
        let now = boot_time_ns();
        if compiled.mode != self.mode
            || config.enforcement.heartbeat_deadline_ms != self.deadline_ms
        {
            out.recorder.append_enforcement(
                &enforce::mode_entry(
                    compiled.mode,
                    Some(self.mode),
                    config.enforcement.heartbeat_deadline_ms,
                ),
                now,
            );
        }
        out.recorder
            .append_enforcement(&enforce::policy_entry(&compiled), now);
        self.mode = compiled.mode;
        self.deadline_ms = config.enforcement.heartbeat_deadline_ms;
        tracing::info!(
            mode = self.mode.name(),
            "SIGHUP: enforcement reloaded and recorded"
        );
    }

    /// Refreshes the heartbeat, but only while the recorder can take entries.
    fn beat(&self, ebpf: &mut aya::Ebpf, out: &Outputs) {
        if out.recorder.degraded() {
            return;
        }
        if let Err(e) = enforce::kernel::beat(ebpf, boot_time_ns()) {
            tracing::warn!(error = %e, "heartbeat not refreshed");
        }
    }

    /// One DECISION entry per kernel decision record.
    fn drain(&mut self, out: &mut Outputs, pipeline: &Pipeline) {
        let Some(ring) = self.decisions.as_mut() else {
            return;
        };
        let now = boot_time_ns();
        enforce::kernel::drain(ring, |rec| {
            let mut json = enforce::kernel::decision_json(&rec);
            if let Some(img) = pipeline.table().image_of_tgid(rec.tgid) {
                json["exec_id"] = img.exec_id.to_string().into();
                json["ancestors"] = pipeline
                    .table()
                    .ancestors(&img.exec_id)
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .into();
            }
            let entry = lineage_evidence::entry::Enforcement {
                form: lineage_evidence::entry::EnforcementForm::Decision,
                json: json.to_string(),
            };
            out.recorder.append_enforcement(&entry, now);
        });
    }

    /// A SUMMARY entry whenever the kernel counters moved since the last one.
    fn declare(&mut self, ebpf: &aya::Ebpf, out: &mut Outputs) {
        if self.mode == Mode::Observe {
            return;
        }
        let Ok(counts) = enforce::kernel::counters(ebpf) else {
            return;
        };
        if counts != self.declared {
            out.recorder.append_enforcement(
                &enforce::kernel::summary_entry(&counts, self.mode),
                boot_time_ns(),
            );
            self.declared = counts;
        }
    }
}

pub async fn run(
    config: Config,
    config_path: Option<std::path::PathBuf>,
    duration: Option<Duration>,
) -> anyhow::Result<()> {
    // Missing privileges or kernel features, then anything wrong with the config or the data
    // dir, all fail before the kernel is touched.
    probes::preflight(&config.kernel.btf_path)?;
    let metrics_addr = config.metrics.address()?;
    let data = DataDir::open(&config.evidence.data_dir)?;
    let host = data.host_id(&config.evidence.machine_id_path)?;
    let key = data.signing_key(config.evidence.key_path.as_deref())?;
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
    let (recorder, recovery) = Recorder::open(&data.root, &data.wal_path(), host, key, policy)?;
    tracing::info!(
        data_dir = %data.root.display(),
        host_id = %host.to_hex(),
        key_id = %recorder.public_key().key_id(),
        reason = ?recovery.reason,
        next_index = recovery.last_durable.next_index,
        recovered_entries = recovery.replay.recovered,
        discarded_bytes = recovery.replay.discarded_bytes,
        "evidence store opened (verify with: lineagectl verify {})",
        data.root.display()
    );

    let mut ebpf = probes::load(&LoadParams {
        agent_tgid: std::process::id(),
        offsets,
        capture_offsets,
        io_uring_fields,
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
    let (live, _) = broadcast::channel(config.grpc.tail_buffer);
    let (head_tx, head_rx) = watch::channel(Head::default());
    let (lineage_tx, mut lineage_rx) = mpsc::channel::<LineageQuery>(64);
    let signing_key = recorder.public_key();
    let mut out = Outputs {
        sink: Sink::new(config.output.print),
        recorder,
        buf: Vec::with_capacity(1024),
        live: live.clone(),
        head: head_tx,
    };
    out.publish_head();

    // Filters are in place before the probes they govern are attached.
    let compiled_filter = config.filter.compile()?;
    filter::apply(&mut ebpf, &compiled_filter)?;
    let mut ledger = FilterLedger::new(&compiled_filter, filter::read_counts(&ebpf)?);

    // The reader exists before anything is attached, so nothing is submitted unread.
    let statuses = probes::attach_all(&mut ebpf)?;
    let start = AgentStart {
        reason: recovery.reason,
        config_digest: config_digest(&config),
        last_durable: recovery.last_durable,
        agent_version: format!("lineage-agent {}", env!("CARGO_PKG_VERSION")),
        programs: program_digests(&ebpf, &statuses),
    };
    out.recorder.append_start(&start, boot_time_ns())?;
    out.recorder
        .append_filter(ledger.policy_entry(), boot_time_ns());
    let mut enforcer = Enforcer::start(&mut ebpf, &config.enforcement, &mut out)?;
    let shared = Arc::new(Shared {
        info: StaticInfo {
            host_id: host.0,
            boot_id: boot_id.clone(),
            hostname: hostname(),
            signing_key,
            agent_version: start.agent_version.clone(),
            kernel_version: kernel_version(),
            probes: statuses.clone(),
        },
        data_dir: data.root.clone(),
        head: head_rx,
        events: live,
        lineage: lineage_tx,
    });
    grpc::serve(&config.grpc, shared).await?;

    let entries = snapshot::read_processes(&config.kernel.proc_path)
        .with_context(|| format!("reading {}", config.kernel.proc_path.display()))?;
    for event in pipeline.snapshot(entries, boot_time_ns()) {
        out.emit(event, &mut pipeline);
    }
    out.flush();
    let page = Page::default();
    if let Some(addr) = metrics_addr {
        metrics::serve(addr, page.clone())
            .await
            .with_context(|| format!("metrics endpoint on {addr}"))?;
    }
    sd_notify("READY=1\nSTATUS=capturing");
    tracing::info!(
        probes = statuses.iter().filter(|s| s.attached).count(),
        of = statuses.len(),
        processes = pipeline.table().len(),
        ring_buffer_bytes = config.capture.ring_buffer_bytes,
        "capturing"
    );

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut poll = interval(Duration::from_millis(config.capture.poll_interval_ms));
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut reconcile = interval(Duration::from_millis(config.capture.reconcile_interval_ms));
    reconcile.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut tick = interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let deadline = tokio::time::sleep(duration.unwrap_or(Duration::from_secs(u64::MAX / 4)));
    tokio::pin!(deadline);

    let (reason, stop) = loop {
        tokio::select! {
            _ = sigterm.recv() => break ("SIGTERM", StopReason::Signal),
            _ = sigint.recv() => break ("SIGINT", StopReason::Signal),
            _ = &mut deadline => break ("duration reached", StopReason::Requested),
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                out.drain(guard.get_inner_mut(), &mut pipeline);
                guard.clear_ready();
            }
            _ = poll.tick() => {
                out.drain(ring.get_mut(), &mut pipeline);
                enforcer.drain(&mut out, &pipeline);
            }
            _ = reconcile.tick() => {
                out.reconcile(&ebpf, &mut pipeline)?;
                enforcer.declare(&ebpf, &mut out);
                page.set(report::metrics_page(&pipeline, &out.recorder, &statuses, probes::ring_fill(&ebpf).unwrap_or(0)));
            }
            Some(query) = lineage_rx.recv() => answer_lineage(query, &pipeline),
            _ = sighup.recv() => {
                reload_filter(config_path.as_deref(), &mut ebpf, &mut out, &mut ledger);
                if let Some(c) = config_path.as_deref().and_then(|p| Config::load(p).ok()) {
                    enforcer.reload(&mut ebpf, &c, &mut out);
                }
            }
            _ = tick.tick() => {
                out.tick(&ebpf, &mut ledger);
                enforcer.beat(&mut ebpf, &out);
            }
        }
    };
    tracing::info!(reason, "stopping");
    sd_notify("STOPPING=1\nSTATUS=draining and sealing");

    // Stop producing, then take everything already submitted and account for the rest.
    probes::detach_all(&mut ebpf);
    out.drain(ring.get_mut(), &mut pipeline);
    for event in pipeline.drain_in_flight() {
        out.emit(event, &mut pipeline);
    }
    pipeline.close(&probes::next_sequences(&ebpf)?, Instant::now());
    out.reconcile(&ebpf, &mut pipeline)?;
    enforcer.drain(&mut out, &pipeline);
    enforcer.declare(&ebpf, &mut out);
    if let Some(entry) = ledger.counts_entry(&filter::read_counts(&ebpf)?) {
        out.recorder.append_filter(&entry, boot_time_ns());
    }
    out.recorder.stop(stop, boot_time_ns())?;
    out.publish_head();
    let stats = serde_json::to_string(&pipeline.stats).unwrap_or_default();
    tracing::info!(%stats, next_index = out.recorder.position().next_index, data_dir = %data.root.display(), "stopped; chain sealed");
    Ok(())
}

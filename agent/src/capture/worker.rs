//! The capture thread: ring → decode → loss reconciliation → lineage join, and nothing else.
//!
//! It waits on the ring buffer's fd (or the poll interval), drains it, and hands each event to
//! the writer thread's queue and to the Tail clients' queues without ever waiting for either.
//! Between drains it answers at most a few lineage questions (the process table is its own)
//! and applies filter reloads prepared elsewhere. It reads no files: the config is read and
//! compiled on the serve runtime, segments are read by the serve runtime and the writer, and
//! container identity comes from a cache keyed by cgroup id.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    sync::{
        atomic::{AtomicU8, Ordering},
        mpsc as std_mpsc, Arc,
    },
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use lineage_evidence::entry::StopReason;
use tokio::sync::{mpsc, watch};

use crate::{
    capture::{event::Event, pipeline::Pipeline, tamper::PolicyWatch},
    config::Config,
    enforce::Enforcer,
    kernel::{
        filter::{self, Compiled, FilterLedger},
        probes::{self, ProbeStatus},
    },
    record::{
        report,
        writer::{Entry, RecorderStats, WriterHandle},
    },
    runtime::boot_time_ns,
    serve::{
        grpc::{
            tail::{FanOut, LiveEvent},
            LineageQuery,
        },
        metrics::Publisher,
        sink::Sink,
    },
};

/// Records drained per loop turn.
const DRAIN_BATCH: usize = 4096;

/// Lineage questions answered per loop turn, so a client asking in a loop cannot hold the
/// ring buffer undrained for more than a few answers.
const LINEAGE_PER_TURN: usize = 2;

/// What the other threads can ask of the capture thread.
#[derive(Default)]
pub struct Control {
    /// 0: run; 1: stop on a signal; 2: stop because the requested duration passed.
    stop: AtomicU8,
}

impl Control {
    pub fn stop(&self, reason: StopReason) {
        let v = if reason == StopReason::Requested {
            2
        } else {
            1
        };
        self.stop.store(v, Ordering::Release);
    }

    fn stopping(&self) -> Option<StopReason> {
        match self.stop.load(Ordering::Acquire) {
            0 => None,
            2 => Some(StopReason::Requested),
            _ => Some(StopReason::Signal),
        }
    }
}

/// How the capture thread learns about the rest of the agent.
pub struct Inputs {
    pub lineage: mpsc::Receiver<LineageQuery>,
    /// Configs re-read and checked on SIGHUP, with their filter compiled.
    pub reloads: std_mpsc::Receiver<Reload>,
    pub recorder_stats: watch::Receiver<RecorderStats>,
    pub control: Arc<Control>,
}

/// A config re-read on SIGHUP (off this thread). The filter is `None` when it did not compile,
/// which leaves the old one in force.
pub struct Reload {
    pub config: Config,
    pub filter: Option<Compiled>,
}

pub struct Settings {
    pub poll_interval: Duration,
    pub reconcile_interval: Duration,
}

pub struct Capture {
    pub pipeline: Pipeline,
    pub ebpf: aya::Ebpf,
    pub ring: RingBuf<MapData>,
    pub sink: Sink,
    pub writer: WriterHandle,
    pub enforcer: Enforcer,
    pub fanout: FanOut,
    pub inputs: Inputs,
    pub settings: Settings,
    /// Metrics and health, published once per reconcile.
    pub metrics: Publisher,
    pub statuses: Vec<ProbeStatus>,
    /// The filter policy the kernel maps must hold (compared for TAMPER).
    pub policy: PolicyWatch,
    /// Reused buffer for the chain encoding of one event.
    pub buf: Vec<u8>,
}

impl Capture {
    fn live_event(&self, event: &Event) -> LiveEvent {
        let image = event
            .exec_id
            .as_ref()
            .and_then(|id| self.pipeline.table().image(id));
        let (binary, comm, uid, cgroup_id) = image
            .map(|i| (i.binary.clone(), i.comm.clone(), i.uid, i.cgroup_id))
            .unwrap_or_default();
        LiveEvent {
            json: serde_json::to_string(event).unwrap_or_default(),
            kind: event.detail.kind(),
            exec_id: event.exec_id.clone(),
            ancestors: event.ancestors.clone(),
            binary,
            comm,
            uid,
            cgroup_id,
            container: event.container.as_ref().map(|c| c.id.clone()),
        }
    }

    /// Sends one event to stdout (if asked), the Tail clients that want it, and the chain.
    pub fn emit(&mut self, mut event: Event) {
        // Ancestry is derivable from parent links on the chain, so it is only walked for the
        // readers of live output, not on every event.
        let tailed = !self.fanout.is_empty() && self.fanout.wants_kind(event.detail.kind());
        if self.sink.prints() || tailed {
            if let Some(id) = &event.exec_id {
                event.ancestors = self.pipeline.table().ancestors(id);
            }
            self.sink.emit(&event, self.pipeline.table());
            if tailed {
                let live = Arc::new(self.live_event(&event));
                self.fanout.publish(&live);
            }
            event.ancestors.clear();
        }
        self.buf.clear();
        if serde_json::to_writer(&mut self.buf, &event).is_ok() {
            if let Some(id) = &event.exec_id {
                let json: Arc<str> = String::from_utf8_lossy(&self.buf).into();
                self.pipeline.table_mut().remember(id, json);
            }
            self.writer.event(self.buf.clone(), event.time_ns);
        }
        if let crate::capture::event::Detail::Loss { .. } = &event.detail {
            for loss in report::loss_entries(&event) {
                self.writer
                    .control(Entry::Loss(Box::new(loss), event.time_ns));
            }
        }
    }

    /// Records the processes already running (read from procfs once, before the capture
    /// thread starts, so the thread itself never reads files).
    pub fn record_snapshot(&mut self, proc_root: &std::path::Path) -> anyhow::Result<()> {
        let entries = crate::capture::snapshot::read_processes(proc_root)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", proc_root.display()))?;
        for event in self.pipeline.snapshot(entries, boot_time_ns()) {
            self.emit(event);
        }
        self.flush();
        Ok(())
    }

    /// Everything the ring holds now. Returns how many records were read.
    fn drain(&mut self) -> usize {
        let now = Instant::now();
        let mut n = 0;
        // A bounded batch: under a sustained storm the ring is never empty, and the loop turn
        // (writer wake-up, Tail wake-ups and joins, lineage answers) must still come round.
        while n < DRAIN_BATCH {
            let event = {
                let Some(item) = self.ring.next() else { break };
                n += 1;
                self.pipeline.handle(&item, now)
            };
            let extra = self.pipeline.take_extra();
            for event in event.into_iter().chain(extra) {
                self.emit(event);
            }
        }
        if n > 0 {
            self.flush();
        }
        n
    }

    fn flush(&mut self) {
        self.sink.flush();
        self.writer.kick();
        self.fanout.wake();
    }

    fn reconcile(&mut self) {
        match probes::reservation_failures(&self.ebpf) {
            Ok(failures) => {
                for event in self
                    .pipeline
                    .reconcile(&failures, Instant::now(), boot_time_ns())
                {
                    self.emit(event);
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading reservation failures failed"),
        }
        self.flush();
    }

    /// Renders the metrics page and health verdict for the endpoint.
    pub fn render_metrics(&self) {
        let recorder = *self.inputs.recorder_stats.borrow();
        self.metrics.publish(
            &self.pipeline,
            &recorder,
            self.writer.dropped_total,
            probes::ring_fill(&self.ebpf).unwrap_or(0),
            &filter::read_counts(&self.ebpf).unwrap_or_default(),
        );
    }

    fn answer_lineage(&mut self) {
        for _ in 0..LINEAGE_PER_TURN {
            let Ok(query) = self.inputs.lineage.try_recv() else {
                return;
            };
            let _ = query.reply.send(crate::serve::grpc::lineage_answer(
                &query.exec_id,
                self.pipeline.table(),
            ));
        }
    }

    fn reload(&mut self, reload: Reload) {
        if let Some(compiled) = reload.filter {
            self.reload_filter(compiled);
        }
        self.enforcer
            .reload(&mut self.ebpf, &reload.config, &mut self.writer);
    }

    fn reload_filter(&mut self, compiled: Compiled) {
        let counts_before = filter::read_counts(&self.ebpf).unwrap_or_default();
        if let Err(e) = filter::apply(&mut self.ebpf, &compiled) {
            return tracing::error!(error = %e, "SIGHUP: applying the filter failed");
        }
        let ledger = FilterLedger::new(&compiled, counts_before.clone());
        self.policy.replace(compiled.clone());
        self.writer.control(Entry::FilterReload(Box::new(
            crate::record::writer::FilterReload {
                ledger,
                counts_before,
                time_ns: boot_time_ns(),
            },
        )));
        tracing::info!(
            rules = compiled.rules.len(),
            "SIGHUP: filter reloaded and recorded"
        );
        self.metrics.filter_rules = compiled.rules;
    }

    /// Waits until the ring is readable or `timeout` passes.
    fn wait(&self, timeout: Duration) {
        let mut fd = libc::pollfd {
            fd: self.ring.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut fd, 1, timeout.as_millis().min(1000) as libc::c_int) };
    }

    /// Runs until stopped; then drains what is left, accounts for the rest, and has the writer
    /// record AGENT_STOP and seal. Returns the stop reason.
    pub fn run(mut self) -> anyhow::Result<StopReason> {
        let mut last_reconcile = Instant::now();
        let reason = loop {
            if let Some(reason) = self.inputs.control.stopping() {
                break reason;
            }
            self.fanout.refresh();
            let drained = self.drain();
            self.enforcer.drain(&mut self.writer, self.pipeline.table());
            if last_reconcile.elapsed() >= self.settings.reconcile_interval {
                last_reconcile = Instant::now();
                self.reconcile();
                self.enforcer.declare(&self.ebpf, &mut self.writer);
                self.render_metrics();
            }
            self.answer_lineage();
            while let Ok(reload) = self.inputs.reloads.try_recv() {
                self.reload(reload);
            }
            if let Some(tamper) = self.policy.check(&mut self.ebpf) {
                self.writer
                    .control(Entry::Tamper(Box::new(tamper), boot_time_ns()));
                self.writer.kick();
            }
            let stats = *self.inputs.recorder_stats.borrow();
            self.enforcer.beat(&mut self.ebpf, &stats);
            // A full batch means more is waiting: go round again at once.
            if drained < DRAIN_BATCH {
                self.wait(self.settings.poll_interval);
            }
        };
        // Stop producing, then take everything already submitted and account for the rest.
        probes::detach_all(&mut self.ebpf);
        while self.drain() == DRAIN_BATCH {}
        self.pipeline
            .close(&probes::next_sequences(&self.ebpf)?, Instant::now());
        self.reconcile();
        self.enforcer.drain(&mut self.writer, self.pipeline.table());
        self.enforcer.declare(&self.ebpf, &mut self.writer);
        let stats = serde_json::to_string(&self.pipeline.stats).unwrap_or_default();
        let dropped = self.writer.dropped_total;
        self.writer.stop(reason)?;
        tracing::info!(%stats, queue_dropped = dropped, "capture stopped; chain sealed");
        Ok(reason)
    }
}

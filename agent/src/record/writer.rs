//! The writer thread: it alone owns the recorder (chain append, journal, sealing, fsync,
//! retention) and the filter ledger, fed by the capture thread through a bounded
//! single-producer/single-consumer queue (`ringbuf`).
//!
//! The capture thread never waits for the disk: when the queue is full an event is dropped and
//! counted, and the count goes on the chain as a DROPPED entry (reason QUEUE_FULL) as soon as
//! the queue has room again. Control entries (start, loss, filter, stop) are rare and are never
//! dropped: the capture thread waits for room for those.

use std::{
    collections::VecDeque,
    thread::{self, JoinHandle, Thread},
    time::{Duration, Instant},
};

use lineage_evidence::{
    digest::Digest,
    entry::{AgentStart, DropReason, Dropped, Enforcement, Filter, Loss, StopReason, Tamper},
};
use lineage_ops::Histogram;
use ringbuf::{
    traits::{Consumer as _, Observer as _, Producer as _, Split as _},
    HeapCons, HeapProd, HeapRb,
};
use tokio::sync::watch;

use crate::{
    kernel::filter::{CountsReader, FilterLedger},
    record::recorder::{DiskUsage, Recorder, RecorderError},
    runtime::{boot_time_ns, wall_time_ns},
    serve::metrics::seal_histogram,
};

/// How often the writer checks its seal cadence: a segment is sealed at most this late after
/// its deadline (the benchmark measured sealed p99 = interval + 82 ms with a 100 ms tick).
const TICK: Duration = Duration::from_millis(20);

/// Where the chain stands, published after every seal (gRPC GetInfo, Pull follow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    pub next_index: u64,
    pub head_link: Digest,
    pub last_segment: Option<(u64, Digest)>,
}

/// The recorder's counters, published every tick (metrics, health).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecorderStats {
    pub appended_entries: u64,
    pub refused_entries: u64,
    pub next_index: u64,
    pub sealed_segments: u64,
    pub seal_latency: Histogram,
    /// New entries are refused (a sealed segment waits for disk space).
    pub degraded: bool,
    /// Segments in the checkpoint tree and the largest size a witness cosigned.
    pub witness_lag: Option<(u64, Option<u64>)>,
    pub disk: DiskUsage,
    /// (segments, bytes) deleted by retention, by reason
    /// ([`crate::record::recorder::RETENTION_REASONS`]).
    pub retention_deleted: [(u64, u64); 2],
    /// When the writer last published (every tick while it runs): enforcement's liveness.
    pub published_at: Option<Instant>,
}

impl Default for RecorderStats {
    fn default() -> Self {
        RecorderStats {
            appended_entries: 0,
            refused_entries: 0,
            next_index: 0,
            sealed_segments: 0,
            seal_latency: seal_histogram(),
            degraded: false,
            witness_lag: None,
            disk: DiskUsage::default(),
            retention_deleted: [(0, 0); 2],
            published_at: None,
        }
    }
}

impl RecorderStats {
    fn of(r: &Recorder) -> Self {
        RecorderStats {
            appended_entries: r.appended_entries,
            refused_entries: r.refused_entries,
            next_index: r.position().next_index,
            sealed_segments: r.sealed_segments,
            seal_latency: r.seal_latency,
            degraded: r.degraded(),
            // Reads the checkpoint directory: refreshed once a second by the writer.
            witness_lag: None,
            disk: r.disk,
            retention_deleted: r.retention_deleted,
            published_at: None,
        }
    }
}

/// One entry for the chain, or an instruction for the writer.
pub enum Entry {
    /// An EVENT payload (encoded by the capture thread).
    Event {
        payload: Vec<u8>,
        time_ns: u64,
    },
    // Rare entries are boxed so the queue's slots stay the size of an event.
    Loss(Box<Loss>, u64),
    Dropped(Box<Dropped>, u64),
    Filter(Box<Filter>, u64),
    Start(Box<AgentStart>, u64),
    Enforcement(Box<Enforcement>, u64),
    /// The capture policy was found changed in the kernel: recorded and sealed at once.
    Tamper(Box<Tamper>, u64),
    /// A new filter policy is in force: counts up to `counts_before` belong to the old one.
    FilterReload(Box<FilterReload>),
    /// Record AGENT_STOP, seal, and end the thread.
    Stop(StopReason, u64),
}

pub struct FilterReload {
    pub ledger: FilterLedger,
    pub counts_before: Vec<u64>,
    pub time_ns: u64,
}

/// What the writer publishes for the other threads.
pub struct Published {
    pub head: watch::Sender<Head>,
    pub stats: watch::Sender<RecorderStats>,
}

/// The capture thread's end: offers entries, counts what did not fit.
pub struct WriterHandle {
    queue: HeapProd<Entry>,
    /// Control entries that found the queue full, in order; they go before any new event.
    held: VecDeque<Entry>,
    thread: Thread,
    join: Option<JoinHandle<Result<(), RecorderError>>>,
    /// Events dropped and not yet declared on the chain: (count, first ns, last ns).
    undeclared: Option<(u64, u64, u64)>,
    /// Events dropped because the queue was full, since start.
    pub dropped_total: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("starting the writer thread: {0}")]
    Spawn(std::io::Error),
    #[error("the writer thread panicked")]
    Panicked,
    #[error(transparent)]
    Recorder(#[from] RecorderError),
}

/// Starts the writer thread with a queue of `capacity` entries.
pub fn spawn(
    recorder: Recorder,
    ledger: FilterLedger,
    counts: Option<CountsReader>,
    published: Published,
    capacity: usize,
) -> Result<WriterHandle, WriterError> {
    let (prod, cons) = HeapRb::new(capacity.max(16)).split();
    let writer = Writer {
        witness_lag: (None, None),
        started: false,
        recorder,
        ledger,
        counts,
        published,
    };
    let join = thread::Builder::new()
        .name("lineage-writer".into())
        .spawn(move || writer.run(cons))
        .map_err(WriterError::Spawn)?;
    Ok(WriterHandle {
        queue: prod,
        held: VecDeque::new(),
        thread: join.thread().clone(),
        join: Some(join),
        undeclared: None,
        dropped_total: 0,
    })
}

impl WriterHandle {
    /// Offers an event; when the queue is full it is dropped and counted (never waits).
    pub fn event(&mut self, payload: Vec<u8>, time_ns: u64) {
        if self.push_held() {
            if let Some((count, first, last)) = self.undeclared {
                let declared = Entry::Dropped(
                    Box::new(Dropped {
                        reason: DropReason::QueueFull,
                        count,
                        first_time_ns: first,
                        last_time_ns: last,
                    }),
                    last,
                );
                if self.queue.try_push(declared).is_ok() {
                    self.undeclared = None;
                }
            }
            if self.undeclared.is_none()
                && self
                    .queue
                    .try_push(Entry::Event { payload, time_ns })
                    .is_ok()
            {
                return;
            }
        }
        self.dropped_total += 1;
        let d = self.undeclared.get_or_insert((0, time_ns, time_ns));
        d.0 += 1;
        d.2 = time_ns;
    }

    /// Queues an entry that must not be lost (loss, filter, start). It never waits either: if
    /// the queue is full the entry is held, in order, and goes first when there is room.
    pub fn control(&mut self, entry: Entry) {
        self.held.push_back(entry);
        self.push_held();
    }

    /// Moves held control entries into the queue; true when none is left.
    fn push_held(&mut self) -> bool {
        while let Some(entry) = self.held.pop_front() {
            if let Err(back) = self.queue.try_push(entry) {
                self.held.push_front(back);
                return false;
            }
        }
        true
    }

    /// At shutdown only: waits until every held entry is in the queue.
    fn push_all_held(&mut self) {
        while !self.push_held() {
            if self.join.as_ref().is_none_or(|j| j.is_finished()) {
                return; // the writer is gone; its error is reported by `stop`
            }
            self.kick();
            thread::sleep(Duration::from_micros(200));
        }
    }

    /// Entries waiting for the writer.
    pub fn queued(&self) -> usize {
        self.queue.occupied_len()
    }

    /// Wakes the writer after a batch (once per batch, not per entry).
    pub fn kick(&self) {
        self.thread.unpark();
    }

    /// Declares pending drops, records AGENT_STOP, seals, and waits for the thread to end.
    pub fn stop(mut self, reason: StopReason) -> Result<(), WriterError> {
        let now = boot_time_ns();
        if let Some((count, first, last)) = self.undeclared.take() {
            self.held.push_back(Entry::Dropped(
                Box::new(Dropped {
                    reason: DropReason::QueueFull,
                    count,
                    first_time_ns: first,
                    last_time_ns: last,
                }),
                now,
            ));
        }
        self.held.push_back(Entry::Stop(reason, now));
        self.push_all_held();
        self.kick();
        let join = self.join.take().expect("joined once");
        join.join().map_err(|_| WriterError::Panicked)??;
        Ok(())
    }
}

struct Writer {
    /// The checkpoint/witness state for metrics, and when it was last read.
    witness_lag: (Option<(u64, Option<u64>)>, Option<Instant>),
    recorder: Recorder,
    ledger: FilterLedger,
    counts: Option<CountsReader>,
    published: Published,
    /// AGENT_START is on the chain (ticks wait for it).
    started: bool,
}

impl Writer {
    fn run(mut self, mut queue: HeapCons<Entry>) -> Result<(), RecorderError> {
        let mut last_tick = Instant::now();
        self.publish();
        loop {
            let mut handled = 0usize;
            while let Some(entry) = queue.try_pop() {
                handled += 1;
                if let Some(reason) = self.handle(entry)? {
                    self.recorder.flush();
                    self.stop(reason)?;
                    return Ok(());
                }
            }
            if handled > 0 {
                // One journal write (and fsync, if configured) per batch.
                self.recorder.flush();
            }
            // Nothing is sealed before AGENT_START: it states the last durable position, and a
            // heartbeat sealed while the probes attach would make that claim false.
            if self.started && last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.tick();
            }
            if handled == 0 {
                thread::park_timeout(TICK);
            }
        }
    }

    fn handle(&mut self, entry: Entry) -> Result<Option<(StopReason, u64)>, RecorderError> {
        let r = &mut self.recorder;
        match entry {
            Entry::Event { payload, time_ns } => r.append_event(&payload, time_ns),
            Entry::Loss(loss, t) => r.append_loss(&loss, t),
            Entry::Dropped(d, t) => r.append_dropped(&d, t),
            Entry::Filter(f, t) => r.append_filter(&f, t),
            Entry::Start(start, t) => {
                r.append_start(&start, t)?;
                self.started = true;
            }
            Entry::Enforcement(e, t) => r.append_enforcement(&e, t),
            Entry::Tamper(tamper, t) => {
                r.append_tamper(&tamper, t);
                r.seal(boot_time_ns());
                self.publish();
                return Ok(None);
            }
            Entry::FilterReload(reload) => {
                let FilterReload {
                    ledger,
                    counts_before,
                    time_ns,
                } = *reload;
                // Counts so far belong to the old policy.
                if let Some(entry) = self.ledger.counts_entry(&counts_before) {
                    r.append_filter(&entry, time_ns);
                }
                self.ledger = ledger;
                r.append_filter(self.ledger.policy_entry(), time_ns);
            }
            Entry::Stop(reason, t) => return Ok(Some((reason, t))),
        }
        if self.recorder.full() {
            self.recorder.seal(boot_time_ns());
            self.publish();
        }
        Ok(None)
    }

    fn record_counts(&mut self) {
        let Some(reader) = &self.counts else { return };
        match reader.read() {
            Ok(counts) => {
                if let Some(entry) = self.ledger.counts_entry(&counts) {
                    self.recorder.append_filter(&entry, boot_time_ns());
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading filter counters failed"),
        }
    }

    fn tick(&mut self) {
        if self.recorder.seal_due() {
            // Each sealed segment says what the filter suppressed while it was open.
            self.record_counts();
        }
        self.recorder.tick(boot_time_ns(), wall_time_ns());
        self.publish();
    }

    fn stop(&mut self, (reason, time_ns): (StopReason, u64)) -> Result<(), RecorderError> {
        self.record_counts();
        let result = self.recorder.stop(reason, time_ns);
        self.publish();
        result
    }

    fn publish(&mut self) {
        if self
            .witness_lag
            .1
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.witness_lag = (self.recorder.witness_lag(), Some(Instant::now()));
        }
        let head = self
            .recorder
            .last_sealed
            .map(|h| Head {
                next_index: h.end_index(),
                head_link: h.chain_head,
                last_segment: Some((h.segment_number, h.digest())),
            })
            .unwrap_or_default();
        self.published.head.send_if_modified(|current| {
            let changed = *current != head;
            *current = head;
            changed
        });
        let mut stats = RecorderStats::of(&self.recorder);
        stats.witness_lag = self.witness_lag.0;
        stats.published_at = Some(Instant::now());
        self.published.stats.send_if_modified(|current| {
            let changed = *current != stats;
            *current = stats;
            changed
        });
    }
}

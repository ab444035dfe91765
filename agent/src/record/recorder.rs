//! The evidence recorder: every event and control entry goes onto the host chain in the order
//! consumed, is journaled at once, and is sealed into signed segments on a cadence.
//!
//! Failure policy: when a sealed segment cannot be written (disk full, I/O error) the recorder
//! keeps that segment in memory and retries it; until it is on disk no further entries are
//! accepted, each refused one is counted, and once the write succeeds a DROPPED entry declares
//! how many were refused and when. Sealed segments on disk are never rewritten, so a full disk
//! can cost events but never corrupt what is already sealed.
//!
//! Sealing is forward-secure (FORMAT.md format version 2): each segment is signed by a one-time
//! key and commits to the next one, which is durable before the header naming it is written;
//! the key that signed a segment is erased once that segment is on disk (see
//! `lineage_evidence::sealkeys`). The first segment signed by a newly enrolled key carries the
//! identity's ENROLMENT certificate.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use lineage_evidence::{
    chain::{ChainWriter, ResumeError},
    digest::{Digest, HostId},
    entry::{
        AgentStart, AgentStop, ChainPosition, DropReason, Dropped, Event, Heartbeat, Loss,
        Retention, StartReason, StopReason,
    },
    sealkeys::SealKeys,
    segment::{SealedSegment, SegmentHeader},
    store::{SegmentStore, StoreError},
    tlog::CheckpointWriter,
};

use crate::{
    record::retention,
    record::wal::{Replay, Wal},
    serve::metrics::seal_histogram,
};
use lineage_evidence::entry::RetentionReason;
use lineage_ops::Histogram;

/// Label values of [`Recorder::retention_deleted`], in its order.
pub const RETENTION_REASONS: [&str; 2] = ["budget", "hard_cap"];

/// Sealed segments on disk, as of the last retention check (every 5 s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub segments: u64,
    pub bytes: u64,
    /// Bytes of segments the slowest registered collector has not acknowledged (all of them
    /// when no collector is registered).
    pub unacked_bytes: u64,
    /// Collectors registered under `<data_dir>/acks`.
    pub collectors: u64,
}

/// Seal times are wall-clock ns since the Unix epoch (FORMAT.md); entry times stay on the
/// boot clock the kernel records use.
fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Schema of EVENT payloads written by this agent: one JSON object (docs/EVENTS.md).
pub const EVENT_SCHEMA_JSON_V1: u16 = 1;

#[derive(Debug, Clone)]
pub struct SealPolicy {
    /// Seal at least this often when there are entries.
    pub interval: Duration,
    pub max_entries: u64,
    pub max_bytes: usize,
    /// With no entries for this long, seal a heartbeat so silence is visible.
    pub heartbeat: Duration,
    /// fsync the journal after every drained batch, not only at seals.
    pub fsync_journal: bool,
    /// Disk budget for sealed segments (see retention.rs).
    pub retention_max_bytes: u64,
    pub retention_hard_max_bytes: u64,
    /// Where collectors' acknowledgements are.
    pub acks_dir: std::path::PathBuf,
}

/// How often the retention budget is checked.
const RETENTION_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("cannot continue the chain in {dir}: {source}")]
    Resume { dir: String, source: ResumeError },
    #[error("segment store: {0}")]
    Store(#[from] StoreError),
    #[error("journal {path}: {source}")]
    Journal {
        path: String,
        source: std::io::Error,
    },
    #[error("encoding an entry: {0}")]
    Encode(String),
    #[error(transparent)]
    Keys(#[from] crate::record::datadir::DataDirError),
    #[error("the segment recovered from the journal could not be written")]
    RecoverySeal,
}

/// How the previous run ended, as found on disk.
#[derive(Debug)]
pub struct Recovery {
    pub reason: StartReason,
    pub last_durable: ChainPosition,
    pub replay: Replay,
}

pub struct Recorder {
    writer: ChainWriter,
    keys: SealKeys,
    /// Digest of the capture policy in effect (the newest FILTER POLICY); in every header.
    policy_digest: Digest,
    /// The next sealing key could not be made durable (disk full): like an unwritten segment,
    /// new entries are refused and counted until a seal succeeds.
    key_pending: bool,
    store: SegmentStore,
    wal: Wal,
    wal_path: String,
    policy: SealPolicy,
    last_seal: Instant,
    last_retention: Instant,
    /// A sealed segment that could not be written yet (disk full); retried on every tick.
    unwritten: Option<SealedSegment>,
    /// Entries refused while `unwritten` was pending: (count, first ns, last ns).
    refused: Option<(u64, u64, u64)>,
    scratch: Vec<u8>,
    /// Set after a journal write failed, so the failure is logged once, not per entry.
    wal_failing: bool,
    /// Set while sealed segments cannot be written, so the error is logged once per episode.
    storage_failing: bool,
    pub sealed_segments: u64,
    pub appended_entries: u64,
    pub refused_entries: u64,
    pub last_seal_latency: Duration,
    pub seal_latency: Histogram,
    pub deleted_segments: u64,
    /// (segments, bytes) deleted by retention, by reason ([`RETENTION_REASONS`]).
    pub retention_deleted: [(u64, u64); 2],
    pub disk: DiskUsage,
    /// Header of the newest segment on disk.
    pub last_sealed: Option<SegmentHeader>,
    /// Publishes a checkpoint (docs/FORMAT.md §12) at every seal; `None` when the checkpoint
    /// directory could not be brought in step with the segments (logged at start).
    checkpoints: Option<CheckpointWriter>,
    root: std::path::PathBuf,
}

impl Recorder {
    /// Continues the chain in `root`: resumes after the newest sealed segment, replays the
    /// journal, and seals what it recovered so it is durable before anything new is added.
    /// `keys` resolves the sealing keys for the newest durable header (or `None`).
    pub fn open(
        root: &Path,
        wal_path: &Path,
        host: HostId,
        keys: impl FnOnce(
            Option<&SegmentHeader>,
        ) -> Result<SealKeys, crate::record::datadir::DataDirError>,
        policy: SealPolicy,
    ) -> Result<(Self, Recovery), RecorderError> {
        let store = SegmentStore::create(root)?;
        let (mut writer, sealed_reason) =
            ChainWriter::resume_for_start(&store, host).map_err(|source| {
                RecorderError::Resume {
                    dir: root.display().to_string(),
                    source,
                }
            })?;
        let journal = |source| RecorderError::Journal {
            path: wal_path.display().to_string(),
            source,
        };
        let replay = Wal::replay(wal_path, &mut writer).map_err(journal)?;
        // Anything left in the journal means the last run did not end with a seal.
        let reason = if replay.recovered > 0 || replay.discarded_bytes > 0 {
            StartReason::RecoveredAfterCrash
        } else {
            sealed_reason
        };
        let wal = Wal::open(wal_path).map_err(journal)?;
        let last_sealed = match store.last_number()? {
            Some(n) => SegmentHeader::parse(&store.read(n)?).ok(),
            None => None,
        };
        let keys = keys(last_sealed.as_ref())?;
        let mut recorder = Recorder {
            writer,
            keys,
            policy_digest: Digest::ZERO,
            key_pending: false,
            store,
            wal,
            wal_path: wal_path.display().to_string(),
            policy,
            last_seal: Instant::now(),
            last_retention: Instant::now(),
            unwritten: None,
            refused: None,
            scratch: Vec::with_capacity(4096),
            wal_failing: false,
            storage_failing: false,
            sealed_segments: 0,
            appended_entries: 0,
            refused_entries: 0,
            last_seal_latency: Duration::ZERO,
            seal_latency: seal_histogram(),
            deleted_segments: 0,
            retention_deleted: [(0, 0); 2],
            disk: DiskUsage::default(),
            last_sealed,
            checkpoints: None,
            root: root.to_owned(),
        };
        recorder.checkpoints = match CheckpointWriter::open(root, host, &recorder.store) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "checkpoints disabled: the checkpoint tree cannot be rebuilt from {}", root.display());
                None
            }
        };
        if replay.recovered > 0 {
            recorder.seal(0);
            if recorder.degraded() || recorder.writer.pending_entries() > 0 {
                return Err(RecorderError::RecoverySeal);
            }
        }
        recorder.wal.reset().map_err(journal)?;
        let last_durable = recorder.writer.position();
        Ok((
            recorder,
            Recovery {
                reason,
                last_durable,
                replay,
            },
        ))
    }

    pub fn position(&self) -> ChainPosition {
        self.writer.position()
    }

    /// The identity key verifiers anchor this chain at (else the current sealing key).
    pub fn public_key(&self) -> lineage_evidence::keys::PublicKey {
        self.keys
            .identity()
            .unwrap_or_else(|| self.keys.current().public())
    }

    /// True while a sealed segment waits for disk space: new entries are refused and counted.
    pub fn degraded(&self) -> bool {
        self.unwritten.is_some() || self.key_pending
    }

    fn append_scratch(&mut self, now_ns: u64) {
        if self.degraded() {
            self.refused_entries += 1;
            let r = self.refused.get_or_insert((0, now_ns, now_ns));
            r.0 += 1;
            r.2 = now_ns;
            return;
        }
        match self.writer.append(&self.scratch) {
            Ok((index, link)) => {
                self.appended_entries += 1;
                match self.wal.append(index, &self.scratch, &link) {
                    Ok(()) => self.wal_failing = false,
                    // The entry is in memory and will be sealed; only crash protection suffers.
                    Err(e) if !self.wal_failing => {
                        self.wal_failing = true;
                        tracing::warn!(error = %e, path = %self.wal_path, "journal write failed; entries stay in memory until sealed");
                    }
                    Err(_) => {}
                }
            }
            Err(e) => tracing::error!(error = %e, "entry rejected by the chain writer"),
        }
    }

    pub fn append_event(&mut self, payload: &[u8], now_ns: u64) {
        self.scratch.clear();
        Event {
            schema: EVENT_SCHEMA_JSON_V1,
            payload,
        }
        .encode_into(&mut self.scratch);
        self.append_scratch(now_ns);
    }

    /// A DROPPED entry: events that never reached the recorder (e.g. its queue was full).
    pub fn append_dropped(&mut self, dropped: &Dropped, now_ns: u64) {
        self.scratch.clear();
        dropped.encode_into(&mut self.scratch);
        self.append_scratch(now_ns);
    }

    pub fn append_loss(&mut self, loss: &Loss, now_ns: u64) {
        self.scratch.clear();
        loss.encode_into(&mut self.scratch);
        self.append_scratch(now_ns);
    }

    pub fn append_start(&mut self, start: &AgentStart, now_ns: u64) -> Result<(), RecorderError> {
        self.scratch.clear();
        start
            .encode_into(&mut self.scratch)
            .map_err(|e| RecorderError::Encode(e.to_string()))?;
        self.append_scratch(now_ns);
        Ok(())
    }

    /// Hands journaled entries to the OS after a drained batch.
    pub fn flush(&mut self) {
        let result = self.wal.flush().and_then(|()| {
            if self.policy.fsync_journal {
                self.wal_sync()
            } else {
                Ok(())
            }
        });
        if let Err(e) = result {
            if !self.wal_failing {
                self.wal_failing = true;
                tracing::warn!(error = %e, path = %self.wal_path, "journal flush failed");
            }
        }
    }

    fn wal_sync(&mut self) -> std::io::Result<()> {
        std::fs::File::open(&self.wal_path)?.sync_data()
    }

    /// Seals when the cadence says so; an idle chain gets a heartbeat. Retries a pending write.
    pub fn tick(&mut self, now_ns: u64, wall_ns: u64) {
        if self.degraded() && !self.retry_unwritten(now_ns) {
            return;
        }
        if self.last_retention.elapsed() >= RETENTION_EVERY {
            self.last_retention = Instant::now();
            if let Err(e) = self.enforce_retention(now_ns) {
                tracing::error!(error = %e, "retention failed");
            }
        }
        let pending = self.writer.pending_entries();
        let due = self.last_seal.elapsed() >= self.policy.interval;
        if pending > 0
            && (due
                || pending >= self.policy.max_entries
                || self.writer.pending_bytes() >= self.policy.max_bytes)
        {
            self.seal(now_ns);
        } else if pending == 0 && self.last_seal.elapsed() >= self.policy.heartbeat {
            self.scratch.clear();
            Heartbeat {
                wall_time_ns: wall_ns,
                monotonic_ns: now_ns,
            }
            .encode_into(&mut self.scratch);
            self.append_scratch(now_ns);
            self.seal(now_ns);
        }
    }

    /// Deletes the oldest segments beyond the disk budget, after recording the deletion on the
    /// chain and sealing that record durably.
    fn enforce_retention(&mut self, now_ns: u64) -> Result<(), RecorderError> {
        let listing = self.store.list()?;
        let sizes: Vec<(u64, u64)> = listing
            .segments
            .iter()
            .map(|(n, path)| (*n, std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)))
            .collect();
        let acked = retention::read_acks(&self.policy.acks_dir);
        self.disk = disk_usage(&sizes, acked, &self.policy.acks_dir);
        let Some(plan) = retention::plan(
            &sizes,
            acked,
            self.policy.retention_max_bytes,
            self.policy.retention_hard_max_bytes,
        ) else {
            return Ok(());
        };
        let bytes = self.store.read(plan.last)?;
        let header = SegmentHeader::parse(&bytes)
            .map_err(|e| RecorderError::Encode(format!("segment {}: {e}", plan.last)))?;
        let record = Retention {
            reason: plan.reason,
            last_deleted_segment: plan.last,
            end_index: header.end_index(),
            deleted_bytes: plan.bytes,
            deleted_segments: plan.segments,
            last_deleted_header_digest: header.digest(),
        };
        self.scratch.clear();
        record.encode_into(&mut self.scratch);
        self.append_scratch(now_ns);
        self.seal(now_ns);
        if self.degraded() {
            return Ok(());
        }
        for (n, path) in listing.segments.iter().filter(|(n, _)| *n <= plan.last) {
            std::fs::remove_file(path).map_err(|source| RecorderError::Journal {
                path: path.display().to_string(),
                source,
            })?;
            tracing::debug!(segment = n, "deleted by retention");
        }
        self.deleted_segments += plan.segments;
        let slot = &mut self.retention_deleted[match plan.reason {
            RetentionReason::Budget => 0,
            RetentionReason::HardCap => 1,
        }];
        slot.0 += plan.segments;
        slot.1 += plan.bytes;
        self.disk.segments = self.disk.segments.saturating_sub(plan.segments);
        self.disk.bytes = self.disk.bytes.saturating_sub(plan.bytes);
        self.disk.unacked_bytes = self.disk.unacked_bytes.min(self.disk.bytes);
        let why = match plan.reason {
            RetentionReason::Budget => "acknowledged and over retention.max_bytes",
            RetentionReason::HardCap => "over retention.hard_max_bytes",
        };
        tracing::info!(
            upto = plan.last,
            segments = plan.segments,
            bytes = plan.bytes,
            "retention deleted the oldest segments ({why})"
        );
        Ok(())
    }

    /// Whether the next `tick` will seal the open segment (so per-seal entries go in first).
    pub fn seal_due(&self) -> bool {
        let pending = self.writer.pending_entries();
        !self.degraded()
            && pending > 0
            && (self.last_seal.elapsed() >= self.policy.interval || self.full())
    }

    pub fn append_tamper(&mut self, tamper: &lineage_evidence::entry::Tamper, now_ns: u64) {
        self.scratch.clear();
        tamper.encode_into(&mut self.scratch);
        self.append_scratch(now_ns);
    }

    pub fn append_filter(&mut self, filter: &lineage_evidence::entry::Filter, now_ns: u64) {
        if let lineage_evidence::entry::Filter::Policy { policy_digest, .. } = filter {
            self.policy_digest = *policy_digest;
        }
        self.scratch.clear();
        filter.encode_into(&mut self.scratch);
        self.append_scratch(now_ns);
    }

    pub fn append_enforcement(
        &mut self,
        entry: &lineage_evidence::entry::Enforcement,
        now_ns: u64,
    ) {
        self.scratch.clear();
        entry.encode_into(&mut self.scratch);
        self.append_scratch(now_ns);
    }

    /// Whether the entry cap or byte cap is reached (the caller seals between batches).
    pub fn full(&self) -> bool {
        self.writer.pending_entries() >= self.policy.max_entries
            || self.writer.pending_bytes() >= self.policy.max_bytes
    }

    /// Seals the open segment now and writes it; on failure keeps it for retry.
    pub fn seal(&mut self, now_ns: u64) {
        if self.degraded() {
            return;
        }
        let started = Instant::now();
        if let Some(cert) = self.keys.take_enrolment() {
            // Journaled like any entry, so a crash before this seal cannot lose it.
            self.scratch.clear();
            cert.encode_into(&mut self.scratch);
            self.append_scratch(now_ns);
        }
        self.flush();
        // The next key must be durable before a header commits to it.
        let next = match self.keys.prepare() {
            Ok(next) => next,
            Err(e) => {
                // Same policy as a segment that cannot be written: refuse and count entries.
                if !self.storage_failing {
                    self.storage_failing = true;
                    tracing::error!(error = %e, "CANNOT WRITE SEALED SEGMENT (disk full?): the next sealing key cannot be stored, so nothing is sealed; new events are refused and counted until it can");
                }
                self.key_pending = true;
                return;
            }
        };
        let sealed = self.writer.seal_forward(
            wall_clock_ns(),
            self.keys.current(),
            &next,
            self.policy_digest,
        );
        self.last_seal = Instant::now();
        self.sealed_segments += 1;
        self.write_sealed(sealed, now_ns);
        self.last_seal_latency = started.elapsed();
        self.seal_latency
            .observe(self.last_seal_latency.as_secs_f64());
    }

    fn write_sealed(&mut self, sealed: SealedSegment, now_ns: u64) -> bool {
        match self.store.write(&sealed) {
            Ok(_) => {
                self.publish_checkpoint(&sealed.header);
                self.last_sealed = Some(sealed.header);
                self.storage_failing = false;
                // The segment is durable: the key that signed it goes. The key after the next
                // one is made durable now, off the next seal's path (retried there on failure).
                if let Err(e) = self.keys.commit() {
                    tracing::error!(error = %e, "erasing the used sealing key failed; it is erased at the next start");
                }
                let _ = self.keys.prepare();
                if let Err(e) = self.wal.reset() {
                    tracing::warn!(error = %e, path = %self.wal_path, "journal reset failed");
                }
                true
            }
            Err(e) if self.storage_failing => {
                // Still failing: said once already, when it started.
                tracing::debug!(error = %e, segment = sealed.header.segment_number, "sealed segment still cannot be written");
                self.unwritten = Some(sealed);
                false
            }
            Err(e) => {
                self.storage_failing = true;
                tracing::error!(
                    error = %e,
                    segment = sealed.header.segment_number,
                    "CANNOT WRITE SEALED SEGMENT (disk full?): holding it in memory; new events are refused and counted until it is written"
                );
                let _ = now_ns;
                self.unwritten = Some(sealed);
                false
            }
        }
    }

    /// Adds the segment just written to the checkpoint tree and signs the new checkpoint with
    /// the key that signed the segment. A failure costs the checkpoint, never the segment.
    fn publish_checkpoint(&mut self, header: &SegmentHeader) {
        let Some(c) = &mut self.checkpoints else {
            return;
        };
        if let Err(e) = c.append(header, self.keys.current()) {
            tracing::error!(error = %e, segment = header.segment_number, "checkpoint not published; checkpoints disabled until restart");
            self.checkpoints = None;
        }
    }

    /// Segments in the checkpoint tree and the largest size a witness cosigned (from the
    /// notes witnesses handed back; for metrics).
    pub fn witness_lag(&self) -> Option<(u64, Option<u64>)> {
        let size = self.checkpoints.as_ref()?.size();
        let dir = lineage_evidence::tlog::dir_of(&self.root);
        Some((
            size,
            lineage_evidence::tlog::newest_cosigned_size(&dir)
                .ok()
                .flatten(),
        ))
    }

    fn retry_unwritten(&mut self, now_ns: u64) -> bool {
        if let Some(sealed) = self.unwritten.take() {
            if !self.write_sealed(sealed, now_ns) {
                return false;
            }
        } else if self.key_pending {
            self.key_pending = false;
            self.seal(now_ns);
            if self.degraded() {
                return false;
            }
        } else {
            return true;
        }
        tracing::warn!(
            refused = self.refused.map(|r| r.0).unwrap_or(0),
            "disk space is back: pending segment written"
        );
        if let Some((count, first, last)) = self.refused.take() {
            self.scratch.clear();
            Dropped {
                reason: DropReason::StorageUnavailable,
                count,
                first_time_ns: first,
                last_time_ns: last,
            }
            .encode_into(&mut self.scratch);
            self.append_scratch(now_ns);
        }
        true
    }

    /// Appends AGENT_STOP and seals it; retries a pending write first.
    pub fn stop(&mut self, reason: StopReason, now_ns: u64) -> Result<(), RecorderError> {
        if self.degraded() && !self.retry_unwritten(now_ns) {
            return Err(RecorderError::Store(StoreError::Io {
                path: self.store.dir().into(),
                source: std::io::Error::other("a sealed segment could not be written at shutdown"),
            }));
        }
        self.scratch.clear();
        AgentStop {
            reason,
            time_ns: now_ns,
        }
        .encode_into(&mut self.scratch);
        self.append_scratch(now_ns);
        self.seal(now_ns);
        if self.degraded() {
            return Err(RecorderError::Store(StoreError::Io {
                path: self.store.dir().into(),
                source: std::io::Error::other("the final segment could not be written"),
            }));
        }
        Ok(())
    }
}

/// The disk usage from the segment sizes and the lowest acknowledgement
/// (`retention::read_acks`).
fn disk_usage(sizes: &[(u64, u64)], acked: Option<Option<u64>>, acks_dir: &Path) -> DiskUsage {
    let unacked_bytes = sizes
        .iter()
        .filter(|(n, _)| match acked {
            Some(Some(upto)) => *n > upto,
            Some(None) | None => true,
        })
        .map(|(_, b)| b)
        .sum();
    let collectors = std::fs::read_dir(acks_dir)
        .map(|d| {
            d.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count() as u64
        })
        .unwrap_or(0);
    DiskUsage {
        segments: sizes.len() as u64,
        bytes: sizes.iter().map(|(_, b)| b).sum(),
        unacked_bytes,
        collectors,
    }
}

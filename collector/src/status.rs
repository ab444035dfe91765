//! What the collector knows about each agent, for operators: connection, cursor, counters,
//! findings, gaps and silence. Each agent task owns its own [`AgentStatus`] behind its own
//! lock (no daemon-wide mutex); the [`StatusBoard`] task reads them once a second, detects
//! agents silent past the heartbeat timeout, and rewrites the status file (JSON, atomically).
//!
//! Every notable event both logs and bumps a counter here, so the status file and the log
//! always tell the same story.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::watch;

use crate::state::Gap;

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The last rejected segment.
#[derive(Debug, Clone, Serialize)]
pub struct LastFinding {
    /// Finding kind name, e.g. `MODIFIED`.
    pub kind: String,
    /// Segment number.
    pub segment: u64,
    /// The library's explanation.
    pub detail: String,
    /// When (Unix ms).
    pub at_ms: u64,
}

/// One agent's status.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    /// Configured name.
    pub name: String,
    /// Configured endpoint.
    pub endpoint: String,
    /// Host id announced by the agent.
    pub host_id: Option<String>,
    /// Whether a pull stream is open.
    pub connected: bool,
    /// Next segment number to pull.
    pub cursor: Option<u64>,
    /// Segments received (including rejected ones).
    pub segments_fetched: u64,
    /// Segments verified and stored.
    pub segments_stored: u64,
    /// Bytes of those.
    pub bytes_stored: u64,
    /// Segments quarantined.
    pub segments_quarantined: u64,
    /// Connection attempts after the first.
    pub reconnects: u64,
    /// AckSegments calls that failed.
    pub ack_failures: u64,
    /// When the last segment was stored (Unix ms).
    pub last_segment_at_ms: Option<u64>,
    /// No new segment for longer than the heartbeat timeout.
    pub silent: bool,
    /// Seconds since the last stored segment (or since the collector started).
    pub silent_for_secs: u64,
    /// Rejections per finding kind.
    pub findings: BTreeMap<String, u64>,
    /// The latest rejection.
    pub last_finding: Option<LastFinding>,
    /// Ranges the agent no longer had.
    pub gaps: Vec<Gap>,
    /// The latest connection or store error.
    pub last_error: Option<String>,
    /// Size of the newest checkpoint this collector cosigned for the agent (docs/FORMAT.md §12).
    pub witnessed_size: Option<u64>,
    /// When it was cosigned (Unix ms).
    pub witnessed_at_ms: Option<u64>,
    /// Segments stored but not yet covered by a cosigned checkpoint.
    pub witness_behind: u64,
    /// Checkpoints this collector refused to cosign.
    pub checkpoints_refused: u64,
    #[serde(skip)]
    last_progress: Option<Instant>,
}

/// A handle on one agent's status.
pub type SharedStatus = Arc<Mutex<AgentStatus>>;

impl AgentStatus {
    /// A fresh status.
    pub fn new(name: &str, endpoint: &str) -> SharedStatus {
        Arc::new(Mutex::new(AgentStatus {
            name: name.into(),
            endpoint: endpoint.into(),
            host_id: None,
            connected: false,
            cursor: None,
            segments_fetched: 0,
            segments_stored: 0,
            bytes_stored: 0,
            segments_quarantined: 0,
            reconnects: 0,
            ack_failures: 0,
            last_segment_at_ms: None,
            silent: false,
            silent_for_secs: 0,
            findings: BTreeMap::new(),
            last_finding: None,
            gaps: Vec::new(),
            last_error: None,
            witnessed_size: None,
            witnessed_at_ms: None,
            witness_behind: 0,
            checkpoints_refused: 0,
            last_progress: Some(Instant::now()),
        }))
    }

    /// A segment was stored.
    pub fn stored(&mut self, bytes: u64, cursor: u64) {
        self.segments_stored += 1;
        self.bytes_stored += bytes;
        self.cursor = Some(cursor);
        self.last_segment_at_ms = Some(now_ms());
        self.last_progress = Some(Instant::now());
        if self.silent {
            tracing::info!(agent = %self.name, "agent {} is sending segments again", self.name);
            self.silent = false;
        }
        self.silent_for_secs = 0;
    }

    /// A segment was rejected.
    pub fn rejected(&mut self, kind: &str, segment: u64, detail: &str) {
        self.segments_quarantined += 1;
        *self.findings.entry(kind.to_owned()).or_default() += 1;
        self.last_finding = Some(LastFinding {
            kind: kind.into(),
            segment,
            detail: detail.into(),
            at_ms: now_ms(),
        });
    }

    /// A finding that is not about one stored copy (ROLLBACK, a refused checkpoint, a
    /// squatted host id): counted and shown, nothing quarantined.
    pub fn finding(&mut self, kind: &str, segment: u64, detail: &str) {
        *self.findings.entry(kind.to_owned()).or_default() += 1;
        self.last_finding = Some(LastFinding {
            kind: kind.into(),
            segment,
            detail: detail.into(),
            at_ms: now_ms(),
        });
    }

    /// Checks silence; logs once when the agent becomes silent.
    fn check_silence(&mut self, timeout: Duration) {
        let since = self.last_progress.map_or(Duration::ZERO, |t| t.elapsed());
        self.silent_for_secs = since.as_secs();
        if since > timeout && !self.silent {
            self.silent = true;
            tracing::warn!(
                agent = %self.name,
                "agent {} silent for {}s (heartbeat timeout {}s)",
                self.name,
                since.as_secs(),
                timeout.as_secs()
            );
        }
    }
}

#[derive(Serialize)]
struct StatusFile<'a> {
    collector: &'a str,
    witness_key_id: &'a str,
    updated_at_ms: u64,
    agents: Vec<AgentStatus>,
}

/// The periodic status writer and silence detector.
pub struct StatusBoard {
    /// Collector name.
    pub collector: String,
    /// Witness key id (hex).
    pub witness_key_id: String,
    /// Per-agent status.
    pub agents: Vec<SharedStatus>,
    /// File to write, if any.
    pub path: Option<PathBuf>,
    /// Silence threshold.
    pub heartbeat_timeout: Duration,
    /// The metrics endpoint's state, refreshed every tick; `None` when metrics are off.
    pub metrics: Option<lineage_ops::Endpoint>,
    /// The store directory (fs stores), for its free-space gauges.
    pub store_dir: Option<PathBuf>,
}

impl StatusBoard {
    /// Checks and writes once.
    pub fn tick(&self) {
        let agents: Vec<AgentStatus> = self
            .agents
            .iter()
            .map(|a| {
                let mut a = a.lock().expect("status lock");
                a.check_silence(self.heartbeat_timeout);
                a.clone()
            })
            .collect();
        if let Some(endpoint) = &self.metrics {
            let page = crate::metrics::render(&self.collector, &agents, self.store_dir.as_deref());
            endpoint.update(page, lineage_ops::Health::default());
        }
        let Some(path) = &self.path else { return };
        let file = StatusFile {
            collector: &self.collector,
            witness_key_id: &self.witness_key_id,
            updated_at_ms: now_ms(),
            agents,
        };
        let mut json = serde_json::to_vec_pretty(&file).expect("status serialises");
        json.push(b'\n');
        let tmp = path.with_extension("json.tmp");
        if let Err(e) = std::fs::write(&tmp, &json).and_then(|()| std::fs::rename(&tmp, path)) {
            tracing::warn!("status file {}: {e}", path.display());
        }
    }

    /// Ticks every second until shutdown, then writes a last time.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if let Some(dir) = self.path.as_ref().and_then(|p| p.parent()) {
            if let Err(e) = std::fs::create_dir_all(dir) {
                tracing::warn!("status directory {}: {e}", dir.display());
            }
        }
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = every.tick() => self.tick(),
                _ = shutdown.changed() => break,
            }
        }
        self.tick();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_detected_and_cleared() {
        let s = AgentStatus::new("a", "unix:///x");
        let board = StatusBoard {
            collector: "c".into(),
            witness_key_id: "k".into(),
            agents: vec![s.clone()],
            path: None,
            heartbeat_timeout: Duration::from_millis(10),
            metrics: None,
            store_dir: None,
        };
        board.tick();
        assert!(!s.lock().unwrap().silent);
        std::thread::sleep(Duration::from_millis(30));
        board.tick();
        assert!(s.lock().unwrap().silent);
        s.lock().unwrap().stored(10, 1);
        board.tick();
        assert!(!s.lock().unwrap().silent);
    }
}

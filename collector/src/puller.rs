//! One task per agent: connect, learn the host, pull from the persisted cursor with `follow`,
//! verify each segment, store it with its witness signature, record the new cursor, then
//! acknowledge it to the agent. On any disconnect it reconnects with exponential backoff and
//! resumes from the cursor, so nothing is downloaded twice. A rejected segment is quarantined
//! and reported, the cursor does not move, and the pull is retried later (an agent whose disk
//! was repaired may serve a good copy).

use std::time::Duration;

use bytes::Bytes;
use lineage_evidence::digest::HostId;
use lineage_evidence::keys::{PublicKey, SecretKey};
use lineage_evidence::segment::SegmentView;
use lineage_proto::v1::{AckSegmentsRequest, GetInfoRequest, PullSegmentsRequest};
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::check::{check_segment, Context, Rejected};
use crate::client::{connect, Client, ConnectError};
use crate::config::{AgentConfig, Endpoint};
use crate::state::{Gap, HostState, LastSegment, StateError};
use crate::status::{now_ms, SharedStatus};
use crate::store::{EvidenceStore, Object, StoreError};
use crate::witness;

/// First reconnect delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Delay before asking again for a segment that was rejected.
pub const RETRY_REJECTED: Duration = Duration::from_secs(30);

/// Why a pull stopped.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Could not connect.
    #[error("connect: {0}")]
    Connect(#[from] ConnectError),
    /// An RPC failed or the stream broke.
    #[error("rpc: {0}")]
    Rpc(#[from] tonic::Status),
    /// The agent's host id is not 16 bytes.
    #[error("the agent announced a host id of {0} bytes")]
    BadHostId(usize),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// state.json is damaged.
    #[error("host {host}: {source}")]
    State {
        /// The host.
        host: HostId,
        /// The cause.
        source: StateError,
    },
    /// The stored chain does not match state.json.
    #[error("host {host}: stored segment {number} does not match state.json ({why})")]
    StoredChain {
        /// The host.
        host: HostId,
        /// The segment.
        number: u64,
        /// What differs.
        why: &'static str,
    },
    /// A segment failed verification (already quarantined and reported).
    #[error("segment {number} rejected: {kind}")]
    Rejected {
        /// The segment.
        number: u64,
        /// The deciding finding kind.
        kind: &'static str,
    },
}

/// What every agent task shares.
pub struct Shared {
    /// Where segments go.
    pub store: EvidenceStore,
    /// The witness key.
    pub witness: SecretKey,
    /// Name sent with AckSegments.
    pub collector_name: String,
}

/// One agent's puller.
pub struct AgentTask {
    /// Its configuration.
    pub cfg: AgentConfig,
    /// Pinned keys from `trusted_keys`.
    pub trusted: Vec<PublicKey>,
    /// Shared services.
    pub shared: Arc<Shared>,
    /// Its status.
    pub status: SharedStatus,
}

/// The stored chain of the host being pulled.
struct Session {
    host: HostId,
    state: HostState,
    /// The last stored segment's bytes (the anchor for the next check).
    prev: Option<(u64, Bytes)>,
}

enum Ended {
    Shutdown,
    Stream,
}

/// The endpoint as text, for status.
pub fn endpoint_text(e: &Endpoint) -> String {
    match e {
        Endpoint::Unix(p) => format!("unix://{}", p.display()),
        Endpoint::Tls { url, .. } => url.clone(),
    }
}

impl AgentTask {
    /// Runs until shutdown.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let name = self.cfg.name.clone();
        let mut session: Option<Session> = None;
        let mut backoff = BACKOFF_MIN;
        let mut attempts = 0u64;
        loop {
            if *shutdown.borrow() {
                break;
            }
            if attempts > 0 {
                self.status.lock().expect("status").reconnects += 1;
            }
            attempts += 1;
            let stored_before = self.status.lock().expect("status").segments_stored;
            let delay = match self.pull(&mut session, &mut shutdown).await {
                Ok(Ended::Shutdown) => break,
                Ok(Ended::Stream) => {
                    info!(agent = %name, "agent {name} ended the stream; reconnecting");
                    BACKOFF_MIN
                }
                Err(PullError::Rejected { .. }) => RETRY_REJECTED,
                Err(e) => {
                    warn!(agent = %name, "agent {name}: {e}");
                    self.status.lock().expect("status").last_error = Some(e.to_string());
                    backoff
                }
            };
            self.status.lock().expect("status").connected = false;
            backoff = if self.status.lock().expect("status").segments_stored > stored_before {
                BACKOFF_MIN
            } else {
                (backoff * 2).min(BACKOFF_MAX)
            };
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => break,
            }
        }
        self.status.lock().expect("status").connected = false;
        debug!(agent = %name, "puller stopped");
    }

    async fn load_session(&self, host: HostId) -> Result<Session, PullError> {
        let store = &self.shared.store;
        let state = match store.get(&host, Object::State).await? {
            Some(b) => {
                HostState::from_json(&b).map_err(|source| PullError::State { host, source })?
            }
            None => HostState::new(),
        };
        let prev = match state.last {
            None => None,
            Some(last) => {
                let bytes = store
                    .get(&host, Object::Segment(last.number))
                    .await?
                    .ok_or(PullError::StoredChain {
                        host,
                        number: last.number,
                        why: "the segment is absent",
                    })?;
                let ok =
                    SegmentView::parse(&bytes).is_ok_and(|v| LastSegment::of(&v.header) == last);
                if !ok {
                    return Err(PullError::StoredChain {
                        host,
                        number: last.number,
                        why: "its header differs",
                    });
                }
                Some((last.number, bytes))
            }
        };
        info!(
            agent = %self.cfg.name,
            "agent {} is host {host}; resuming at segment {}",
            self.cfg.name, state.cursor
        );
        Ok(Session { host, state, prev })
    }

    async fn pull(
        &self,
        session: &mut Option<Session>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Ended, PullError> {
        let mut client = tokio::select! {
            c = connect(&self.cfg.endpoint) => c?,
            _ = shutdown.changed() => return Ok(Ended::Shutdown),
        };
        let info = client.get_info(GetInfoRequest {}).await?.into_inner();
        let host = HostId(
            info.host_id
                .as_slice()
                .try_into()
                .map_err(|_| PullError::BadHostId(info.host_id.len()))?,
        );
        if session.as_ref().is_none_or(|s| s.host != host) {
            *session = Some(self.load_session(host).await?);
        }
        let s = session.as_mut().expect("just set");
        {
            let mut st = self.status.lock().expect("status");
            st.host_id = Some(host.to_string());
            st.cursor = Some(s.state.cursor);
            st.gaps = s.state.gaps.clone();
        }
        let mut stream = client
            .pull_segments(PullSegmentsRequest {
                from_segment: s.state.cursor,
                follow: true,
            })
            .await?
            .into_inner();
        {
            let mut st = self.status.lock().expect("status");
            st.connected = true;
            st.last_error = None;
        }
        debug!(agent = %self.cfg.name, "pulling from segment {}", s.state.cursor);
        loop {
            let msg = tokio::select! {
                m = stream.message() => m?,
                _ = shutdown.changed() => return Ok(Ended::Shutdown),
            };
            let Some(seg) = msg else {
                return Ok(Ended::Stream);
            };
            self.status.lock().expect("status").segments_fetched += 1;
            self.accept(s, &mut client, seg.number, seg.data.into())
                .await?;
        }
    }

    /// Verifies, stores, records and acknowledges one pulled segment.
    async fn accept(
        &self,
        s: &mut Session,
        client: &mut Client,
        number: u64,
        data: Bytes,
    ) -> Result<(), PullError> {
        let name = &self.cfg.name;
        let host = s.host;
        if number < s.state.cursor {
            debug!(agent = %name, "ignoring segment {number}: already stored");
            return Ok(());
        }
        let gap = (number > s.state.cursor).then(|| Gap {
            first: s.state.cursor,
            last: number - 1,
            declared: false,
        });
        let ctx = Context {
            host,
            prev: s.prev.as_ref().map(|(n, b)| (*n, &b[..])),
            key_in_effect: s.state.key_in_effect,
            trusted: &self.trusted,
        };
        let accepted = match check_segment(&ctx, number, &data) {
            Ok(a) => a,
            Err(rej) => return Err(self.quarantine(host, number, &data, rej).await),
        };
        for n in &accepted.notes {
            warn!(agent = %name, host = %host, "{} agent {name} segment {number}: {n}", n.kind.name());
        }
        let store = &self.shared.store;
        let mut state = s.state.clone();
        if let Some(g) = gap {
            error!(
                agent = %name, host = %host,
                "MISSING_SEGMENTS agent {name} host {host}: the agent no longer has segments {}..={} (it served {number} for cursor {})",
                g.first, g.last, g.first
            );
            state.gaps.push(g);
        }
        if let Some(up) = accepted.retention_up_to {
            for g in state
                .gaps
                .iter_mut()
                .filter(|g| !g.declared && g.last <= up)
            {
                g.declared = true;
                info!(
                    agent = %name, host = %host,
                    "agent {name}: segments {}..={} are declared deleted by a RETENTION entry in segment {number}",
                    g.first, g.last
                );
            }
        }
        store.put_segment(&host, number, data.clone()).await?;
        let sig = witness::sign(&self.shared.witness, &accepted.digest);
        store
            .put(&host, Object::Witness(number), Bytes::copy_from_slice(&sig))
            .await?;
        if store.get(&host, Object::Pinned).await?.is_none() {
            let k = accepted.header.public_key;
            let line = format!("{}  key-id={}\n", k.to_line(), k.key_id());
            store.put(&host, Object::Pinned, Bytes::from(line)).await?;
            if self.trusted.is_empty() {
                info!(agent = %name, host = %host, "agent {name}: pinned key {} on first use", k.key_id());
            }
        }
        state.cursor = number + 1;
        state.last = Some(LastSegment::of(&accepted.header));
        if state.key_in_effect.is_some_and(|k| k != accepted.next_key) {
            info!(agent = %name, host = %host, "agent {name}: KEY_ROTATION to key {} in segment {number}", accepted.next_key.key_id());
        }
        state.key_in_effect = Some(accepted.next_key);
        store
            .put(&host, Object::State, Bytes::from(state.to_json()))
            .await?;
        let size = data.len() as u64;
        s.state = state;
        s.prev = Some((number, data));
        {
            let mut st = self.status.lock().expect("status");
            st.stored(size, s.state.cursor);
            st.gaps = s.state.gaps.clone();
        }
        debug!(agent = %name, "stored segment {number} ({size} bytes)");
        let ack = AckSegmentsRequest {
            collector: self.shared.collector_name.clone(),
            up_to: number,
        };
        if let Err(e) = client.ack_segments(ack).await {
            let mut st = self.status.lock().expect("status");
            st.ack_failures += 1;
            if st.ack_failures == 1 || st.ack_failures.is_power_of_two() {
                warn!(agent = %name, "agent {name}: AckSegments failed ({} so far): {e}", st.ack_failures);
            }
        }
        Ok(())
    }

    /// Stores the rejected copy and its findings under `quarantine/`, logs and counts it.
    async fn quarantine(
        &self,
        host: HostId,
        number: u64,
        data: &Bytes,
        rej: Rejected,
    ) -> PullError {
        let name = &self.cfg.name;
        let kind = rej.kind().name();
        let first = &rej.findings[0];
        error!(
            agent = %name, host = %host, segment = number,
            "{kind} agent {name} host {host} segment {number}: {first} (quarantined; not stored as valid)"
        );
        self.status
            .lock()
            .expect("status")
            .rejected(kind, number, &first.to_string());
        let report = serde_json::json!({
            "agent": name,
            "host_id": host.to_string(),
            "segment": number,
            "size": data.len(),
            "received_at_ms": now_ms(),
            "kind": kind,
            "findings": rej.findings,
        });
        let store = &self.shared.store;
        let mut json = serde_json::to_vec_pretty(&report).expect("finding serialises");
        json.push(b'\n');
        let r = async {
            store
                .put(&host, Object::Quarantined(number), data.clone())
                .await?;
            store
                .put(&host, Object::Finding(number), Bytes::from(json))
                .await
        }
        .await;
        if let Err(e) = r {
            error!(agent = %name, "agent {name}: could not quarantine segment {number}: {e}");
        }
        PullError::Rejected {
            number,
            kind: rej.kind().name(),
        }
    }
}

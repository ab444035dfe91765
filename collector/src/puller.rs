//! One task per agent: connect, learn the host, pull from the persisted cursor with `follow`,
//! verify each segment, store it with its witness signature, record the new cursor, then
//! acknowledge it to the agent. On any disconnect it reconnects with exponential backoff and
//! resumes from the cursor, so nothing is downloaded twice. A rejected segment is quarantined
//! and reported, the cursor does not move, and the pull is retried later (an agent whose disk
//! was repaired may serve a good copy).

use std::time::Duration;

use bytes::Bytes;
use lineage_evidence::checkpoint::{Note, VerifierKey};
use lineage_evidence::digest::{Digest, HostId};
use lineage_evidence::keys::{PublicKey, SecretKey};
use lineage_evidence::segment::{SegmentHeader, SegmentView};
use lineage_evidence::verify::FindingKind;
use lineage_proto::v1::{
    AckSegmentsRequest, GetCheckpointRequest, GetInfoRequest, PullSegmentsRequest,
    SubmitCosignatureRequest,
};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::check::{check_segment, finding, Context, Rejected};
use crate::client::{connect, Client, ConnectError};
use crate::config::{AgentConfig, Endpoint};
use crate::cosigner::{self, Judge, Refusal, Verdict, Witnessed};
use crate::state::{Gap, HostState, LastSegment, StateError};
use crate::status::{now_ms, SharedStatus};
use crate::store::{EvidenceStore, Object, StoreError};
use crate::witness;
use lineage_client::SegmentAssembler;

/// First reconnect delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Delay before asking again for a segment that was rejected.
pub const RETRY_REJECTED: Duration = Duration::from_secs(30);
/// How often the witness step runs: it fetches the newest checkpoint when the cursor moved.
pub const WITNESS_EVERY: Duration = Duration::from_secs(1);
/// With the cursor still, the agent's checkpoint is checked again this often (a rolled-back
/// or forked agent may stop sending segments the collector would notice).
pub const WITNESS_RECHECK: Duration = Duration::from_secs(5);

/// Why a pull stopped.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Could not connect.
    #[error("connect: {0}")]
    Connect(#[from] ConnectError),
    /// An RPC failed or the stream broke.
    #[error("rpc: {0}")]
    Rpc(#[from] tonic::Status),
    /// The agent's chunks did not add up to segments.
    #[error("pulled chunks: {0}")]
    Chunk(lineage_client::AssembleError),
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
    /// The agent announced a host id bound to another agent, or not the pinned one
    /// (already reported as HOST_CONFLICT).
    #[error("host {host}: {why}")]
    HostConflict {
        /// The host id announced.
        host: HostId,
        /// Why it is refused.
        why: String,
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
    /// Name sent with AckSegments; also the key name of the cosignatures.
    pub collector_name: String,
    /// The C2SP verifier key of the cosignatures (name, type 0x04, witness public key).
    pub vkey: VerifierKey,
    /// Largest message accepted from an agent.
    pub max_message_bytes: usize,
    /// Quarantined copies kept per host, in bytes.
    pub quarantine_max_bytes: u64,
    /// Serialises host-id claims (owner.json) between agent tasks.
    pub claims: tokio::sync::Mutex<()>,
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
    /// Header digests of segments `0..cursor` when all of them are stored: the leaves of the
    /// checkpoint tree the agent's checkpoints must match.
    digests: Option<Vec<Digest>>,
    /// The cursor when a checkpoint was last cosigned or refused.
    witness_attempt: Option<(u64, Instant)>,
    /// Bytes quarantined for this host since the collector started.
    quarantined_bytes: u64,
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
                Err(PullError::Rejected { .. } | PullError::HostConflict { .. }) => RETRY_REJECTED,
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
        let digests = self.load_digests(host, state.cursor).await?;
        info!(
            agent = %self.cfg.name,
            "agent {} is host {host}; resuming at segment {}",
            self.cfg.name, state.cursor
        );
        Ok(Session {
            host,
            state,
            prev,
            digests,
            witness_attempt: None,
            quarantined_bytes: 0,
        })
    }

    /// The header digests of segments `0..cursor`: from `checkpoints/leaves`, else rebuilt
    /// from the stored segments; `None` when some are not stored (a gap).
    async fn load_digests(
        &self,
        host: HostId,
        cursor: u64,
    ) -> Result<Option<Vec<Digest>>, PullError> {
        let store = &self.shared.store;
        let mut d: Vec<Digest> = store
            .get(&host, Object::Leaves)
            .await?
            .map(|b| {
                b.chunks_exact(32)
                    .map(|c| Digest(c.try_into().expect("32 bytes")))
                    .collect()
            })
            .unwrap_or_default();
        // Written before state.json, so it may be one cosign ahead: cut to the cursor.
        d.truncate(usize::try_from(cursor).unwrap_or(usize::MAX));
        while (d.len() as u64) < cursor {
            let n = d.len() as u64;
            let Some(bytes) = store.get(&host, Object::Segment(n)).await? else {
                return Ok(None);
            };
            match SegmentHeader::parse(&bytes) {
                Ok(h) => d.push(h.digest()),
                _ => return Ok(None),
            }
        }
        Ok(Some(d))
    }

    /// Binds the announced host id to this agent: the pinned one, or the first agent that
    /// announced it (`owner.json`). Anything else is a HOST_CONFLICT and nothing is pulled.
    async fn claim_host(&self, host: HostId) -> Result<(), PullError> {
        let name = &self.cfg.name;
        let conflict = |why: String| {
            error!(agent = %name, host = %host, "HOST_CONFLICT agent {name}: {why}; not pulling from it");
            self.status
                .lock()
                .expect("status")
                .finding("HOST_CONFLICT", 0, &why);
            PullError::HostConflict { host, why }
        };
        if let Some(pinned) = self.cfg.host_id {
            if pinned != host {
                return Err(conflict(format!(
                    "it announces host {host}, but host_id = {pinned} is pinned for it"
                )));
            }
        }
        let _claim = self.shared.claims.lock().await;
        let store = &self.shared.store;
        match store.get(&host, Object::Owner).await? {
            Some(b) => {
                let owner = serde_json::from_slice::<serde_json::Value>(&b)
                    .ok()
                    .and_then(|v| v["agent"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                if owner != *name {
                    return Err(conflict(format!(
                        "it announces host {host}, which is bound to agent {owner:?}"
                    )));
                }
            }
            None => {
                let owner = serde_json::json!({ "agent": name, "bound_at_ms": now_ms() });
                store
                    .put(&host, Object::Owner, Bytes::from(owner.to_string() + "\n"))
                    .await?;
            }
        }
        Ok(())
    }

    async fn pull(
        &self,
        session: &mut Option<Session>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Ended, PullError> {
        let mut client = tokio::select! {
            c = connect(&self.cfg.endpoint, self.shared.max_message_bytes) => c?,
            _ = shutdown.changed() => return Ok(Ended::Shutdown),
        };
        let info = client.get_info(GetInfoRequest {}).await?.into_inner();
        let host = HostId(
            info.host_id
                .as_slice()
                .try_into()
                .map_err(|_| PullError::BadHostId(info.host_id.len()))?,
        );
        self.claim_host(host).await?;
        if session.as_ref().is_none_or(|s| s.host != host) {
            *session = Some(self.load_session(host).await?);
        }
        let s = session.as_mut().expect("just set");
        self.check_head(s, info.last_segment);
        {
            let mut st = self.status.lock().expect("status");
            st.host_id = Some(host.to_string());
            st.cursor = Some(s.state.cursor);
            st.gaps = s.state.gaps.clone();
        }
        let mut stream = match client
            .pull_segments(PullSegmentsRequest {
                from_segment: s.state.cursor,
                follow: true,
            })
            .await
        {
            Ok(r) => r.into_inner(),
            // The agent no longer has the cursor's segment: start at its oldest one, and let
            // `accept` record the missing range as a gap.
            Err(status) => match first_available(&status) {
                Some(first) if first > s.state.cursor => {
                    warn!(agent = %self.cfg.name, "agent no longer has segment {}; its oldest is {first}", s.state.cursor);
                    client
                        .pull_segments(PullSegmentsRequest {
                            from_segment: first,
                            follow: true,
                        })
                        .await?
                        .into_inner()
                }
                _ => return Err(status.into()),
            },
        };
        {
            let mut st = self.status.lock().expect("status");
            st.connected = true;
            st.last_error = None;
        }
        debug!(agent = %self.cfg.name, "pulling from segment {}", s.state.cursor);
        let mut witness_tick = tokio::time::interval(WITNESS_EVERY);
        let mut chunks = SegmentAssembler::new();
        loop {
            // `Streaming::message` is cancel safe, so the witness tick may interrupt it.
            let msg = tokio::select! {
                m = stream.message() => m?,
                _ = witness_tick.tick() => {
                    self.witness_step(s, &mut client).await?;
                    continue;
                }
                _ = shutdown.changed() => return Ok(Ended::Shutdown),
            };
            let Some(chunk) = msg else {
                return Ok(Ended::Stream);
            };
            let Some((number, data)) = chunks.push(chunk).map_err(PullError::Chunk)? else {
                continue;
            };
            self.status.lock().expect("status").segments_fetched += 1;
            let r = self.accept(s, &mut client, number, data.into()).await;
            if let Err(PullError::Rejected { .. }) = &r {
                // A rejected segment often means another history: ask for the agent's
                // checkpoint now, so that it is refused (and the agent told) at once.
                s.witness_attempt = None;
                self.witness_step(s, &mut client).await?;
            }
            r?;
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
            return self.compare_reserved(s, number, &data).await;
        }
        // The cursor must move past the segment; 2^64-1 has no successor to move to.
        let Some(next_cursor) = number.checked_add(1) else {
            let rej = Rejected {
                findings: vec![finding(
                    FindingKind::Malformed,
                    number,
                    format!("segment number {number} is the largest possible: no segment can follow it, refused so the cursor cannot wrap"),
                )],
            };
            return Err(self.quarantine(s, number, &data, rej).await);
        };
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
            Err(rej) => return Err(self.quarantine(s, number, &data, rej).await),
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
        state.cursor = next_cursor;
        state.last = Some(LastSegment::of(&accepted.header));
        // Forward-secure (version 2) segments change key every time; only rotations are news.
        if accepted.header.seal.is_none()
            && state.key_in_effect.is_some_and(|k| k != accepted.next_key)
        {
            info!(agent = %name, host = %host, "agent {name}: KEY_ROTATION to key {} in segment {number}", accepted.next_key.key_id());
        }
        state.key_in_effect = Some(accepted.next_key);
        store
            .put(&host, Object::State, Bytes::from(state.to_json()))
            .await?;
        let size = data.len() as u64;
        s.state = state;
        s.prev = Some((number, data));
        // The checkpoint tree's leaves follow only while no segment is missing.
        if let Some(d) = &mut s.digests {
            if d.len() as u64 == number {
                d.push(accepted.digest);
            } else {
                s.digests = None;
            }
        }
        {
            let mut st = self.status.lock().expect("status");
            st.stored(size, s.state.cursor);
            st.witness_behind = s
                .state
                .cursor
                .saturating_sub(s.state.witnessed.map_or(0, |w| w.size));
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
    /// The copy is kept only within the host's quarantine budget and only once (a retried
    /// identical copy is not written again); the finding is always written.
    async fn quarantine(
        &self,
        s: &mut Session,
        number: u64,
        data: &Bytes,
        rej: Rejected,
    ) -> PullError {
        let host = s.host;
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
        let size = data.len() as u64;
        let within = s.quarantined_bytes.saturating_add(size) <= self.shared.quarantine_max_bytes;
        let r = async {
            let same = store.get(&host, Object::Quarantined(number)).await? == Some(data.clone());
            if !same && within {
                store
                    .put(&host, Object::Quarantined(number), data.clone())
                    .await?;
                s.quarantined_bytes += size;
            } else if !same {
                warn!(
                    agent = %name, host = %host,
                    "agent {name}: quarantine budget of {} bytes spent; segment {number} ({size} bytes) is not kept, only its finding",
                    self.shared.quarantine_max_bytes
                );
            }
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
    /// ROLLBACK when the agent's newest segment is behind what this collector holds.
    fn check_head(&self, s: &Session, last_segment: Option<u64>) {
        let Some(held) = s.state.cursor.checked_sub(1) else {
            return;
        };
        if last_segment.is_some_and(|l| l >= held) {
            return;
        }
        let name = &self.cfg.name;
        let has = last_segment.map_or("no segment".to_owned(), |l| format!("segment {l}"));
        let why = format!(
            "the agent's newest segment is {has}, but this collector already holds segments up to {held}: its log was rolled back or truncated"
        );
        error!(agent = %name, host = %s.host, "ROLLBACK agent {name} host {}: {why}", s.host);
        self.status
            .lock()
            .expect("status")
            .finding(FindingKind::Rollback.name(), held, &why);
    }

    /// A segment below the cursor was served again: it must be the stored one, byte for byte.
    async fn compare_reserved(
        &self,
        s: &mut Session,
        number: u64,
        data: &Bytes,
    ) -> Result<(), PullError> {
        match self
            .shared
            .store
            .get(&s.host, Object::Segment(number))
            .await?
        {
            Some(stored) if stored == *data => {
                debug!(agent = %self.cfg.name, "segment {number} served again, identical to the stored copy");
                Ok(())
            }
            Some(_) => {
                let rej = Rejected {
                    findings: vec![finding(
                        FindingKind::Fork,
                        number,
                        format!("the agent served segment {number} again with different bytes than the copy this collector stored"),
                    )],
                };
                Err(self.quarantine(s, number, data, rej).await)
            }
            None => {
                debug!(agent = %self.cfg.name, "segment {number} served again inside a recorded gap; not stored");
                Ok(())
            }
        }
    }

    /// Fetches the agent's newest checkpoint with a proof from the last one cosigned, checks
    /// it as a C2SP tlog-witness and cosigns it; refusals are findings. Runs when the cursor
    /// moved since the last attempt, else every [`WITNESS_RECHECK`].
    async fn witness_step(&self, s: &mut Session, client: &mut Client) -> Result<(), PullError> {
        if let Some((cursor, at)) = s.witness_attempt {
            if cursor == s.state.cursor && at.elapsed() < WITNESS_RECHECK {
                return Ok(());
            }
        }
        if s.state.cursor == 0 {
            return Ok(());
        }
        let old = s.state.witnessed.map_or(0, |w| w.size);
        let body = match client
            .get_checkpoint(GetCheckpointRequest { old_size: old })
            .await
        {
            Ok(r) => r.into_inner().add_checkpoint,
            Err(st) if st.code() == tonic::Code::OutOfRange => {
                return self
                    .refuse(
                        s,
                        client,
                        Refusal::Behind { size: 0, held: old },
                        st.message(),
                    )
                    .await;
            }
            Err(st)
                if matches!(
                    st.code(),
                    tonic::Code::NotFound | tonic::Code::Unimplemented
                ) =>
            {
                debug!(agent = %self.cfg.name, "no checkpoint from the agent: {}", st.message());
                s.witness_attempt = Some((s.state.cursor, Instant::now()));
                return Ok(());
            }
            Err(st) => return Err(st.into()),
        };
        let req = match cosigner::parse(&body, &s.host) {
            Ok(r) => r,
            Err(r) => return self.refuse(s, client, r, "").await,
        };
        let signer = self.signer_of(s, req.checkpoint.size).await?;
        let judge = Judge {
            last: s.state.witnessed,
            stored: s.state.cursor,
            digests: s.digests.as_deref(),
            signer,
        };
        match cosigner::judge(&req, &judge) {
            Err(r) => return self.refuse(s, client, r, "").await,
            // Sealed after what was pulled so far: cosigned once those segments are stored.
            Ok(Verdict::Later) => return Ok(()),
            Ok(Verdict::Cosign) => {}
        }
        s.witness_attempt = Some((s.state.cursor, Instant::now()));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let note = cosigner::cosigned(
            &req.note,
            &self.shared.collector_name,
            &self.shared.witness,
            now,
        );
        let store = &self.shared.store;
        let host = s.host;
        if let Some(d) = &s.digests {
            let bytes: Vec<u8> = d.iter().flat_map(|x| x.0).collect();
            store.put(&host, Object::Leaves, Bytes::from(bytes)).await?;
        }
        let text = note.to_text();
        store
            .put(
                &host,
                Object::Cosigned(self.shared.vkey.key_id()),
                Bytes::from(text.clone()),
            )
            .await?;
        let cp = req.checkpoint;
        let mut state = s.state.clone();
        state.witnessed = Some(Witnessed {
            size: cp.size,
            root: cp.root,
        });
        store
            .put(&host, Object::State, Bytes::from(state.to_json()))
            .await?;
        s.state = state;
        {
            let mut st = self.status.lock().expect("status");
            st.witnessed_size = Some(cp.size);
            st.witnessed_at_ms = Some(now_ms());
            st.witness_behind = s.state.cursor.saturating_sub(cp.size);
        }
        debug!(agent = %self.cfg.name, "cosigned checkpoint of {} segments", cp.size);
        self.hand_back(client, text, String::new()).await;
        Ok(())
    }

    /// The key that signed stored segment `size - 1`.
    async fn signer_of(&self, s: &Session, size: u64) -> Result<Option<PublicKey>, PullError> {
        let Some(n) = size.checked_sub(1).filter(|n| *n < s.state.cursor) else {
            return Ok(None);
        };
        let bytes = match &s.prev {
            Some((p, b)) if *p == n => Some(b.clone()),
            _ => self.shared.store.get(&s.host, Object::Segment(n)).await?,
        };
        Ok(bytes
            .and_then(|b| SegmentHeader::parse(&b).ok())
            .map(|h| h.public_key))
    }

    /// Reports a refused checkpoint and hands the agent the newest one this collector did
    /// cosign, so that the agent's data dir holds the witness's view of its history.
    async fn refuse(
        &self,
        s: &mut Session,
        client: &mut Client,
        r: Refusal,
        detail: &str,
    ) -> Result<(), PullError> {
        s.witness_attempt = Some((s.state.cursor, Instant::now()));
        let name = &self.cfg.name;
        let kind = r.finding().name();
        let why = if detail.is_empty() {
            format!(
                "checkpoint refused (tlog-witness status {}): {r}",
                r.http_status()
            )
        } else {
            format!(
                "checkpoint refused (tlog-witness status {}): {r}: {detail}",
                r.http_status()
            )
        };
        error!(agent = %name, host = %s.host, "{kind} agent {name} host {}: {why}", s.host);
        {
            let mut st = self.status.lock().expect("status");
            st.checkpoints_refused += 1;
            st.finding(kind, s.state.cursor.saturating_sub(1), &why);
        }
        let mine = self
            .shared
            .store
            .get(&s.host, Object::Cosigned(self.shared.vkey.key_id()))
            .await?;
        if let Some(text) = mine.and_then(|b| String::from_utf8(b.to_vec()).ok()) {
            if Note::parse(text.as_bytes()).is_ok() {
                self.hand_back(client, text, why).await;
            }
        }
        Ok(())
    }

    async fn hand_back(&self, client: &mut Client, note: String, refused: String) {
        let req = SubmitCosignatureRequest {
            witness: self.shared.collector_name.clone(),
            cosigned_checkpoint: note,
            refused,
        };
        if let Err(e) = client.submit_cosignature(req).await {
            warn!(agent = %self.cfg.name, "agent {}: SubmitCosignature failed: {e}", self.cfg.name);
        }
    }
}

/// The oldest segment an agent still has, from its `OUT_OF_RANGE` answer to a cursor below it
/// (docs/API.md: metadata `lineage-first-segment`).
fn first_available(status: &tonic::Status) -> Option<u64> {
    if status.code() != tonic::Code::OutOfRange {
        return None;
    }
    status
        .metadata()
        .get("lineage-first-segment")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

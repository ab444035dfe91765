//! The `lineage.v1.Agent` service. Domain errors map to gRPC codes here, in one place
//! (docs/API.md lists them). Nothing here runs on the capture or writer threads: segment files
//! are read on this runtime, live events come from per-client queues, lineage questions go
//! through a bounded channel the capture thread answers between drains.

use std::{pin::Pin, sync::Arc, time::Duration};

use lineage_evidence::checkpoint::Note;
use lineage_evidence::digest::HostId;
use lineage_evidence::tlog::{self, TlogError};
use lineage_evidence::{
    segment::{SegmentHeader, HEADER_LEN_V2},
    store::{SegmentStore, StoreError},
};
use lineage_proto::v1::{
    agent_server::Agent, tail_message, AckSegmentsRequest, AckSegmentsResponse, AgentInfo,
    GetCheckpointRequest, GetCheckpointResponse, GetInfoRequest, GetLineageRequest,
    LineageResponse, ListSegmentsRequest, ListSegmentsResponse, ProbeStatus, PublicKey,
    PullSegmentsRequest, Segment, SegmentSummary, SubmitCosignatureRequest,
    SubmitCosignatureResponse, TailMessage, TailRequest,
};
use tokio::{
    io::AsyncReadExt as _,
    sync::{mpsc, oneshot, watch},
};
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{metadata::MetadataValue, Request, Response, Status};

use super::{
    access::{Access, Right},
    tail::{self, Item, SubscribeError},
    LineageQuery, Shared,
};

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// How long a follower waits for a new seal before re-listing anyway.
const FOLLOW_POLL: Duration = Duration::from_secs(1);
/// Messages buffered between a stream's task and the transport. Small: the real buffers are
/// the per-client Tail queues (bounded in events and bytes).
const STREAM_BUFFER: usize = 4;
/// Largest PullSegments chunk: a default gRPC client accepts 4 MiB messages.
pub const CHUNK: usize = 1 << 20;
/// Default and largest ListSegments page.
const LIST_DEFAULT: u32 = 1000;
const LIST_MAX: u32 = 10_000;
/// Metadata naming the oldest stored segment on an OUT_OF_RANGE cursor.
pub const FIRST_SEGMENT_KEY: &str = "lineage-first-segment";

pub struct AgentService {
    shared: Arc<Shared>,
    access: Access,
}

impl AgentService {
    pub fn new(shared: Arc<Shared>, access: Access) -> Self {
        AgentService { shared, access }
    }

    fn store(&self) -> Result<SegmentStore, Status> {
        SegmentStore::open(&self.shared.data_dir).map_err(store_status)
    }
}

fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Status::not_found(source.to_string())
        }
        other => Status::internal(other.to_string()),
    }
}

fn tlog_status(e: TlogError) -> Status {
    match e {
        TlogError::Empty => Status::not_found(e.to_string()),
        TlogError::OldTooLarge { .. } => Status::out_of_range(e.to_string()),
        TlogError::Note { .. } | TlogError::Foreign(_) => Status::invalid_argument(e.to_string()),
        e => Status::internal(e.to_string()),
    }
}

fn io_status(n: u64, e: std::io::Error) -> Status {
    if e.kind() == std::io::ErrorKind::NotFound {
        Status::not_found(format!(
            "segment {n} was deleted (retention) while being read"
        ))
    } else {
        Status::internal(format!("reading segment {n}: {e}"))
    }
}

/// Resolves once the agent is stopping.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, so callers' futures stay `Send`.
    let _ = shutdown.wait_for(|s| *s).await;
}

fn stopping() -> Status {
    Status::unavailable("the agent is stopping")
}

fn valid_collector_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.starts_with('.')
}

/// A segment's summary from its header alone (never the whole file).
async fn summary(n: u64, path: &std::path::Path) -> Result<SegmentSummary, Status> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| io_status(n, e))?;
    let size = file.metadata().await.map_err(|e| io_status(n, e))?.len();
    // Version 1 and 2 headers differ in length (248, 312 bytes); the header says which.
    let mut head = vec![0u8; HEADER_LEN_V2.min(usize::try_from(size).unwrap_or(usize::MAX))];
    file.read_exact(&mut head)
        .await
        .map_err(|_| Status::data_loss(format!("segment {n}: shorter than its header")))?;
    let header =
        SegmentHeader::parse(&head).map_err(|e| Status::data_loss(format!("segment {n}: {e}")))?;
    Ok(SegmentSummary {
        number: n,
        first_index: header.first_index,
        entry_count: header.entry_count,
        size,
        header_digest: header.digest().0.to_vec(),
        seal_time_ns: header.seal_time_ns,
    })
}

/// Streams one segment file in chunks of at most [`CHUNK`] bytes. False: the client left or
/// the agent is stopping (the status was sent).
async fn send_segment(
    tx: &mpsc::Sender<Result<Segment, Status>>,
    n: u64,
    path: &std::path::Path,
) -> Result<bool, Status> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| io_status(n, e))?;
    let size = file.metadata().await.map_err(|e| io_status(n, e))?.len();
    let mut offset = 0u64;
    loop {
        let want = CHUNK.min((size - offset) as usize);
        let mut data = vec![0u8; want];
        file.read_exact(&mut data)
            .await
            .map_err(|e| io_status(n, e))?;
        let chunk = Segment {
            number: n,
            data,
            offset,
            size,
        };
        offset += want as u64;
        if tx.send(Ok(chunk)).await.is_err() {
            return Ok(false);
        }
        if offset >= size {
            return Ok(true);
        }
    }
}

/// The caller's identity for acknowledgements: its certificate's common name over TLS, its
/// uid on the Unix socket.
fn ack_identity<T>(
    access: &Access,
    request: &Request<T>,
    collector: &str,
) -> Result<String, Status> {
    match access {
        Access::Certificates { .. } => {
            let cn = access.common_name(request)?;
            if cn != collector {
                return Err(Status::permission_denied(format!(
                    "a client may only acknowledge as itself: the certificate names {:?}",
                    tail::shown(&cn, 64)
                )));
            }
            Ok(format!("cn:{collector}"))
        }
        Access::Local => {
            let uid = request
                .extensions()
                .get::<tonic::transport::server::UdsConnectInfo>()
                .and_then(|i| i.peer_cred)
                .map(|c| c.uid())
                .ok_or_else(|| Status::permission_denied("the caller's uid is unknown"))?;
            Ok(format!("uid:{uid}:{collector}"))
        }
    }
}

#[tonic::async_trait]
impl Agent for AgentService {
    async fn get_info(
        &self,
        request: Request<GetInfoRequest>,
    ) -> Result<Response<AgentInfo>, Status> {
        self.access.check(&request, Right::Pull)?;
        let info = &self.shared.info;
        let head = *self.shared.head.borrow();
        let first_segment = self
            .store()?
            .list()
            .map_err(store_status)?
            .segments
            .first()
            .map(|(n, _)| *n);
        Ok(Response::new(AgentInfo {
            host_id: info.host_id.to_vec(),
            boot_id: info.boot_id.clone(),
            hostname: info.hostname.clone(),
            signing_key: Some(PublicKey {
                key: info.signing_key.as_bytes().to_vec(),
                key_id: info.signing_key.key_id().0.to_vec(),
            }),
            next_index: head.next_index,
            head_link: head.head_link.0.to_vec(),
            last_segment: head.last_segment.map(|(n, _)| n),
            last_segment_digest: head
                .last_segment
                .map(|(_, d)| d.0.to_vec())
                .unwrap_or_default(),
            agent_version: info.agent_version.clone(),
            kernel_version: info.kernel_version.clone(),
            probes: info
                .probes
                .iter()
                .map(|p| ProbeStatus {
                    program: p.program.into(),
                    hook: p.hook.clone(),
                    required: p.required,
                    attached: p.attached,
                    error: p.error.clone().unwrap_or_default(),
                })
                .collect(),
            first_segment,
        }))
    }

    async fn list_segments(
        &self,
        request: Request<ListSegmentsRequest>,
    ) -> Result<Response<ListSegmentsResponse>, Status> {
        self.access.check(&request, Right::Pull)?;
        let req = request.into_inner();
        let limit = match req.limit {
            0 => LIST_DEFAULT,
            n if n > LIST_MAX => {
                return Err(Status::invalid_argument(format!(
                    "limit {n} is over {LIST_MAX}"
                )))
            }
            n => n,
        } as usize;
        let to = req.to.unwrap_or(u64::MAX);
        if req.from > to {
            return Err(Status::invalid_argument(format!(
                "from {} is after to {to}",
                req.from
            )));
        }
        let listing = self.store()?.list().map_err(store_status)?;
        let mut in_range = listing
            .segments
            .into_iter()
            .filter(|(n, _)| *n >= req.from && *n <= to);
        let mut segments = Vec::new();
        for (n, path) in in_range.by_ref().take(limit) {
            match summary(n, &path).await {
                Ok(s) => segments.push(s),
                // Deleted by retention since the listing: not there any more.
                Err(s) if s.code() == tonic::Code::NotFound => {}
                Err(s) => return Err(s),
            }
        }
        Ok(Response::new(ListSegmentsResponse {
            segments,
            more: in_range.next().is_some(),
        }))
    }

    type PullSegmentsStream = Stream_<Segment>;

    async fn pull_segments(
        &self,
        request: Request<PullSegmentsRequest>,
    ) -> Result<Response<Self::PullSegmentsStream>, Status> {
        self.access.check(&request, Right::Pull)?;
        let req = request.into_inner();
        let store = self.store()?;
        // A cursor below what is stored would silently skip the deleted range: say so instead.
        if let Some((first, _)) = store.list().map_err(store_status)?.segments.first() {
            if req.from_segment < *first {
                let mut status = Status::out_of_range(format!(
                    "segment {} is no longer stored (retention); the first available is {first}",
                    req.from_segment
                ));
                status
                    .metadata_mut()
                    .insert(FIRST_SEGMENT_KEY, MetadataValue::from(*first));
                return Err(status);
            }
        }
        let mut head = self.shared.head.clone();
        let mut shutdown = self.shared.shutdown.clone();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            let mut cursor = req.from_segment;
            let result: Result<(), Status> = async {
                loop {
                    let listing = store.list().map_err(store_status)?;
                    let from = cursor;
                    for (n, path) in listing.segments.into_iter().filter(|(n, _)| *n >= from) {
                        tokio::select! {
                            sent = send_segment(&tx, n, &path) => if !sent? { return Ok(()) },
                            _ = stopped(&mut shutdown) => return Err(stopping()),
                        }
                        cursor = n + 1;
                    }
                    if !req.follow {
                        return Ok(());
                    }
                    tokio::select! {
                        changed = head.changed() => if changed.is_err() { return Err(stopping()) },
                        _ = tokio::time::sleep(FOLLOW_POLL) => {}
                        _ = tx.closed() => return Ok(()),
                        _ = stopped(&mut shutdown) => return Err(stopping()),
                    }
                }
            }
            .await;
            if let Err(status) = result {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn ack_segments(
        &self,
        request: Request<AckSegmentsRequest>,
    ) -> Result<Response<AckSegmentsResponse>, Status> {
        self.access.check(&request, Right::Pull)?;
        let collector = request.get_ref().collector.clone();
        if !valid_collector_name(&collector) {
            return Err(Status::invalid_argument(
                "collector name must be 1-64 of [A-Za-z0-9._-], not starting with '.'",
            ));
        }
        let identity = ack_identity(&self.access, &request, &collector)?;
        let up_to = request.get_ref().up_to;
        match self.shared.head.borrow().last_segment {
            Some((last, _)) if up_to <= last => {}
            Some((last, _)) => {
                return Err(Status::out_of_range(format!(
                    "up_to {up_to} is past the newest sealed segment {last}"
                )))
            }
            None => {
                return Err(Status::out_of_range(
                    "no segment is sealed yet: nothing to acknowledge",
                ))
            }
        }
        let dir = self.shared.data_dir.join("acks");
        let file = identity.replace(':', "+");
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            let tmp = dir.join(format!(".{file}.tmp"));
            std::fs::write(&tmp, format!("{up_to}\n"))?;
            std::fs::rename(&tmp, dir.join(&file))
        };
        write().map_err(|e| Status::internal(format!("recording the acknowledgement: {e}")))?;
        Ok(Response::new(AckSegmentsResponse {
            recorded_as: identity,
        }))
    }

    async fn get_checkpoint(
        &self,
        request: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        self.access.check(&request, Right::Pull)?;
        let old = request.into_inner().old_size;
        let dir = tlog::dir_of(&self.shared.data_dir);
        // Hashing the tree is CPU work on a blocking thread, off the async runtime.
        let body = tokio::task::spawn_blocking(move || {
            tlog::read_published(&dir).and_then(|p| p.add_checkpoint_body(old))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(tlog_status)?;
        Ok(Response::new(GetCheckpointResponse {
            add_checkpoint: body,
        }))
    }

    async fn submit_cosignature(
        &self,
        request: Request<SubmitCosignatureRequest>,
    ) -> Result<Response<SubmitCosignatureResponse>, Status> {
        self.access.check(&request, Right::Pull)?;
        let req = request.into_inner();
        let note = Note::parse(req.cosigned_checkpoint.as_bytes())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let host = HostId(self.shared.info.host_id);
        tlog::store_cosigned(&tlog::dir_of(&self.shared.data_dir), &host, &note)
            .map_err(tlog_status)?;
        if !req.refused.is_empty() {
            tracing::error!(witness = %req.witness, "witness {} refused this agent's checkpoint: {}", req.witness, req.refused);
        }
        Ok(Response::new(SubmitCosignatureResponse {}))
    }

    type TailStream = Stream_<TailMessage>;

    async fn tail(
        &self,
        request: Request<TailRequest>,
    ) -> Result<Response<Self::TailStream>, Status> {
        self.access.check(&request, Right::Tail)?;
        let filter = request.into_inner().filter.unwrap_or_default();
        let mut sub = self.shared.tail.subscribe(filter).map_err(|e| match e {
            SubscribeError::Filter(e) => Status::invalid_argument(e.to_string()),
            SubscribeError::TooMany(_) => Status::resource_exhausted(e.to_string()),
            SubscribeError::Stopped => stopping(),
        })?;
        let mut shutdown = self.shared.shutdown.clone();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    item = sub.next() => item,
                    _ = tx.closed() => return,
                    _ = stopped(&mut shutdown) => {
                        let _ = tx.send(Err(stopping())).await;
                        return;
                    }
                };
                let message = match item {
                    Item::Event(ev) => tail_message::Message::EventJson(ev.json.clone()),
                    Item::Missed(n) => tail_message::Message::Missed(n),
                };
                let sent = tx.send(Ok(TailMessage {
                    message: Some(message),
                }));
                tokio::select! {
                    r = sent => if r.is_err() { return },
                    _ = stopped(&mut shutdown) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_lineage(
        &self,
        request: Request<GetLineageRequest>,
    ) -> Result<Response<LineageResponse>, Status> {
        self.access.check(&request, Right::Tail)?;
        let exec_id = request.into_inner().exec_id;
        if exec_id.is_empty() {
            return Err(Status::invalid_argument("exec_id is required"));
        }
        tail::check_exec_id(&exec_id).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (reply, answer) = oneshot::channel();
        self.shared
            .lineage
            .send(LineageQuery {
                exec_id: exec_id.clone(),
                reply,
            })
            .await
            .map_err(|_| stopping())?;
        match tokio::time::timeout(Duration::from_secs(5), answer).await {
            Ok(Ok(Some(lineage))) => Ok(Response::new(lineage)),
            Ok(Ok(None)) => Err(Status::not_found(format!(
                "no image {exec_id} in the process table"
            ))),
            Ok(Err(_)) => Err(stopping()),
            Err(_) => Err(Status::deadline_exceeded(
                "the capture thread did not answer in time",
            )),
        }
    }
}

//! The `lineage.v1.Agent` service. Domain errors map to gRPC codes here, in one place.

use std::{pin::Pin, sync::Arc, time::Duration};

use lineage_evidence::checkpoint::Note;
use lineage_evidence::digest::HostId;
use lineage_evidence::tlog::{self, TlogError};
use lineage_evidence::{
    segment::SegmentHeader,
    store::{SegmentStore, StoreError},
};
use lineage_proto::v1::{
    agent_server::Agent, tail_message, AckSegmentsRequest, AckSegmentsResponse, AgentInfo,
    GetCheckpointRequest, GetCheckpointResponse, GetInfoRequest, GetLineageRequest,
    LineageResponse, ListSegmentsRequest, ListSegmentsResponse, ProbeStatus, PublicKey,
    PullSegmentsRequest, Segment, SegmentSummary, SubmitCosignatureRequest,
    SubmitCosignatureResponse, TailMessage, TailRequest,
};
use tokio::sync::{broadcast::error::RecvError, mpsc, oneshot};
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Response, Status};

use super::{
    access::{Access, Right},
    tail, LineageQuery, Shared,
};

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// How long a follower waits for a new seal before re-listing anyway.
const FOLLOW_POLL: Duration = Duration::from_secs(1);
/// Messages buffered per streaming client.
const CLIENT_BUFFER: usize = 256;

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

fn valid_collector_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && !name.starts_with('.')
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
        let store = self.store()?;
        let mut segments = Vec::new();
        for (n, path) in store.list().map_err(store_status)?.segments {
            if n < req.from || (req.to != 0 && n > req.to) {
                continue;
            }
            let bytes = store.read_path(&path).map_err(store_status)?;
            let header = SegmentHeader::parse(&bytes)
                .map_err(|e| Status::data_loss(format!("segment {n}: {e}")))?;
            segments.push(SegmentSummary {
                number: n,
                first_index: header.first_index,
                entry_count: header.entry_count,
                size: bytes.len() as u64,
                header_digest: header.digest().0.to_vec(),
                seal_time_ns: header.seal_time_ns,
            });
        }
        Ok(Response::new(ListSegmentsResponse { segments }))
    }

    type PullSegmentsStream = Stream_<Segment>;

    async fn pull_segments(
        &self,
        request: Request<PullSegmentsRequest>,
    ) -> Result<Response<Self::PullSegmentsStream>, Status> {
        self.access.check(&request, Right::Pull)?;
        let req = request.into_inner();
        let store = self.store()?;
        let mut head = self.shared.head.clone();
        let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
        tokio::spawn(async move {
            let mut cursor = req.from_segment;
            loop {
                let listing = match store.list() {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(Err(store_status(e))).await;
                        return;
                    }
                };
                let from = cursor;
                for (n, path) in listing.segments.into_iter().filter(|(n, _)| *n >= from) {
                    // Exact stored bytes: the client verifies them, we never re-encode.
                    let item = store
                        .read_path(&path)
                        .map(|data| Segment { number: n, data })
                        .map_err(store_status);
                    if tx.send(item).await.is_err() {
                        return; // the client went away
                    }
                    cursor = n + 1;
                }
                if !req.follow {
                    return;
                }
                tokio::select! {
                    changed = head.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(FOLLOW_POLL) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn ack_segments(
        &self,
        request: Request<AckSegmentsRequest>,
    ) -> Result<Response<AckSegmentsResponse>, Status> {
        self.access.check(&request, Right::Pull)?;
        let req = request.into_inner();
        if !valid_collector_name(&req.collector) {
            return Err(Status::invalid_argument(
                "collector name must be 1-64 of [A-Za-z0-9._-], not starting with '.'",
            ));
        }
        let dir = self.shared.data_dir.join("acks");
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            let tmp = dir.join(format!(".{}.tmp", req.collector));
            std::fs::write(&tmp, format!("{}\n", req.up_to))?;
            std::fs::rename(&tmp, dir.join(&req.collector))
        };
        write().map_err(|e| Status::internal(format!("recording the acknowledgement: {e}")))?;
        Ok(Response::new(AckSegmentsResponse {}))
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
        let mut events = self.shared.events.subscribe();
        let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
        tokio::spawn(async move {
            loop {
                let message = match events.recv().await {
                    Ok(ev) if tail::matches(&filter, &ev) => {
                        tail_message::Message::EventJson(ev.json.clone())
                    }
                    Ok(_) => continue,
                    // This client fell behind the broadcast buffer: tell it how much it missed.
                    Err(RecvError::Lagged(n)) => tail_message::Message::Missed(n),
                    Err(RecvError::Closed) => return,
                };
                if tx
                    .send(Ok(TailMessage {
                        message: Some(message),
                    }))
                    .await
                    .is_err()
                {
                    return;
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
        let (reply, answer) = oneshot::channel();
        self.shared
            .lineage
            .send(LineageQuery {
                exec_id: exec_id.clone(),
                reply,
            })
            .await
            .map_err(|_| Status::unavailable("the capture loop is shutting down"))?;
        match tokio::time::timeout(Duration::from_secs(5), answer).await {
            Ok(Ok(Some(lineage))) => Ok(Response::new(lineage)),
            Ok(Ok(None)) => Err(Status::not_found(format!(
                "no image {exec_id} in the process table"
            ))),
            Ok(Err(_)) => Err(Status::unavailable("the capture loop is shutting down")),
            Err(_) => Err(Status::deadline_exceeded(
                "the capture loop did not answer in time",
            )),
        }
    }
}

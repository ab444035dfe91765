//! `lineagectl tree`: an image's ancestry and descendants, from a live agent or from a log.
//!
//! Both sources become the same [`model::Lineage`] and print the same way, so a tree from a
//! collector's copy of the chain reads like one from the agent that recorded it. The chain
//! keeps every event, so `--store` also knows images the agent has long forgotten; the agent
//! knows which images still run.

mod model;
mod render;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use lineage_evidence::entry::Entry;
use lineage_proto::{payload, v1::GetLineageRequest};

use crate::cli::TreeArgs;
use crate::connect::{self, ConnectError, RpcError};
use crate::event::parse_exec_id;
use crate::exit;
use crate::logread::{self, LogReadError};
use crate::style::Style;
use model::{Images, Lineage};

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{0:?} is not an exec id (<boot>-<tgid>-<start ns>, as in the events' exec_id)")]
    ExecId(String),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("the agent answered without the image")]
    EmptyAnswer,
    #[error(transparent)]
    Log(#[from] LogReadError),
    #[error("no event in {dir} names {exec_id} ({images} images seen)")]
    NotInLog {
        dir: PathBuf,
        exec_id: String,
        images: usize,
    },
    #[error("writing to stdout: {0}")]
    Stdout(#[from] io::Error),
    #[error("starting the async runtime: {0}")]
    Runtime(io::Error),
}

pub fn run(a: &TreeArgs) -> Result<i32, TreeError> {
    if parse_exec_id(&a.exec_id).is_none() {
        return Err(TreeError::ExecId(a.exec_id.clone()));
    }
    let lineage = match &a.store {
        Some(dir) => from_log(dir, &a.exec_id, a.events)?,
        None => connect::runtime()
            .map_err(TreeError::Runtime)?
            .block_on(from_agent(a))?,
    };
    let mut out = io::stdout().lock();
    let written = if a.json {
        writeln!(out, "{}", render::json(&lineage, a.events))
    } else {
        render::text(
            &lineage,
            a.events,
            &render::Times::local(),
            Style::for_stdout(),
        )
        .iter()
        .try_for_each(|l| writeln!(out, "{l}"))
    };
    match written.and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(exit::OK),
    }
}

async fn from_agent(a: &TreeArgs) -> Result<Lineage, TreeError> {
    let (mut client, target) = connect::connect(&a.conn).await?;
    let answer = client
        .get_lineage(GetLineageRequest {
            exec_id: a.exec_id.clone(),
        })
        .await
        .map_err(|s| RpcError::new("GetLineage", &target, s))?
        .into_inner();
    Lineage::from_response(answer).ok_or(TreeError::EmptyAnswer)
}

/// Reads every EVENT entry of the log (schema 2, or schema 1 from older agents); other
/// entries and payloads that do not decode are skipped.
fn from_log(dir: &Path, exec_id: &str, events: usize) -> Result<Lineage, TreeError> {
    let mut images = Images::new(events);
    logread::for_each_entry(dir, 0, u64::MAX, |_, _, bytes| -> Result<(), TreeError> {
        if let Ok(Entry::Event(ev)) = Entry::parse(bytes) {
            if let Ok(event) = payload::decode(ev.schema, ev.payload) {
                images.feed(event);
            }
        }
        Ok(())
    })?;
    images.lineage(exec_id).ok_or_else(|| TreeError::NotInLog {
        dir: dir.into(),
        exec_id: exec_id.into(),
        images: images.len(),
    })
}

//! EVENT entry payloads (docs/FORMAT.md §4.1, docs/EVENTS.md): the schema number says how the
//! payload bytes encode an [`Event`].
//!
//! - Schema 2 (what the agent writes): the protobuf encoding of `lineage.v1.Event`
//!   (event.proto), without `ancestors`.
//! - Schema 1 (agents before typed events): one JSON object with a `kind` tag and the kind's
//!   fields flattened in. Still read, so old logs keep their meaning; [`decode`] maps it onto
//!   the same message (renamed fields listed in docs/EVENTS.md).

use prost::Message as _;
use serde_json::{Map, Value};

use crate::v1::Event;

/// Schema 1: a JSON object (legacy, read only).
pub const SCHEMA_JSON: u16 = 1;
/// Schema 2: protobuf `lineage.v1.Event`.
pub const SCHEMA_PROTOBUF: u16 = 2;

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("schema 2 payload is not a protobuf Event: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("schema 1 payload is not an event object: {0}")]
    Json(#[from] serde_json::Error),
    #[error("schema 1 payload has no known `kind` ({0:?})")]
    Kind(String),
    #[error("EVENT schema {0} is not one this version reads")]
    UnknownSchema(u16),
}

/// Appends the schema 2 payload of `event` to `out`.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    debug_assert!(event.ancestors.is_empty(), "ancestors are never stored");
    event.encode_raw(out);
}

/// Decodes an EVENT payload of a schema this version knows.
pub fn decode(schema: u16, payload: &[u8]) -> Result<Event, PayloadError> {
    match schema {
        SCHEMA_PROTOBUF => Ok(Event::decode(payload)?),
        SCHEMA_JSON => from_schema1(serde_json::from_slice(payload)?),
        other => Err(PayloadError::UnknownSchema(other)),
    }
}

/// Fields of a schema 1 object that are common to every kind (the rest belong to the kind).
/// `syscall`, `compat` and `io_uring` were fields of the kinds that had them.
const COMMON: [&str; 15] = [
    "time_ns",
    "pid",
    "tgid",
    "exec_id",
    "parent_exec_id",
    "ancestors",
    "container",
    "cpu",
    "seq",
    "uid",
    "gid",
    "comm",
    "syscall",
    "compat",
    "io_uring",
];

/// Schema 1 kinds that had an `op` naming what is its own kind now.
const OP_KINDS: [&str; 3] = ["file", "socket", "syscall"];

/// Maps a schema 1 object onto the event message: common fields stay at the top, the kind's
/// fields move under the kind's name, and the few renamed fields get their new names.
fn from_schema1(v: Value) -> Result<Event, PayloadError> {
    let Value::Object(mut top) = v else {
        return Err(PayloadError::Kind(String::new()));
    };
    let old_kind = match top.remove("kind") {
        Some(Value::String(k)) => k,
        other => return Err(PayloadError::Kind(format!("{other:?}"))),
    };
    let kind = if OP_KINDS.contains(&old_kind.as_str()) {
        // Schema 1 had one kind per family with an `op`; each op is its own kind now.
        match top.remove("op") {
            Some(Value::String(op)) => op,
            other => return Err(PayloadError::Kind(format!("{old_kind} {other:?}"))),
        }
    } else {
        old_kind.clone()
    };
    if !crate::v1::KINDS.contains(&kind.as_str()) {
        return Err(PayloadError::Kind(kind));
    }
    let mut common = Map::new();
    let mut body = Map::new();
    for (k, v) in top {
        if COMMON.contains(&k.as_str()) {
            common.insert(k, v);
        } else {
            body.insert(k, v);
        }
    }
    if old_kind == "syscall" {
        let raw: Schema1Syscall = serde_json::from_value(Value::Object(body))?;
        let mut event: Event = serde_json::from_value(Value::Object(common))?;
        event.kind = crate::syscall::kind(&kind, raw.into());
        return Ok(event);
    }
    match kind.as_str() {
        // symlink: `path` was the target text and `path2` the link created.
        "symlink" => {
            rename(&mut body, "path", "target");
            rename(&mut body, "path2", "path");
            rename(&mut body, "path2_resolved", "path_resolved");
        }
        // xattrs: `path2` was the attribute name.
        "setxattr" | "removexattr" => rename(&mut body, "path2", "name"),
        _ => {
            rename(&mut body, "path2", "new_path");
            rename(&mut body, "path2_resolved", "new_path_resolved");
        }
    }
    rename(&mut body, "loss_cpu", "cpu");
    pairs_to_objects(&mut body, "ranges", "start", "end");
    pairs_to_objects(&mut body, "failures", "kind", "count");
    common.insert(kind, Value::Object(body));
    Ok(serde_json::from_value(Value::Object(common))?)
}

/// The fields of a schema 1 `syscall` event besides the common ones.
#[derive(serde::Deserialize)]
struct Schema1Syscall {
    #[serde(default)]
    nr: u32,
    #[serde(default)]
    args: Vec<u64>,
    #[serde(default)]
    result: i64,
    errno: Option<i32>,
    #[serde(default)]
    error: String,
    old_ids: Option<[u32; 8]>,
    new_ids: Option<[u32; 8]>,
    old_caps: Option<u64>,
    new_caps: Option<u64>,
    name: Option<String>,
    target: Option<String>,
}

impl From<Schema1Syscall> for crate::syscall::Raw {
    fn from(s: Schema1Syscall) -> Self {
        crate::syscall::Raw {
            call: crate::v1::SyscallCall {
                nr: s.nr,
                args: s.args,
                result: s.result,
                errno: s.errno,
                error: s.error,
            },
            old_ids: s.old_ids.unwrap_or_default(),
            new_ids: s.new_ids.unwrap_or_default(),
            old_caps: s.old_caps.unwrap_or_default(),
            new_caps: s.new_caps.unwrap_or_default(),
            str1: s.name.unwrap_or_default(),
            str2: s.target.unwrap_or_default(),
        }
    }
}

fn rename(m: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = m.remove(from) {
        m.insert(to.to_owned(), v);
    }
}

/// `[[a, b], ...]` → `[{ka: a, kb: b}, ...]`.
fn pairs_to_objects(m: &mut Map<String, Value>, field: &str, ka: &str, kb: &str) {
    if let Some(Value::Array(items)) = m.get_mut(field) {
        for item in items.iter_mut() {
            if let Value::Array(pair) = item {
                if let [a, b] = pair.as_slice() {
                    let mut o = Map::new();
                    o.insert(ka.to_owned(), a.clone());
                    o.insert(kb.to_owned(), b.clone());
                    *item = Value::Object(o);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

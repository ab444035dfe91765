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
const COMMON: [&str; 11] = [
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
];

/// Maps a schema 1 object onto the event message: common fields stay at the top, the kind's
/// fields move under the kind's name, and the few renamed fields get their new names.
fn from_schema1(v: Value) -> Result<Event, PayloadError> {
    let Value::Object(mut top) = v else {
        return Err(PayloadError::Kind(String::new()));
    };
    let mut kind = match top.remove("kind") {
        Some(Value::String(k)) => k,
        other => return Err(PayloadError::Kind(format!("{other:?}"))),
    };
    if kind == "file" {
        // Schema 1 had one `file` kind with an `op`; each op is its own kind now.
        kind = match top.remove("op") {
            Some(Value::String(op)) => op,
            other => return Err(PayloadError::Kind(format!("file {other:?}"))),
        };
    }
    if !crate::v1::KINDS.contains(&kind.as_str()) {
        return Err(PayloadError::Kind(kind));
    }
    let mut common = Map::new();
    let mut body = Map::new();
    for (k, v) in top {
        if COMMON.contains(&k.as_str()) || k == "comm" {
            common.insert(k, v);
        } else {
            body.insert(k, v);
        }
    }
    rename(&mut body, "path2", "new_path");
    rename(&mut body, "path2_resolved", "new_path_resolved");
    rename(&mut body, "loss_cpu", "cpu");
    pairs_to_objects(&mut body, "ranges", "start", "end");
    pairs_to_objects(&mut body, "failures", "kind", "count");
    common.insert(kind, Value::Object(body));
    Ok(serde_json::from_value(Value::Object(common))?)
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

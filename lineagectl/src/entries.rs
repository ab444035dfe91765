//! `lineagectl entries`: print the entries of a log directory in index order.
//!
//! This is a reader, not a verifier: it decodes whatever segment files parse (through the
//! shared [`crate::logread`]), checks no signature, link or root, and skips (with a warning on
//! stderr) any file it cannot use. It must never panic on hostile files.

use std::io::{self, BufWriter, Write};

use anyhow::Result;
use lineage_evidence::entry::{Entry, EntryKind};
use lineage_proto::payload;
use serde::Serialize;

use crate::cli::EntriesArgs;
use crate::exit;
use crate::logread::{self, raw_kind};

/// Every kind this version knows, for `--kind`.
const KINDS: [EntryKind; 12] = [
    EntryKind::Event,
    EntryKind::Loss,
    EntryKind::AgentStart,
    EntryKind::AgentStop,
    EntryKind::Heartbeat,
    EntryKind::KeyRotation,
    EntryKind::Retention,
    EntryKind::Filter,
    EntryKind::Dropped,
    EntryKind::Enrolment,
    EntryKind::Tamper,
    EntryKind::Enforcement,
];

/// Parses a `--kind` value: a kind name (any case, `-` or `_`) or a kind number.
pub fn parse_kind(s: &str) -> Result<u16, String> {
    if let Ok(n) = s.parse::<u16>() {
        return Ok(n);
    }
    let want = s.trim().to_ascii_uppercase().replace('-', "_");
    KINDS
        .iter()
        .find(|k| k.name() == want)
        .map(|k| k.code())
        .ok_or_else(|| {
            let names: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
            format!(
                "unknown kind {s:?}; one of {} or a number",
                names.join(", ")
            )
        })
}

/// One output line: the position, the kind, then the kind's own fields.
#[derive(Serialize)]
struct Line<'a, T: Serialize> {
    index: u64,
    segment: u64,
    kind: &'a str,
    #[serde(flatten)]
    fields: T,
}

#[derive(Serialize)]
struct EventFields {
    schema: u16,
    /// Schema 2: the decoded event in the canonical protobuf JSON mapping. Schema 1: the
    /// payload's own JSON object, as stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<serde_json::Value>,
    /// Any other schema, or a payload that does not decode.
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_hex: Option<String>,
}

#[derive(Serialize)]
struct RotationFields {
    old_public: String,
    old_key_id: String,
    new_public: String,
    new_key_id: String,
    signature: String,
}

/// ENROLMENT: the identity key's certificate of a chain's first sealing key.
#[derive(Serialize)]
struct EnrolmentFields {
    identity_public: String,
    identity_key_id: String,
    sealing_public: String,
    sealing_key_id: String,
    signature: String,
}

#[derive(Serialize)]
struct UnknownFields {
    kind_code: u16,
    kind_version: u16,
    body_hex: String,
}

#[derive(Serialize)]
struct MalformedFields {
    malformed: String,
    entry_hex: String,
}

/// Where output goes; remembers whether the reader went away (`| head`).
struct Out {
    json: bool,
    w: BufWriter<io::StdoutLock<'static>>,
}

impl Out {
    fn line<T: Serialize>(
        &mut self,
        index: u64,
        segment: u64,
        kind: &str,
        fields: T,
    ) -> Result<()> {
        let text = if self.json {
            serde_json::to_string(&Line {
                index,
                segment,
                kind,
                fields,
            })?
        } else {
            // Through a string, so the fields keep their declaration order.
            let rest: Ordered = serde_json::from_str(&serde_json::to_string(&fields)?)?;
            format!(
                "{index:>10} {segment:>8}  {kind:<12} {}",
                human_fields(kind, &rest.0)
            )
        };
        writeln!(self.w, "{text}")?;
        Ok(())
    }
}

/// A JSON object's members in document order (serde_json's own map sorts them).
struct Ordered(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some(kv) = m.next_entry()? {
                    v.push(kv);
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// `schema=1 {…}` for events, `key=value …` for everything else (values compact JSON,
/// strings bare).
fn human_fields(kind: &str, fields: &[(String, serde_json::Value)]) -> String {
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    if kind == EntryKind::Event.name() {
        let payload = get("event")
            .map(|e| e.to_string())
            .or_else(|| get("payload_hex").map(|h| format!("hex:{}", str_of(h))))
            .unwrap_or_default();
        return format!(
            "schema={} {payload}",
            get("schema").map_or(String::new(), str_of)
        );
    }
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", str_of(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn str_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn run(a: &EntriesArgs) -> Result<i32> {
    let mut out = Out {
        json: a.json,
        w: BufWriter::new(io::stdout().lock()),
    };
    let result = logread::for_each_entry(
        &a.dir,
        a.from.unwrap_or(0),
        a.to.unwrap_or(u64::MAX),
        |index, seg, e| -> Result<()> {
            if !a.kind.is_empty() && !raw_kind(e).is_some_and(|c| a.kind.contains(&c)) {
                return Ok(());
            }
            print_entry(&mut out, index, seg, e)
        },
    )
    .and_then(|()| Ok(out.w.flush()?));
    match result {
        Ok(()) => Ok(exit::OK),
        Err(err) => finish_on_error(err),
    }
}

/// A closed pipe (`lineagectl entries … | head`) ends the listing quietly.
fn finish_on_error(err: anyhow::Error) -> Result<i32> {
    match err.downcast_ref::<io::Error>() {
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(exit::OK),
        _ => Err(err),
    }
}

fn print_entry(out: &mut Out, index: u64, seg: u64, e: &[u8]) -> Result<()> {
    let parsed = match Entry::parse(e) {
        Ok(p) => p,
        Err(err) => {
            let kind = raw_kind(e)
                .and_then(|c| EntryKind::try_from(c).ok())
                .map_or("UNKNOWN", |k| k.name());
            return out.line(
                index,
                seg,
                kind,
                MalformedFields {
                    malformed: err.to_string(),
                    entry_hex: hex::encode(e),
                },
            );
        }
    };
    let name = parsed.kind().map_or("UNKNOWN", |k| k.name());
    match parsed {
        Entry::Event(ev) => {
            let json = match ev.schema {
                payload::SCHEMA_JSON => serde_json::from_slice(ev.payload).ok(),
                payload::SCHEMA_PROTOBUF => payload::decode(ev.schema, ev.payload)
                    .ok()
                    .and_then(|e| serde_json::to_value(e).ok()),
                _ => None,
            };
            let payload_hex = json.is_none().then(|| hex::encode(ev.payload));
            out.line(
                index,
                seg,
                name,
                EventFields {
                    schema: ev.schema,
                    event: json,
                    payload_hex,
                },
            )
        }
        Entry::Loss(x) => out.line(index, seg, name, x),
        Entry::AgentStart(x) => out.line(index, seg, name, x),
        Entry::AgentStop(x) => out.line(index, seg, name, x),
        Entry::Heartbeat(x) => out.line(index, seg, name, x),
        Entry::Retention(x) => out.line(index, seg, name, x),
        Entry::Filter(x) => out.line(index, seg, name, x),
        Entry::Dropped(x) => out.line(index, seg, name, x),
        Entry::Tamper(x) => out.line(index, seg, name, x),
        Entry::Enforcement(x) => out.line(index, seg, name, x),
        Entry::KeyRotation(r) => out.line(
            index,
            seg,
            name,
            RotationFields {
                old_public: r.old_public.to_string(),
                old_key_id: r.old_public.key_id().to_string(),
                new_public: r.new_public.to_string(),
                new_key_id: r.new_public.key_id().to_string(),
                signature: hex::encode(r.signature),
            },
        ),
        Entry::Enrolment(c) => out.line(
            index,
            seg,
            name,
            EnrolmentFields {
                identity_public: c.identity_public.to_string(),
                identity_key_id: c.identity_public.key_id().to_string(),
                sealing_public: c.epoch_public.to_string(),
                sealing_key_id: c.epoch_public.key_id().to_string(),
                signature: hex::encode(c.signature),
            },
        ),
        Entry::Unknown {
            kind,
            version,
            body,
        } => out.line(
            index,
            seg,
            name,
            UnknownFields {
                kind_code: kind,
                kind_version: version,
                body_hex: hex::encode(body),
            },
        ),
    }
}

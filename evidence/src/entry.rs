//! Entries: what the chain records.
//!
//! An entry is `kind (u16 LE) || kind_version (u16 LE) || body`. Kind numbers are explicit and
//! never reused; a decoder turns the raw integer into [`EntryKind`] with `TryFrom`, and unknown
//! kinds or versions stay opaque (they are still hashed, linked and signed like any other
//! entry), so an old verifier can check a newer log. The evidence crate does not interpret
//! EVENT payloads: they are opaque bytes tagged with a `u16` schema number owned by the agent.
//!
//! The bytes an encoder produces are the bytes that are hashed and stored. Decoding never feeds
//! back into hashing.

use crate::digest::{Digest, HostId};
use crate::keys::{PublicKey, SIGNATURE_LEN};
use crate::wire::Reader;

/// Bytes before the body: kind and kind version.
pub const ENTRY_HEADER_LEN: usize = 4;
/// Largest entry accepted by writers and parsers (1 MiB). Bounds every allocation.
pub const MAX_ENTRY_LEN: usize = 1 << 20;
/// Longest agent version string in AGENT_START.
pub const MAX_TEXT_LEN: usize = 256;
/// Most BPF program digests in one AGENT_START.
pub const MAX_PROGRAMS: usize = 1024;

/// Kind numbers reserved for planned entry kinds. They must not be used for anything else.
pub mod reserved {}

/// The entry kinds this version of the format defines. Kind 0 is never valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntryKind {
    /// A captured event; body = schema (u16) || opaque payload.
    Event = 1,
    /// Per-CPU sequence numbers that never arrived, with the kernel's drop counters.
    Loss = 2,
    /// The agent started (or restarted, or recovered after a crash).
    AgentStart = 3,
    /// The agent stopped in an orderly way.
    AgentStop = 4,
    /// The agent is alive and had nothing else to say.
    Heartbeat = 5,
    /// A new signing key, authorised by a signature of the previous key.
    KeyRotation = 6,
    /// A signed record that the oldest segments were deleted on purpose (disk budget).
    Filter = 7,
    Retention = 8,
    /// Entries the agent itself could not record (storage unavailable, a full queue).
    Dropped = 9,
    /// The identity key's certificate for the first sealing key of a forward-secure chain.
    Enrolment = 10,
    /// The agent found its capture policy in the kernel changed behind its back.
    Tamper = 11,
    /// An enforcement mode, policy, decision or summary (docs/ENFORCEMENT.md).
    Enforcement = 12,
}

/// The kind version every encoder in this crate writes.
pub const KIND_VERSION_1: u16 = 1;

impl EntryKind {
    /// The on-wire number.
    pub fn code(self) -> u16 {
        self as u16
    }
}

/// A kind number this crate does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown entry kind {0}")]
pub struct UnknownKind(pub u16);

impl TryFrom<u16> for EntryKind {
    type Error = UnknownKind;
    fn try_from(v: u16) -> Result<Self, UnknownKind> {
        Ok(match v {
            1 => EntryKind::Event,
            2 => EntryKind::Loss,
            3 => EntryKind::AgentStart,
            4 => EntryKind::AgentStop,
            5 => EntryKind::Heartbeat,
            6 => EntryKind::KeyRotation,
            7 => EntryKind::Filter,
            8 => EntryKind::Retention,
            9 => EntryKind::Dropped,
            10 => EntryKind::Enrolment,
            11 => EntryKind::Tamper,
            12 => EntryKind::Enforcement,
            other => return Err(UnknownKind(other)),
        })
    }
}

/// Why an entry could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Shorter than the 4-byte kind/version header.
    #[error("entry is {0} bytes, shorter than its 4-byte header")]
    TooShort(usize),
    /// Longer than [`MAX_ENTRY_LEN`].
    #[error("entry is {0} bytes, longer than the {MAX_ENTRY_LEN}-byte limit")]
    TooLong(usize),
    /// Kind 0 is never valid.
    #[error("entry kind 0 is invalid")]
    ZeroKind,
    /// The body of a known kind does not have the layout its version defines.
    #[error("malformed {kind:?} body: {what}")]
    Malformed {
        /// The kind being decoded.
        kind: EntryKind,
        /// What was wrong.
        what: &'static str,
    },
}

fn malformed(kind: EntryKind, what: &'static str) -> EntryError {
    EntryError::Malformed { kind, what }
}

/// A decoded entry. EVENT payloads borrow from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry<'a> {
    /// See [`Event`].
    Event(Event<'a>),
    /// See [`Loss`].
    Loss(Loss),
    /// See [`AgentStart`].
    AgentStart(AgentStart),
    /// See [`AgentStop`].
    AgentStop(AgentStop),
    /// See [`Heartbeat`].
    Heartbeat(Heartbeat),
    /// See [`KeyRotation`].
    KeyRotation(KeyRotation),
    /// See [`Retention`].
    Filter(Filter),
    Retention(Retention),
    /// See [`Dropped`].
    Dropped(Dropped),
    /// See [`Enrolment`].
    Enrolment(Enrolment),
    /// See [`Tamper`].
    Tamper(Tamper),
    /// See [`Enforcement`].
    Enforcement(Enforcement),
    /// A kind or kind version this crate does not know; kept opaque.
    Unknown {
        /// Raw kind number.
        kind: u16,
        /// Raw kind version.
        version: u16,
        /// The body after the 4-byte header.
        body: &'a [u8],
    },
}

impl<'a> Entry<'a> {
    /// Decodes entry bytes. Never panics; bounded by the input length.
    pub fn parse(bytes: &'a [u8]) -> Result<Entry<'a>, EntryError> {
        if bytes.len() < ENTRY_HEADER_LEN {
            return Err(EntryError::TooShort(bytes.len()));
        }
        if bytes.len() > MAX_ENTRY_LEN {
            return Err(EntryError::TooLong(bytes.len()));
        }
        let kind_raw = u16::from_le_bytes([bytes[0], bytes[1]]);
        let version = u16::from_le_bytes([bytes[2], bytes[3]]);
        let body = &bytes[ENTRY_HEADER_LEN..];
        if kind_raw == 0 {
            return Err(EntryError::ZeroKind);
        }
        let kind = match EntryKind::try_from(kind_raw) {
            Ok(k) if version == KIND_VERSION_1 => k,
            _ => {
                return Ok(Entry::Unknown {
                    kind: kind_raw,
                    version,
                    body,
                })
            }
        };
        Ok(match kind {
            EntryKind::Event => Entry::Event(Event::parse_body(body)?),
            EntryKind::Loss => Entry::Loss(Loss::parse_body(body)?),
            EntryKind::AgentStart => Entry::AgentStart(AgentStart::parse_body(body)?),
            EntryKind::AgentStop => Entry::AgentStop(AgentStop::parse_body(body)?),
            EntryKind::Heartbeat => Entry::Heartbeat(Heartbeat::parse_body(body)?),
            EntryKind::KeyRotation => Entry::KeyRotation(KeyRotation::parse_body(body)?),
            EntryKind::Filter => Entry::Filter(Filter::parse_body(body)?),
            EntryKind::Retention => Entry::Retention(Retention::parse_body(body)?),
            EntryKind::Dropped => Entry::Dropped(Dropped::parse_body(body)?),
            EntryKind::Enrolment => Entry::Enrolment(Enrolment::parse_body(body)?),
            EntryKind::Tamper => Entry::Tamper(Tamper::parse_body(body)?),
            EntryKind::Enforcement => Entry::Enforcement(Enforcement::parse_body(body)?),
        })
    }

    /// The kind, if known.
    pub fn kind(&self) -> Option<EntryKind> {
        Some(match self {
            Entry::Event(_) => EntryKind::Event,
            Entry::Loss(_) => EntryKind::Loss,
            Entry::AgentStart(_) => EntryKind::AgentStart,
            Entry::AgentStop(_) => EntryKind::AgentStop,
            Entry::Heartbeat(_) => EntryKind::Heartbeat,
            Entry::KeyRotation(_) => EntryKind::KeyRotation,
            Entry::Filter(_) => EntryKind::Filter,
            Entry::Retention(_) => EntryKind::Retention,
            Entry::Dropped(_) => EntryKind::Dropped,
            Entry::Enrolment(_) => EntryKind::Enrolment,
            Entry::Tamper(_) => EntryKind::Tamper,
            Entry::Enforcement(_) => EntryKind::Enforcement,
            Entry::Unknown { .. } => return None,
        })
    }
}

fn put_header(out: &mut Vec<u8>, kind: EntryKind) {
    out.extend_from_slice(&kind.code().to_le_bytes());
    out.extend_from_slice(&KIND_VERSION_1.to_le_bytes());
}

fn finish(kind: EntryKind, r: &Reader<'_>) -> Result<(), EntryError> {
    if r.remaining() != 0 {
        return Err(malformed(kind, "trailing bytes"));
    }
    Ok(())
}

/// EVENT v1: `schema (u16) || payload`. The payload is opaque to this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// Content type of the payload, assigned by the agent (1 = agent lineage event encoding).
    pub schema: u16,
    /// The payload bytes.
    pub payload: &'a [u8],
}

impl<'a> Event<'a> {
    /// Bytes of an EVENT entry before the payload.
    pub const PREFIX_LEN: usize = ENTRY_HEADER_LEN + 2;

    /// Appends the entry bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_header(out, EntryKind::Event);
        out.extend_from_slice(&self.schema.to_le_bytes());
        out.extend_from_slice(self.payload);
    }

    /// The entry bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::PREFIX_LEN + self.payload.len());
        self.encode_into(&mut v);
        v
    }

    fn parse_body(body: &'a [u8]) -> Result<Self, EntryError> {
        let mut r = Reader::new(body);
        let schema = r
            .u16()
            .ok_or(malformed(EntryKind::Event, "missing schema"))?;
        Ok(Event {
            schema,
            payload: r.rest(),
        })
    }
}

/// LOSS flag: no kernel counter explains this gap.
pub const LOSS_FLAG_UNEXPLAINED: u32 = 1;

/// LOSS v1 (40-byte body): per-CPU sequence numbers `first_seq..=last_seq` never arrived.
///
/// `counter_delta` is how much the kernel's drop counter for that CPU rose over the interval
/// the gap belongs to, `counter_total` its value when read. A gap is explained only when the
/// flag is clear *and* `counter_delta` covers the whole range; verifiers recompute this rather
/// than trust the flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Loss {
    /// CPU whose sequence numbers are missing.
    pub cpu: u32,
    /// Bit 0: [`LOSS_FLAG_UNEXPLAINED`]. Other bits must be zero.
    pub flags: u32,
    /// First missing sequence number.
    pub first_seq: u64,
    /// Last missing sequence number (inclusive, ≥ `first_seq`).
    pub last_seq: u64,
    /// Increase of the kernel drop counter attributed to this gap.
    pub counter_delta: u64,
    /// Absolute value of the kernel drop counter when the gap was noticed.
    pub counter_total: u64,
}

impl Loss {
    /// Body length in bytes.
    pub const BODY_LEN: usize = 40;

    /// Number of missing sequence numbers.
    pub fn missing(&self) -> u64 {
        self.last_seq
            .saturating_sub(self.first_seq)
            .saturating_add(1)
    }

    /// Whether the kernel's counters account for every missing record.
    pub fn is_explained(&self) -> bool {
        self.flags & LOSS_FLAG_UNEXPLAINED == 0 && self.counter_delta >= self.missing()
    }

    /// Appends the entry bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_header(out, EntryKind::Loss);
        out.extend_from_slice(&self.cpu.to_le_bytes());
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&self.first_seq.to_le_bytes());
        out.extend_from_slice(&self.last_seq.to_le_bytes());
        out.extend_from_slice(&self.counter_delta.to_le_bytes());
        out.extend_from_slice(&self.counter_total.to_le_bytes());
    }

    /// The entry bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(ENTRY_HEADER_LEN + Self::BODY_LEN);
        self.encode_into(&mut v);
        v
    }

    fn parse_body(body: &[u8]) -> Result<Self, EntryError> {
        let k = EntryKind::Loss;
        if body.len() != Self::BODY_LEN {
            return Err(malformed(k, "body is not 40 bytes"));
        }
        let mut r = Reader::new(body);
        let short = || malformed(k, "short");
        let l = Loss {
            cpu: r.u32().ok_or_else(short)?,
            flags: r.u32().ok_or_else(short)?,
            first_seq: r.u64().ok_or_else(short)?,
            last_seq: r.u64().ok_or_else(short)?,
            counter_delta: r.u64().ok_or_else(short)?,
            counter_total: r.u64().ok_or_else(short)?,
        };
        if l.flags & !LOSS_FLAG_UNEXPLAINED != 0 {
            return Err(malformed(k, "unknown flag bits"));
        }
        if l.last_seq < l.first_seq {
            return Err(malformed(k, "last_seq < first_seq"));
        }
        finish(k, &r)?;
        Ok(l)
    }
}

/// Why the agent started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StartReason {
    /// The chain is new (entry index 0).
    FirstStart = 1,
    /// The previous run ended with AGENT_STOP.
    Restart = 2,
    /// The previous run ended without AGENT_STOP (crash, kill, power loss).
    RecoveredAfterCrash = 3,
}

impl TryFrom<u8> for StartReason {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        Ok(match v {
            1 => StartReason::FirstStart,
            2 => StartReason::Restart,
            3 => StartReason::RecoveredAfterCrash,
            other => return Err(other),
        })
    }
}

/// A position in the chain: how many entries precede it, and the link after the last of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ChainPosition {
    /// Index the next entry gets (= number of entries so far).
    pub next_index: u64,
    /// Link of entry `next_index - 1`, or the genesis link when `next_index == 0`.
    pub head: Digest,
}

/// The digest of one loaded BPF program.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProgramDigest {
    /// Program name (UTF-8, at most [`MAX_TEXT_LEN`] bytes).
    pub name: String,
    /// Digest of the program as loaded (defined by the agent).
    pub digest: Digest,
}

/// AGENT_START v1.
///
/// Body: `reason (u8) || 3 zero bytes || config_digest [32] || last_durable.next_index (u64)
/// || last_durable.head [32] || version_len (u16) || version || program_count (u16) ||
/// program_count × (name_len (u16) || name || digest [32])`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentStart {
    /// Why the agent started.
    pub reason: StartReason,
    /// Digest of the effective configuration.
    pub config_digest: Digest,
    /// The last sealed (durable) chain position the agent found when it started.
    pub last_durable: ChainPosition,
    /// Agent version string.
    pub agent_version: String,
    /// Digests of the BPF programs that were loaded.
    pub programs: Vec<ProgramDigest>,
}

/// Why an AGENT_START could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A string longer than [`MAX_TEXT_LEN`].
    #[error("text field is {0} bytes, longer than {MAX_TEXT_LEN}")]
    TextTooLong(usize),
    /// More than [`MAX_PROGRAMS`] programs.
    #[error("{0} programs, more than {MAX_PROGRAMS}")]
    TooManyPrograms(usize),
}

fn put_text(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeError> {
    if s.len() > MAX_TEXT_LEN {
        return Err(EncodeError::TextTooLong(s.len()));
    }
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn get_text(r: &mut Reader<'_>, k: EntryKind) -> Result<String, EntryError> {
    let len = r.u16().ok_or(malformed(k, "short text length"))? as usize;
    if len > MAX_TEXT_LEN {
        return Err(malformed(k, "text too long"));
    }
    let b = r.bytes(len).ok_or(malformed(k, "short text"))?;
    String::from_utf8(b.to_vec()).map_err(|_| malformed(k, "text is not UTF-8"))
}

impl AgentStart {
    /// Appends the entry bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.programs.len() > MAX_PROGRAMS {
            return Err(EncodeError::TooManyPrograms(self.programs.len()));
        }
        let start = out.len();
        put_header(out, EntryKind::AgentStart);
        out.push(self.reason as u8);
        out.extend_from_slice(&[0; 3]);
        out.extend_from_slice(&self.config_digest.0);
        out.extend_from_slice(&self.last_durable.next_index.to_le_bytes());
        out.extend_from_slice(&self.last_durable.head.0);
        let r = (|| {
            put_text(out, &self.agent_version)?;
            out.extend_from_slice(&(self.programs.len() as u16).to_le_bytes());
            for p in &self.programs {
                put_text(out, &p.name)?;
                out.extend_from_slice(&p.digest.0);
            }
            Ok(())
        })();
        if r.is_err() {
            out.truncate(start);
        }
        r
    }

    /// The entry bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut v = Vec::new();
        self.encode_into(&mut v)?;
        Ok(v)
    }

    fn parse_body(body: &[u8]) -> Result<Self, EntryError> {
        let k = EntryKind::AgentStart;
        let short = || malformed(k, "short");
        let mut r = Reader::new(body);
        let reason = StartReason::try_from(r.u8().ok_or_else(short)?)
            .map_err(|_| malformed(k, "unknown start reason"))?;
        if r.array::<3>().ok_or_else(short)? != [0; 3] {
            return Err(malformed(k, "reserved bytes not zero"));
        }
        let config_digest = Digest(r.array().ok_or_else(short)?);
        let next_index = r.u64().ok_or_else(short)?;
        let head = Digest(r.array().ok_or_else(short)?);
        let agent_version = get_text(&mut r, k)?;
        let count = r.u16().ok_or_else(short)? as usize;
        if count > MAX_PROGRAMS {
            return Err(malformed(k, "too many programs"));
        }
        // Each program takes at least 34 bytes; refuse counts the input cannot hold before
        // allocating for them.
        if count * 34 > r.remaining() {
            return Err(short());
        }
        let mut programs = Vec::with_capacity(count);
        for _ in 0..count {
            let name = get_text(&mut r, k)?;
            let digest = Digest(r.array().ok_or_else(short)?);
            programs.push(ProgramDigest { name, digest });
        }
        finish(k, &r)?;
        Ok(AgentStart {
            reason,
            config_digest,
            last_durable: ChainPosition { next_index, head },
            agent_version,
            programs,
        })
    }
}

/// Why the agent stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Asked to stop (service manager, operator).
    Requested = 1,
    /// A terminating signal.
    Signal = 2,
    /// A fatal error the agent could still record.
    FatalError = 3,
}

impl TryFrom<u16> for StopReason {
    type Error = u16;
    fn try_from(v: u16) -> Result<Self, u16> {
        Ok(match v {
            1 => StopReason::Requested,
            2 => StopReason::Signal,
            3 => StopReason::FatalError,
            other => return Err(other),
        })
    }
}

/// AGENT_STOP v1 (12-byte body): `reason (u16) || 2 zero bytes || time_ns (u64)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AgentStop {
    /// Why the agent stopped.
    pub reason: StopReason,
    /// Wall-clock time of the stop, nanoseconds since the Unix epoch.
    pub time_ns: u64,
}

impl AgentStop {
    /// Body length in bytes.
    pub const BODY_LEN: usize = 12;

    /// Appends the entry bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_header(out, EntryKind::AgentStop);
        out.extend_from_slice(&(self.reason as u16).to_le_bytes());
        out.extend_from_slice(&[0; 2]);
        out.extend_from_slice(&self.time_ns.to_le_bytes());
    }

    /// The entry bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(ENTRY_HEADER_LEN + Self::BODY_LEN);
        self.encode_into(&mut v);
        v
    }

    fn parse_body(body: &[u8]) -> Result<Self, EntryError> {
        let k = EntryKind::AgentStop;
        if body.len() != Self::BODY_LEN {
            return Err(malformed(k, "body is not 12 bytes"));
        }
        let mut r = Reader::new(body);
        let short = || malformed(k, "short");
        let reason = StopReason::try_from(r.u16().ok_or_else(short)?)
            .map_err(|_| malformed(k, "unknown stop reason"))?;
        if r.u16().ok_or_else(short)? != 0 {
            return Err(malformed(k, "reserved bytes not zero"));
        }
        let time_ns = r.u64().ok_or_else(short)?;
        finish(k, &r)?;
        Ok(AgentStop { reason, time_ns })
    }
}

/// HEARTBEAT v1 (16-byte body): `wall_time_ns (u64) || monotonic_ns (u64)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Heartbeat {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub wall_time_ns: u64,
    /// CLOCK_MONOTONIC (or CLOCK_BOOTTIME) nanoseconds.
    pub monotonic_ns: u64,
}

impl Heartbeat {
    /// Body length in bytes.
    pub const BODY_LEN: usize = 16;

    /// Appends the entry bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_header(out, EntryKind::Heartbeat);
        out.extend_from_slice(&self.wall_time_ns.to_le_bytes());
        out.extend_from_slice(&self.monotonic_ns.to_le_bytes());
    }

    /// The entry bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(ENTRY_HEADER_LEN + Self::BODY_LEN);
        self.encode_into(&mut v);
        v
    }

    fn parse_body(body: &[u8]) -> Result<Self, EntryError> {
        let k = EntryKind::Heartbeat;
        if body.len() != Self::BODY_LEN {
            return Err(malformed(k, "body is not 16 bytes"));
        }
        let mut r = Reader::new(body);
        let short = || malformed(k, "short");
        let h = Heartbeat {
            wall_time_ns: r.u64().ok_or_else(short)?,
            monotonic_ns: r.u64().ok_or_else(short)?,
        };
        finish(k, &r)?;
        Ok(h)
    }
}

/// ASCII prefix of the message a KEY_ROTATION signature covers.
pub const ROTATION_CONTEXT: &[u8] = b"lineage/key-rotation/v1";

/// KEY_ROTATION v1 (128-byte body): `old_public [32] || new_public [32] || signature [64]`.
///
/// The signature is made with the old key over
/// `"lineage/key-rotation/v1" || host_id [16] || index (u64) || old_public || new_public`,
/// where `index` is the entry's own chain index, so a rotation cannot be replayed into another
/// chain or position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRotation {
    /// The key being retired (must be the key in effect).
    pub old_public: PublicKey,
    /// The key that signs segments after the one holding this entry.
    pub new_public: PublicKey,
    /// Signature by `old_public` over [`KeyRotation::message`].
    pub signature: [u8; SIGNATURE_LEN],
}

impl KeyRotation {
    /// Body length in bytes.
    pub const BODY_LEN: usize = 128;

    /// The message the old key signs.
    pub fn message(host: &HostId, index: u64, old: &PublicKey, new: &PublicKey) -> Vec<u8> {
        let mut m = Vec::with_capacity(ROTATION_CONTEXT.len() + 16 + 8 + 64);
        m.extend_from_slice(ROTATION_CONTEXT);
        m.extend_from_slice(&host.0);
        m.extend_from_slice(&index.to_le_bytes());
        m.extend_from_slice(old.as_bytes());
        m.extend_from_slice(new.as_bytes());
        m
    }

    /// Whether the signature is valid for the entry at `index` of `host`'s chain.
    pub fn verify(&self, host: &HostId, index: u64) -> bool {
        let msg = Self::message(host, index, &self.old_public, &self.new_public);
        self.old_public.verify(&msg, &self.signature)
    }

    /// Appends the entry bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_header(out, EntryKind::KeyRotation);
        out.extend_from_slice(self.old_public.as_bytes());
        out.extend_from_slice(self.new_public.as_bytes());
        out.extend_from_slice(&self.signature);
    }

    /// The entry bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(ENTRY_HEADER_LEN + Self::BODY_LEN);
        self.encode_into(&mut v);
        v
    }

    fn parse_body(body: &[u8]) -> Result<Self, EntryError> {
        let k = EntryKind::KeyRotation;
        if body.len() != Self::BODY_LEN {
            return Err(malformed(k, "body is not 128 bytes"));
        }
        let mut r = Reader::new(body);
        let short = || malformed(k, "short");
        let rot = KeyRotation {
            old_public: PublicKey::from_bytes(r.array().ok_or_else(short)?),
            new_public: PublicKey::from_bytes(r.array().ok_or_else(short)?),
            signature: r.array().ok_or_else(short)?,
        };
        finish(k, &r)?;
        Ok(rot)
    }
}

/// ASCII prefix of the message an ENROLMENT signature covers.
pub const ENROLMENT_CONTEXT: &[u8] = b"lineage/enrolment/v1";

/// ENROLMENT v1 (128-byte body): `identity_public [32] || epoch_public [32] || signature [64]`.
///
/// The host's identity key certifies the first sealing key of a forward-secure chain
/// (format version 2): the signature is made with the identity key over
/// `"lineage/enrolment/v1" || host_id [16] || identity_public || epoch_public` (100 bytes). The
/// entry is recorded in the segment `epoch_public` signs; a verifier that trusts the identity
/// key accepts that segment, and from it follows the keys each header commits to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enrolment {
    /// The identity key (kept off the host).
    pub identity_public: PublicKey,
    /// The first sealing key it certifies.
    pub epoch_public: PublicKey,
    /// Signature by `identity_public` over [`Enrolment::message`].
    pub signature: [u8; SIGNATURE_LEN],
}

impl Enrolment {
    /// Body length in bytes.
    pub const BODY_LEN: usize = 128;

    /// The message the identity key signs.
    pub fn message(host: &HostId, identity: &PublicKey, epoch: &PublicKey) -> Vec<u8> {
        let mut m = Vec::with_capacity(ENROLMENT_CONTEXT.len() + 16 + 64);
        m.extend_from_slice(ENROLMENT_CONTEXT);
        m.extend_from_slice(&host.0);
        m.extend_from_slice(identity.as_bytes());
        m.extend_from_slice(epoch.as_bytes());
        m
    }

    /// The identity's certificate of `epoch` for `host`.
    pub fn sign(host: &HostId, identity: &crate::keys::SecretKey, epoch: &PublicKey) -> Self {
        let identity_public = identity.public();
        Enrolment {
            identity_public,
            epoch_public: *epoch,
            signature: identity.sign(&Self::message(host, &identity_public, epoch)),
        }
    }

    /// Whether the signature is valid for `host`.
    pub fn verify(&self, host: &HostId) -> bool {
        let msg = Self::message(host, &self.identity_public, &self.epoch_public);
        self.identity_public.verify(&msg, &self.signature)
    }

    /// Appends the 128 body bytes (no entry header) to `out`.
    pub fn encode_body_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.identity_public.as_bytes());
        out.extend_from_slice(self.epoch_public.as_bytes());
        out.extend_from_slice(&self.signature);
    }

    /// Appends the entry bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_header(out, EntryKind::Enrolment);
        self.encode_body_into(out);
    }

    /// The entry bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(ENTRY_HEADER_LEN + Self::BODY_LEN);
        self.encode_into(&mut v);
        v
    }

    /// Parses the 128-byte body.
    pub fn parse_body(body: &[u8]) -> Result<Self, EntryError> {
        let k = EntryKind::Enrolment;
        if body.len() != Self::BODY_LEN {
            return Err(malformed(k, "body is not 128 bytes"));
        }
        let mut r = Reader::new(body);
        let short = || malformed(k, "short");
        let e = Enrolment {
            identity_public: PublicKey::from_bytes(r.array().ok_or_else(short)?),
            epoch_public: PublicKey::from_bytes(r.array().ok_or_else(short)?),
            signature: r.array().ok_or_else(short)?,
        };
        finish(k, &r)?;
        Ok(e)
    }
}

/// What a TAMPER entry reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TamperWhat {
    /// A capture map's contents differ from the agent's own copy of the policy.
    CaptureMap = 1,
    /// A capture program is no longer loaded, or was replaced.
    Program = 2,
    /// A capture program is no longer attached (its link is gone).
    Link = 3,
}

impl TryFrom<u16> for TamperWhat {
    type Error = u16;
    fn try_from(v: u16) -> Result<Self, u16> {
        Ok(match v {
            1 => TamperWhat::CaptureMap,
            2 => TamperWhat::Program,
            3 => TamperWhat::Link,
            other => return Err(other),
        })
    }
}

/// Longest TAMPER detail text.
pub const MAX_TAMPER_DETAIL: usize = 4096;

/// TAMPER v1: `what (u16) || 2 zero bytes || noticed_ns (u64) || policy_digest [32] ||
/// detail_len (u16) || detail (UTF-8)`. The agent noticed at `noticed_ns` (wall clock) that
/// the kernel's capture state no longer matched the policy `policy_digest` it holds; `detail`
/// says what differed (and whether the agent restored it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tamper {
    /// What kind of capture state changed.
    pub what: TamperWhat,
    /// When the agent noticed, ns since the Unix epoch.
    pub noticed_ns: u64,
    /// The policy the agent holds (FILTER POLICY digest).
    pub policy_digest: Digest,
    /// What differed, for humans.
    pub detail: String,
}

impl Tamper {
    /// Appends the entry bytes to `out` (the detail is cut to [`MAX_TAMPER_DETAIL`] bytes at a
    /// character boundary).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut end = self.detail.len().min(MAX_TAMPER_DETAIL);
        while !self.detail.is_char_boundary(end) {
            end -= 1;
        }
        put_header(out, EntryKind::Tamper);
        out.extend_from_slice(&(self.what as u16).to_le_bytes());
        out.extend_from_slice(&[0; 2]);
        out.extend_from_slice(&self.noticed_ns.to_le_bytes());
        out.extend_from_slice(&self.policy_digest.0);
        out.extend_from_slice(&(end as u16).to_le_bytes());
        out.extend_from_slice(&self.detail.as_bytes()[..end]);
    }

    /// The entry bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }

    fn parse_body(body: &[u8]) -> Result<Self, EntryError> {
        let k = EntryKind::Tamper;
        let short = || malformed(k, "short");
        let mut r = Reader::new(body);
        let what = TamperWhat::try_from(r.u16().ok_or_else(short)?)
            .map_err(|_| malformed(k, "unknown tamper kind"))?;
        if r.u16().ok_or_else(short)? != 0 {
            return Err(malformed(k, "reserved bytes not zero"));
        }
        let noticed_ns = r.u64().ok_or_else(short)?;
        let policy_digest = Digest(r.array().ok_or_else(short)?);
        let len = r.u16().ok_or_else(short)? as usize;
        if len > MAX_TAMPER_DETAIL {
            return Err(malformed(k, "detail too long"));
        }
        let detail = String::from_utf8(r.bytes(len).ok_or_else(short)?.to_vec())
            .map_err(|_| malformed(k, "detail is not UTF-8"))?;
        finish(k, &r)?;
        Ok(Tamper {
            what,
            noticed_ns,
            policy_digest,
            detail,
        })
    }
}

/// Why the agent dropped entries itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Sealed segments could not be written (disk full, I/O error).
    StorageUnavailable = 1,
    /// An internal queue was full.
    QueueFull = 2,
}

impl TryFrom<u16> for DropReason {
    type Error = u16;
    fn try_from(v: u16) -> Result<Self, u16> {
        Ok(match v {
            1 => DropReason::StorageUnavailable,
            2 => DropReason::QueueFull,
            other => return Err(other),
        })
    }
}

/// DROPPED v1 (28-byte body): `reason (u16) || 2 zero bytes || count (u64) ||
/// first_time_ns (u64) || last_time_ns (u64)`. The agent could not record `count` entries
/// between the two times (agent clock, boot-time ns) for `reason`; written as soon as it can
/// record again. Unlike LOSS this is the agent's own drop, not the kernel's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Dropped {
    /// Why.
    pub reason: DropReason,
    /// How many entries were not recorded (at least 1).
    pub count: u64,
    /// When the first was dropped.
    pub first_time_ns: u64,
    /// When the last was dropped (≥ `first_time_ns`).
    pub last_time_ns: u64,
}

impl Dropped {
    /// Body length in bytes.
    pub const BODY_LEN: usize = 28;

    /// Appends the entry bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_header(out, EntryKind::Dropped);
        out.extend_from_slice(&(self.reason as u16).to_le_bytes());
        out.extend_from_slice(&[0; 2]);
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.first_time_ns.to_le_bytes());
        out.extend_from_slice(&self.last_time_ns.to_le_bytes());
    }

    /// The entry bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(ENTRY_HEADER_LEN + Self::BODY_LEN);
        self.encode_into(&mut v);
        v
    }

    fn parse_body(body: &[u8]) -> Result<Self, EntryError> {
        let k = EntryKind::Dropped;
        if body.len() != Self::BODY_LEN {
            return Err(malformed(k, "body is not 28 bytes"));
        }
        let mut r = Reader::new(body);
        let short = || malformed(k, "short");
        let reason = DropReason::try_from(r.u16().ok_or_else(short)?)
            .map_err(|_| malformed(k, "unknown drop reason"))?;
        if r.u16().ok_or_else(short)? != 0 {
            return Err(malformed(k, "reserved bytes not zero"));
        }
        let d = Dropped {
            reason,
            count: r.u64().ok_or_else(short)?,
            first_time_ns: r.u64().ok_or_else(short)?,
            last_time_ns: r.u64().ok_or_else(short)?,
        };
        if d.count == 0 {
            return Err(malformed(k, "count is zero"));
        }
        if d.last_time_ns < d.first_time_ns {
            return Err(malformed(k, "last_time_ns < first_time_ns"));
        }
        finish(k, &r)?;
        Ok(d)
    }
}

/// Why the agent deleted sealed segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionReason {
    /// The segments were within the deletion policy of the disk budget (for example, every
    /// collector had acknowledged them).
    Budget = 1,
    /// The hard disk cap forced the deletion regardless of acknowledgements.
    HardCap = 2,
}

impl TryFrom<u16> for RetentionReason {
    type Error = u16;
    fn try_from(v: u16) -> Result<Self, u16> {
        Ok(match v {
            1 => RetentionReason::Budget,
            2 => RetentionReason::HardCap,
            other => return Err(other),
        })
    }
}

/// RETENTION v1 (68-byte body): `reason (u16) || 2 zero bytes || last_deleted_segment (u64) ||
/// end_index (u64) || deleted_bytes (u64) || deleted_segments (u64) ||
/// last_deleted_header_digest [32]`.
///
/// The agent appends and durably seals this entry *before* deleting segment files, so the
/// deletion is itself on the signed chain. It is cumulative: the newest RETENTION entry covers
/// the whole pruned prefix, segments `0..=last_deleted_segment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Retention {
    /// Why.
    pub reason: RetentionReason,
    /// Segments 0..=last_deleted_segment are deleted (cumulative: the newest RETENTION entry
    /// covers the whole pruned prefix).
    pub last_deleted_segment: u64,
    /// Entries 0..end_index are gone with them (= first_index of segment
    /// last_deleted_segment + 1).
    pub end_index: u64,
    /// Bytes freed by this deletion batch.
    pub deleted_bytes: u64,
    /// Segment files removed by this batch.
    pub deleted_segments: u64,
    /// Header digest of segment last_deleted_segment (= prev_header_digest of the next
    /// segment).
    pub last_deleted_header_digest: Digest,
}

impl Retention {
    /// Body length in bytes.
    pub const BODY_LEN: usize = 68;

    /// Appends the entry bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_header(out, EntryKind::Retention);
        out.extend_from_slice(&(self.reason as u16).to_le_bytes());
        out.extend_from_slice(&[0; 2]);
        out.extend_from_slice(&self.last_deleted_segment.to_le_bytes());
        out.extend_from_slice(&self.end_index.to_le_bytes());
        out.extend_from_slice(&self.deleted_bytes.to_le_bytes());
        out.extend_from_slice(&self.deleted_segments.to_le_bytes());
        out.extend_from_slice(&self.last_deleted_header_digest.0);
    }

    /// The entry bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(ENTRY_HEADER_LEN + Self::BODY_LEN);
        self.encode_into(&mut v);
        v
    }

    fn parse_body(body: &[u8]) -> Result<Self, EntryError> {
        let k = EntryKind::Retention;
        if body.len() != Self::BODY_LEN {
            return Err(malformed(k, "body is not 68 bytes"));
        }
        let mut r = Reader::new(body);
        let short = || malformed(k, "short");
        let reason = RetentionReason::try_from(r.u16().ok_or_else(short)?)
            .map_err(|_| malformed(k, "unknown retention reason"))?;
        if r.u16().ok_or_else(short)? != 0 {
            return Err(malformed(k, "reserved bytes not zero"));
        }
        let ret = Retention {
            reason,
            last_deleted_segment: r.u64().ok_or_else(short)?,
            end_index: r.u64().ok_or_else(short)?,
            deleted_bytes: r.u64().ok_or_else(short)?,
            deleted_segments: r.u64().ok_or_else(short)?,
            last_deleted_header_digest: Digest(r.array().ok_or_else(short)?),
        };
        if ret.deleted_segments > ret.last_deleted_segment.saturating_add(1) {
            return Err(malformed(
                k,
                "more segments deleted than the pruned prefix holds",
            ));
        }
        finish(k, &r)?;
        Ok(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;
    use proptest::prelude::*;

    #[test]
    fn kind_numbers_are_fixed() {
        // These numbers are on disk; changing one breaks every existing log.
        assert_eq!(EntryKind::Event.code(), 1);
        assert_eq!(EntryKind::Loss.code(), 2);
        assert_eq!(EntryKind::AgentStart.code(), 3);
        assert_eq!(EntryKind::AgentStop.code(), 4);
        assert_eq!(EntryKind::Heartbeat.code(), 5);
        assert_eq!(EntryKind::KeyRotation.code(), 6);
        assert_eq!(EntryKind::Retention.code(), 8);
        assert_eq!(EntryKind::Dropped.code(), 9);
        assert_eq!(EntryKind::Filter.code(), 7);
        assert_eq!(EntryKind::Enrolment.code(), 10);
        assert_eq!(EntryKind::Tamper.code(), 11);
        assert_eq!(EntryKind::Enforcement.code(), 12);
        for code in [1u16, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] {
            assert_eq!(EntryKind::try_from(code).unwrap().code(), code);
        }
        for code in [0u16, 13, 14, u16::MAX] {
            assert_eq!(EntryKind::try_from(code), Err(UnknownKind(code)));
        }
    }

    #[test]
    fn unknown_kinds_and_versions_stay_opaque() {
        let bytes = [200, 0, 1, 0, 0xaa];
        assert_eq!(
            Entry::parse(&bytes).unwrap(),
            Entry::Unknown {
                kind: 200,
                version: 1,
                body: &[0xaa]
            }
        );
        let v2_event = [1, 0, 2, 0];
        assert!(matches!(
            Entry::parse(&v2_event).unwrap(),
            Entry::Unknown {
                kind: 1,
                version: 2,
                ..
            }
        ));
        assert_eq!(Entry::parse(&[0, 0, 1, 0]), Err(EntryError::ZeroKind));
        assert_eq!(Entry::parse(&[1, 0, 1]), Err(EntryError::TooShort(3)));
    }

    #[test]
    fn loss_explained_needs_counter_and_clear_flag() {
        let mut l = Loss {
            cpu: 1,
            flags: 0,
            first_seq: 10,
            last_seq: 19,
            counter_delta: 10,
            counter_total: 99,
        };
        assert_eq!(l.missing(), 10);
        assert!(l.is_explained());
        l.counter_delta = 9;
        assert!(!l.is_explained());
        l.counter_delta = 10;
        l.flags = LOSS_FLAG_UNEXPLAINED;
        assert!(!l.is_explained());
        let mut bad = l.encode();
        bad[8] = 2; // unknown flag bit
        assert!(matches!(
            Entry::parse(&bad),
            Err(EntryError::Malformed { .. })
        ));
    }

    #[test]
    fn agent_start_limits() {
        let mut s = AgentStart {
            reason: StartReason::FirstStart,
            config_digest: Digest([1; 32]),
            last_durable: ChainPosition {
                next_index: 0,
                head: Digest([2; 32]),
            },
            agent_version: "x".repeat(MAX_TEXT_LEN + 1),
            programs: vec![],
        };
        let mut out = vec![9];
        assert_eq!(
            s.encode_into(&mut out),
            Err(EncodeError::TextTooLong(MAX_TEXT_LEN + 1))
        );
        assert_eq!(out, vec![9], "a failed encode leaves the buffer as it was");
        s.agent_version = "0.1.0".into();
        let bytes = s.encode().unwrap();
        // A program count larger than the remaining bytes can hold is refused up front.
        let count_at = bytes.len() - 2;
        let mut lying = bytes.clone();
        lying[count_at..].copy_from_slice(&1000u16.to_le_bytes());
        assert!(Entry::parse(&lying).is_err());
    }

    #[test]
    fn rotation_signature_binds_index_and_host() {
        let old = SecretKey::from_seed([1; 32]);
        let new = SecretKey::from_seed([2; 32]);
        let host = HostId([3; 16]);
        let msg = KeyRotation::message(&host, 5, &old.public(), &new.public());
        let rot = KeyRotation {
            old_public: old.public(),
            new_public: new.public(),
            signature: old.sign(&msg),
        };
        assert!(rot.verify(&host, 5));
        assert!(!rot.verify(&host, 6));
        assert!(!rot.verify(&HostId([4; 16]), 5));
    }

    fn dropped() -> Dropped {
        Dropped {
            reason: DropReason::StorageUnavailable,
            count: 7,
            first_time_ns: 100,
            last_time_ns: 250,
        }
    }

    fn retention() -> Retention {
        Retention {
            reason: RetentionReason::Budget,
            last_deleted_segment: 4,
            end_index: 120,
            deleted_bytes: 65_536,
            deleted_segments: 3,
            last_deleted_header_digest: Digest([0xab; 32]),
        }
    }

    /// Parses `bytes`, expecting a malformed body whose message contains `what`.
    fn assert_malformed(bytes: &[u8], kind: EntryKind, what: &str) {
        match Entry::parse(bytes) {
            Err(EntryError::Malformed { kind: k, what: w }) => {
                assert_eq!(k, kind);
                assert!(w.contains(what), "expected {what:?}, got {w:?}");
            }
            other => panic!("expected a malformed {kind:?} ({what}), got {other:?}"),
        }
    }

    #[test]
    fn dropped_layout_and_round_trip() {
        let d = dropped();
        let bytes = d.encode();
        assert_eq!(bytes.len(), ENTRY_HEADER_LEN + Dropped::BODY_LEN);
        assert_eq!(bytes.len(), 32);
        let mut want = vec![9, 0, 1, 0, 1, 0, 0, 0];
        want.extend_from_slice(&7u64.to_le_bytes());
        want.extend_from_slice(&100u64.to_le_bytes());
        want.extend_from_slice(&250u64.to_le_bytes());
        assert_eq!(bytes, want, "the layout in docs/FORMAT.md §4.8");
        assert_eq!(Entry::parse(&bytes).unwrap(), Entry::Dropped(d));
        assert_eq!(
            Entry::parse(&bytes).unwrap().kind(),
            Some(EntryKind::Dropped)
        );
        let q = Dropped {
            reason: DropReason::QueueFull,
            first_time_ns: 5,
            last_time_ns: 5,
            count: 1,
        };
        assert_eq!(Entry::parse(&q.encode()).unwrap(), Entry::Dropped(q));
        assert_eq!(EntryKind::Dropped.name(), "DROPPED");
    }

    #[test]
    fn malformed_dropped_bodies_are_rejected() {
        let k = EntryKind::Dropped;
        let good = dropped().encode();
        let mut long = good.clone();
        long.push(0);
        assert_malformed(&long, k, "not 28 bytes");
        assert_malformed(&good[..good.len() - 1], k, "not 28 bytes");
        assert_malformed(&good[..ENTRY_HEADER_LEN], k, "not 28 bytes");
        let mut zero = good.clone();
        zero[8..16].copy_from_slice(&0u64.to_le_bytes());
        assert_malformed(&zero, k, "count is zero");
        for at in [6, 7] {
            let mut reserved = good.clone();
            reserved[at] = 1;
            assert_malformed(&reserved, k, "reserved bytes");
        }
        for reason in [0u16, 3, u16::MAX] {
            let mut unknown = good.clone();
            unknown[4..6].copy_from_slice(&reason.to_le_bytes());
            assert_malformed(&unknown, k, "unknown drop reason");
        }
        let mut backwards = good.clone();
        backwards[16..24].copy_from_slice(&251u64.to_le_bytes());
        assert_malformed(&backwards, k, "last_time_ns < first_time_ns");
        // A different kind version is not malformed but opaque.
        let mut v2 = good;
        v2[2] = 2;
        assert!(matches!(
            Entry::parse(&v2),
            Ok(Entry::Unknown {
                kind: 9,
                version: 2,
                ..
            })
        ));
    }

    #[test]
    fn retention_layout_and_round_trip() {
        let r = retention();
        let bytes = r.encode();
        assert_eq!(bytes.len(), ENTRY_HEADER_LEN + Retention::BODY_LEN);
        assert_eq!(bytes.len(), 72);
        let mut want = vec![8, 0, 1, 0, 1, 0, 0, 0];
        for v in [4u64, 120, 65_536, 3] {
            want.extend_from_slice(&v.to_le_bytes());
        }
        want.extend_from_slice(&[0xab; 32]);
        assert_eq!(bytes, want, "the layout in docs/FORMAT.md §4.7");
        assert_eq!(Entry::parse(&bytes).unwrap(), Entry::Retention(r));
        assert_eq!(
            Entry::parse(&bytes).unwrap().kind(),
            Some(EntryKind::Retention)
        );
        let hard = Retention {
            reason: RetentionReason::HardCap,
            last_deleted_segment: 0,
            deleted_segments: 1,
            ..r
        };
        assert_eq!(
            Entry::parse(&hard.encode()).unwrap(),
            Entry::Retention(hard)
        );
        assert_eq!(EntryKind::Retention.name(), "RETENTION");
        assert_eq!(RetentionReason::try_from(2), Ok(RetentionReason::HardCap));
        assert_eq!(RetentionReason::try_from(3), Err(3));
    }

    #[test]
    fn malformed_retention_bodies_are_rejected() {
        let k = EntryKind::Retention;
        let good = retention().encode();
        let mut long = good.clone();
        long.push(0);
        assert_malformed(&long, k, "not 68 bytes");
        assert_malformed(&good[..good.len() - 1], k, "not 68 bytes");
        for at in [6, 7] {
            let mut reserved = good.clone();
            reserved[at] = 0x80;
            assert_malformed(&reserved, k, "reserved bytes");
        }
        for reason in [0u16, 3, u16::MAX] {
            let mut unknown = good.clone();
            unknown[4..6].copy_from_slice(&reason.to_le_bytes());
            assert_malformed(&unknown, k, "unknown retention reason");
        }
        // Segments 0..=4 are five segments; a batch cannot remove six.
        let mut too_many = good.clone();
        too_many[32..40].copy_from_slice(&6u64.to_le_bytes());
        assert_malformed(&too_many, k, "more segments deleted");
        let mut five = good;
        five[32..40].copy_from_slice(&5u64.to_le_bytes());
        assert!(Entry::parse(&five).is_ok());
    }

    fn arb_entry() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(
                |(schema, p)| Event {
                    schema,
                    payload: &p
                }
                .encode()
            ),
            (
                any::<u32>(),
                any::<bool>(),
                any::<u64>(),
                0u64..1000,
                any::<u64>(),
                any::<u64>()
            )
                .prop_map(|(cpu, f, first, n, d, t)| Loss {
                    cpu,
                    flags: f as u32,
                    first_seq: first / 2,
                    last_seq: first / 2 + n,
                    counter_delta: d,
                    counter_total: t
                }
                .encode()),
            (
                "[a-z0-9.]{0,20}",
                proptest::collection::vec(("[a-z_]{1,16}", any::<[u8; 32]>()), 0..4)
            )
                .prop_map(|(v, progs)| AgentStart {
                    reason: StartReason::RecoveredAfterCrash,
                    config_digest: Digest([5; 32]),
                    last_durable: ChainPosition {
                        next_index: 42,
                        head: Digest([6; 32])
                    },
                    agent_version: v,
                    programs: progs
                        .into_iter()
                        .map(|(name, d)| ProgramDigest {
                            name,
                            digest: Digest(d)
                        })
                        .collect(),
                }
                .encode()
                .unwrap()),
            any::<u64>().prop_map(|t| AgentStop {
                reason: StopReason::Signal,
                time_ns: t
            }
            .encode()),
            (any::<u64>(), any::<u64>()).prop_map(|(w, m)| Heartbeat {
                wall_time_ns: w,
                monotonic_ns: m
            }
            .encode()),
            (any::<bool>(), 1u64.., any::<u64>(), any::<u64>()).prop_map(|(q, count, a, b)| {
                Dropped {
                    reason: if q {
                        DropReason::QueueFull
                    } else {
                        DropReason::StorageUnavailable
                    },
                    count,
                    first_time_ns: a.min(b),
                    last_time_ns: a.max(b),
                }
                .encode()
            }),
            (
                any::<bool>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<[u8; 32]>()
            )
                .prop_map(|(h, last, end, bytes, n, d)| Retention {
                    reason: if h {
                        RetentionReason::HardCap
                    } else {
                        RetentionReason::Budget
                    },
                    last_deleted_segment: last,
                    end_index: end,
                    deleted_bytes: bytes,
                    deleted_segments: n % last.saturating_add(1).saturating_add(1),
                    last_deleted_header_digest: Digest(d),
                }
                .encode()),
        ]
    }

    proptest! {
        #[test]
        fn encode_parse_round_trip(bytes in arb_entry()) {
            let e = Entry::parse(&bytes).unwrap();
            let mut again = Vec::new();
            match &e {
                Entry::Event(x) => x.encode_into(&mut again),
                Entry::Loss(x) => x.encode_into(&mut again),
                Entry::AgentStart(x) => x.encode_into(&mut again).unwrap(),
                Entry::AgentStop(x) => x.encode_into(&mut again),
                Entry::Heartbeat(x) => x.encode_into(&mut again),
                Entry::KeyRotation(x) => x.encode_into(&mut again),
                Entry::Retention(x) => x.encode_into(&mut again),
                Entry::Dropped(x) => x.encode_into(&mut again),
                Entry::Filter(x) => x.encode_into(&mut again),
                Entry::Enrolment(x) => x.encode_into(&mut again),
                Entry::Tamper(x) => x.encode_into(&mut again),
                Entry::Enforcement(x) => x.encode_into(&mut again),
                Entry::Unknown { .. } => panic!("encoders only produce known kinds"),
            }
            prop_assert_eq!(again, bytes);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Entry::parse(&bytes);
        }

        #[test]
        fn truncation_of_fixed_bodies_is_rejected(bytes in arb_entry(), cut in 1usize..8) {
            let e = Entry::parse(&bytes).unwrap();
            if !matches!(e, Entry::Event(_)) && cut < bytes.len() - ENTRY_HEADER_LEN {
                prop_assert!(Entry::parse(&bytes[..bytes.len() - cut]).is_err());
            }
        }
    }
}

/// Most rules a FILTER counts entry may list.
pub const MAX_FILTER_RULES: usize = 1024;
/// Longest FILTER policy text.
pub const MAX_POLICY_LEN: usize = 64 * 1024;

/// FILTER v1: the capture filter in effect, so completeness is always relative to a recorded
/// policy. Body: `form (u16) || 2 zero bytes || policy_digest [32] || form-specific`:
/// - form 1, POLICY: `text_len (u32) || text` — the policy as UTF-8 text (the agent writes
///   TOML naming each rule and its id); `policy_digest = BLAKE3(text)`. Written at start and
///   whenever the policy changes.
/// - form 2, COUNTS: `rule_count (u32) || rule_count × (rule_id (u32) || 4 zero bytes ||
///   suppressed (u64))` — events each rule of the policy `policy_digest` suppressed since the
///   previous COUNTS entry (rules with nothing new are omitted). Written at seals.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "form", rename_all = "snake_case")]
pub enum Filter {
    Policy {
        policy_digest: Digest,
        text: String,
    },
    Counts {
        policy_digest: Digest,
        counts: Vec<FilterCount>,
    },
}

/// One rule's suppressed events in a FILTER counts entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FilterCount {
    pub rule_id: u32,
    pub suppressed: u64,
}

impl Filter {
    /// A POLICY entry for `text`, with its digest.
    pub fn policy(text: &str) -> Self {
        Filter::Policy {
            policy_digest: Digest(*blake3::hash(text.as_bytes()).as_bytes()),
            text: text.to_owned(),
        }
    }

    /// Appends the entry bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_header(out, EntryKind::Filter);
        match self {
            Filter::Policy {
                policy_digest,
                text,
            } => {
                out.extend_from_slice(&1u16.to_le_bytes());
                out.extend_from_slice(&[0; 2]);
                out.extend_from_slice(&policy_digest.0);
                out.extend_from_slice(&(text.len() as u32).to_le_bytes());
                out.extend_from_slice(text.as_bytes());
            }
            Filter::Counts {
                policy_digest,
                counts,
            } => {
                out.extend_from_slice(&2u16.to_le_bytes());
                out.extend_from_slice(&[0; 2]);
                out.extend_from_slice(&policy_digest.0);
                out.extend_from_slice(&(counts.len() as u32).to_le_bytes());
                for c in counts {
                    out.extend_from_slice(&c.rule_id.to_le_bytes());
                    out.extend_from_slice(&[0; 4]);
                    out.extend_from_slice(&c.suppressed.to_le_bytes());
                }
            }
        }
    }

    /// The entry bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }

    fn parse_body(body: &[u8]) -> Result<Self, EntryError> {
        let k = EntryKind::Filter;
        let mut r = Reader::new(body);
        let short = || malformed(k, "short");
        let form = r.u16().ok_or_else(short)?;
        if r.u16().ok_or_else(short)? != 0 {
            return Err(malformed(k, "reserved bytes not zero"));
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(r.bytes(32).ok_or_else(short)?);
        let policy_digest = Digest(digest);
        let n = r.u32().ok_or_else(short)? as usize;
        let f = match form {
            1 => {
                if n > MAX_POLICY_LEN {
                    return Err(malformed(k, "policy text too long"));
                }
                let text = std::str::from_utf8(r.bytes(n).ok_or_else(short)?)
                    .map_err(|_| malformed(k, "policy text is not UTF-8"))?;
                if blake3::hash(text.as_bytes()).as_bytes() != &policy_digest.0 {
                    return Err(malformed(k, "policy digest does not match the text"));
                }
                Filter::Policy {
                    policy_digest,
                    text: text.to_owned(),
                }
            }
            2 => {
                if n > MAX_FILTER_RULES {
                    return Err(malformed(k, "too many rules"));
                }
                let mut counts = Vec::with_capacity(n);
                for _ in 0..n {
                    let rule_id = r.u32().ok_or_else(short)?;
                    if r.u32().ok_or_else(short)? != 0 {
                        return Err(malformed(k, "reserved bytes not zero"));
                    }
                    counts.push(FilterCount {
                        rule_id,
                        suppressed: r.u64().ok_or_else(short)?,
                    });
                }
                Filter::Counts {
                    policy_digest,
                    counts,
                }
            }
            _ => return Err(malformed(k, "unknown form")),
        };
        finish(k, &r)?;
        Ok(f)
    }
}

#[cfg(test)]
mod filter_tests {
    use super::*;

    #[test]
    fn filter_entries_round_trip_and_reject_lies() {
        let policy = Filter::policy("[rules]\n8 = \"exclude /tmp/skip\"\n");
        let bytes = policy.encode();
        assert_eq!(Entry::parse(&bytes).unwrap(), Entry::Filter(policy.clone()));
        let Filter::Policy { policy_digest, .. } = policy else {
            unreachable!()
        };
        let counts = Filter::Counts {
            policy_digest,
            counts: vec![FilterCount {
                rule_id: 8,
                suppressed: 1000,
            }],
        };
        assert_eq!(
            Entry::parse(&counts.encode()).unwrap(),
            Entry::Filter(counts)
        );
        // A text that does not match its digest is refused.
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            Entry::parse(&bad),
            Err(EntryError::Malformed { .. })
        ));
        // Truncated bodies never panic and never parse.
        for cut in 4..bytes.len() {
            assert!(Entry::parse(&bytes[..cut]).is_err());
        }
    }
}

/// ENFORCEMENT body: `form (u16) || 2 zero bytes || len (u32) || len bytes of UTF-8 JSON`, one
/// object whose members depend on the form (docs/FORMAT.md, docs/ENFORCEMENT.md):
/// 1 MODE (the mode in force from here on), 2 POLICY (allowlist and deny rules, with
/// `policy_digest` = BLAKE3 of `text`), 3 DECISION (one denial or dry-run "would deny"),
/// 4 SUMMARY (kernel decision counters by reason, including decisions whose own record was lost).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Enforcement {
    pub form: EnforcementForm,
    /// The form's JSON object, as recorded.
    pub json: String,
}

/// The ENFORCEMENT forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnforcementForm {
    Mode = 1,
    Policy = 2,
    Decision = 3,
    Summary = 4,
}

/// Longest JSON object in an ENFORCEMENT entry.
pub const MAX_ENFORCEMENT_JSON: usize = 64 * 1024;

impl Enforcement {
    /// Appends the entry bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_header(out, EntryKind::Enforcement);
        out.extend_from_slice(&(self.form as u16).to_le_bytes());
        out.extend_from_slice(&[0; 2]);
        out.extend_from_slice(&(self.json.len() as u32).to_le_bytes());
        out.extend_from_slice(self.json.as_bytes());
    }

    /// The entry bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }

    fn parse_body(body: &[u8]) -> Result<Self, EntryError> {
        let k = EntryKind::Enforcement;
        let mut r = Reader::new(body);
        let short = || malformed(k, "short");
        let form = match r.u16().ok_or_else(short)? {
            1 => EnforcementForm::Mode,
            2 => EnforcementForm::Policy,
            3 => EnforcementForm::Decision,
            4 => EnforcementForm::Summary,
            _ => return Err(malformed(k, "unknown form")),
        };
        if r.u16().ok_or_else(short)? != 0 {
            return Err(malformed(k, "reserved bytes not zero"));
        }
        let n = r.u32().ok_or_else(short)? as usize;
        if n > MAX_ENFORCEMENT_JSON {
            return Err(malformed(k, "JSON too long"));
        }
        let json = std::str::from_utf8(r.bytes(n).ok_or_else(short)?)
            .map_err(|_| malformed(k, "JSON is not UTF-8"))?;
        finish(k, &r)?;
        Ok(Enforcement {
            form,
            json: json.to_owned(),
        })
    }
}

#[cfg(test)]
mod enforcement_tests {
    use super::*;

    #[test]
    fn enforcement_entries_round_trip_and_reject_garbage() {
        let e = Enforcement {
            form: EnforcementForm::Decision,
            json: r#"{"action":"deny","rule_id":100}"#.into(),
        };
        let bytes = e.encode();
        assert_eq!(EntryKind::Enforcement.code(), 12);
        assert_eq!(Entry::parse(&bytes).unwrap(), Entry::Enforcement(e));
        for cut in 4..bytes.len() {
            assert!(Entry::parse(&bytes[..cut]).is_err());
        }
        let mut bad_form = bytes.clone();
        bad_form[4] = 9;
        assert!(Entry::parse(&bad_form).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(Entry::parse(&trailing).is_err());
    }
}

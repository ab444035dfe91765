//! The offline verifier.
//!
//! Verification has two passes. [`Verifier::add_file`] checks each segment file on its own:
//! framing, key id, signature, every chain link and the Merkle root, and decodes the control
//! entries. [`Verifier::finish`] then walks the validly signed headers in segment-number order
//! and checks what no single file can show: missing, swapped and replayed segments, chain
//! continuity between neighbours, which key is in effect (following KEY_ROTATION entries),
//! and truncation against a head the user remembered.
//!
//! Findings name exact segment and entry ranges. A file whose header is damaged is reported
//! under the number in its name and does not make its neighbours look missing; a segment
//! whose entries were altered but whose signed header is intact still anchors its neighbours.
//! Trust comes only from keys the caller supplies; without them the report says that only
//! internal consistency was checked.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::digest::{genesis_link, leaf_hash, link_hash, Digest, HostId};
use crate::entry::{
    Dropped, Entry, EntryKind, KeyRotation, Loss, Retention, RetentionReason, StartReason,
};
use crate::keys::{KeyId, PublicKey};
use crate::merkle;
use crate::segment::{SegmentHeader, SegmentView};
use crate::store::{SegmentStore, StoreError};
use crate::trust::{Accepted, KeyTracker, Refusal, Retired, RotationRefusal, Signed};

/// What a finding says. The names are part of the CLI's JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FindingKind {
    /// Stored bytes differ from what was sealed (entries vs. header, or an unparsable file).
    Modified,
    /// A signature (segment or key rotation) does not verify.
    BadSignature,
    /// A segment is signed by a key that is neither trusted nor reached by a valid rotation.
    UnknownKey,
    /// Two validly signed segments that do not chain together (a rewritten or split log).
    Fork,
    /// A validly signed entry whose body does not decode.
    Malformed,
    /// A segment stored under another segment's name.
    Reordered,
    /// A second copy of an already present segment.
    Replayed,
    /// Segment numbers that are absent.
    MissingSegments,
    /// The log ends before a head the user supplied.
    Truncated,
    /// A LOSS entry that no kernel counter explains.
    UnexplainedGap,
    /// A LOSS entry the kernel's counters explain.
    DeclaredLoss,
    /// Fewer witnesses than the quorum cosigned a checkpoint this log covers
    /// (docs/FORMAT.md §12.5).
    Unwitnessed,
    /// An agent's log is behind what a collector already holds (docs/COLLECTOR.md).
    Rollback,
    /// A TAMPER entry: the agent found its capture policy in the kernel changed behind its
    /// back (what was captured around then cannot be trusted to be complete).
    Tamper,
}

/// How bad a finding is, in the order the CLI's exit codes rank them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing found.
    Ok,
    /// Only losses the agent declared and the kernel's counters explain.
    DeclaredLossOnly,
    /// Something is missing (segments, the tail, unexplained gaps), nothing was altered.
    CompletenessFailure,
    /// Something was altered, forged or re-signed.
    IntegrityFailure,
}

impl FindingKind {
    /// Every kind, so counters (collector metrics) can start at zero for each.
    pub const ALL: [FindingKind; 14] = {
        use FindingKind::*;
        [
            Modified,
            BadSignature,
            UnknownKey,
            Fork,
            Malformed,
            Reordered,
            Replayed,
            MissingSegments,
            Truncated,
            UnexplainedGap,
            DeclaredLoss,
            Unwitnessed,
            Rollback,
            Tamper,
        ]
    };

    /// The outcome class this finding puts a report in.
    pub fn outcome(self) -> Outcome {
        use FindingKind::*;
        match self {
            Modified | BadSignature | UnknownKey | Fork | Malformed | Reordered | Replayed
            | Tamper => Outcome::IntegrityFailure,
            MissingSegments | Truncated | UnexplainedGap | Unwitnessed | Rollback => {
                Outcome::CompletenessFailure
            }
            DeclaredLoss => Outcome::DeclaredLossOnly,
        }
    }

    /// The upper-case name used in reports.
    pub fn name(self) -> &'static str {
        use FindingKind::*;
        match self {
            Modified => "MODIFIED",
            BadSignature => "BAD_SIGNATURE",
            UnknownKey => "UNKNOWN_KEY",
            Fork => "FORK",
            Malformed => "MALFORMED",
            Reordered => "REORDERED",
            Replayed => "REPLAYED",
            MissingSegments => "MISSING_SEGMENTS",
            Truncated => "TRUNCATED",
            UnexplainedGap => "UNEXPLAINED_GAP",
            DeclaredLoss => "DECLARED_LOSS",
            Unwitnessed => "UNWITNESSED",
            Rollback => "ROLLBACK",
            Tamper => "TAMPER",
        }
    }
}

/// An inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Range {
    /// First element.
    pub first: u64,
    /// Last element (inclusive).
    pub last: u64,
}

impl Range {
    /// `first..=last`.
    pub fn new(first: u64, last: u64) -> Self {
        Range { first, last }
    }

    /// A single element.
    pub fn one(x: u64) -> Self {
        Range { first: x, last: x }
    }

    /// Whether `x` is inside.
    pub fn contains(&self, x: u64) -> bool {
        self.first <= x && x <= self.last
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}..={}", self.first, self.last)
        }
    }
}

/// One problem, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// What.
    pub kind: FindingKind,
    /// Segment numbers concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments: Option<Range>,
    /// Chain indices concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<Range>,
    /// The file concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// For losses: the CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    /// For losses: the missing per-CPU sequence numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequences: Option<Range>,
    /// Human explanation.
    pub detail: String,
}

impl Finding {
    fn new(kind: FindingKind, detail: impl Into<String>) -> Self {
        Finding {
            kind,
            segments: None,
            entries: None,
            file: None,
            cpu: None,
            sequences: None,
            detail: detail.into(),
        }
    }
    fn segs(mut self, r: Range) -> Self {
        self.segments = Some(r);
        self
    }
    fn seg(self, n: u64) -> Self {
        self.segs(Range::one(n))
    }
    fn ents(mut self, r: Option<Range>) -> Self {
        self.entries = r;
        self
    }
    fn file(mut self, f: &str) -> Self {
        self.file = Some(f.to_owned());
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind.name())?;
        if let Some(s) = self.segments {
            write!(
                f,
                " segment{} {s}",
                if s.first == s.last { "" } else { "s" }
            )?;
        }
        if let Some(e) = self.entries {
            write!(
                f,
                " entr{} {e}",
                if e.first == e.last { "y" } else { "ies" }
            )?;
        }
        if let (Some(cpu), Some(seq)) = (self.cpu, self.sequences) {
            write!(f, " cpu {cpu} seq {seq}")?;
        }
        write!(f, ": {}", self.detail)?;
        if let Some(file) = &self.file {
            write!(f, " [{file}]")?;
        }
        Ok(())
    }
}

/// A head the user recorded earlier; the log must reach it and agree with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KnownHead {
    /// `segment:<number>:<header digest hex>`.
    Segment {
        /// Segment number.
        number: u64,
        /// Its header digest.
        digest: Digest,
    },
    /// `entry:<index>:<link hex>`.
    Entry {
        /// Chain index.
        index: u64,
        /// The link of that entry.
        link: Digest,
    },
}

/// A `--head` argument that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected segment:<number>:<64 hex> or entry:<index>:<64 hex>")]
pub struct KnownHeadSyntax;

impl FromStr for KnownHead {
    type Err = KnownHeadSyntax;
    fn from_str(s: &str) -> Result<Self, KnownHeadSyntax> {
        let mut p = s.trim().split(':');
        let (Some(kind), Some(n), Some(d), None) = (p.next(), p.next(), p.next(), p.next()) else {
            return Err(KnownHeadSyntax);
        };
        let n: u64 = n.parse().map_err(|_| KnownHeadSyntax)?;
        let d = Digest::from_hex(d).map_err(|_| KnownHeadSyntax)?;
        match kind {
            "segment" => Ok(KnownHead::Segment {
                number: n,
                digest: d,
            }),
            "entry" => Ok(KnownHead::Entry { index: n, link: d }),
            _ => Err(KnownHeadSyntax),
        }
    }
}

impl fmt::Display for KnownHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KnownHead::Segment { number, digest } => write!(f, "segment:{number}:{digest}"),
            KnownHead::Entry { index, link } => write!(f, "entry:{index}:{link}"),
        }
    }
}

/// What the caller trusts and remembers.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Keys trusted to sign segments. Empty: only internal consistency is checked.
    pub trusted_keys: Vec<PublicKey>,
    /// A head recorded earlier (by a collector or the user), for truncation detection.
    pub known_head: Option<KnownHead>,
}

/// Where the verified log ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LogHead {
    /// Last segment number.
    pub segment: u64,
    /// Its header digest.
    pub segment_digest: Digest,
    /// Number of entries in the chain (index of the next one).
    pub next_index: u64,
    /// Link of the last entry.
    pub chain_head: Digest,
}

impl LogHead {
    /// The `--head` forms a user can record.
    pub fn as_known_heads(&self) -> [KnownHead; 2] {
        [
            KnownHead::Segment {
                number: self.segment,
                digest: self.segment_digest,
            },
            KnownHead::Entry {
                index: self.next_index.saturating_sub(1),
                link: self.chain_head,
            },
        ]
    }
}

/// Which trust the report rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustMode {
    /// Keys were supplied; every accepted segment is signed by one of them or by a key they
    /// rotated to.
    Anchored,
    /// No keys were supplied: a log re-signed by anyone would pass.
    InternalConsistencyOnly,
}

/// A key and the segments it signed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyUse {
    /// Key id.
    pub key_id: KeyId,
    /// The key.
    pub public_key: PublicKey,
    /// Segments it signed (first..=last, possibly with others in between).
    pub segments: Range,
}

/// The verifier's verdict.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The overall class.
    pub outcome: Outcome,
    /// Trust basis.
    pub trust: TrustMode,
    /// The chain's host (from the first validly signed segment).
    pub host_id: Option<HostId>,
    /// Segment files examined.
    pub files: u64,
    /// Segments whose signature and contents check out.
    pub segments_ok: u64,
    /// Entries in those segments.
    pub entries_ok: u64,
    /// Entries per kind name.
    pub entry_kinds: BTreeMap<String, u64>,
    /// Signing keys seen, in order of first use.
    pub keys: Vec<KeyUse>,
    /// Where the log ends.
    pub head: Option<LogHead>,
    /// The pruned prefix, when a RETENTION entry declares the oldest segments deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSummary>,
    /// Everything wrong, ordered by segment.
    pub findings: Vec<Finding>,
    /// Things the reader should know that are not findings.
    pub notices: Vec<String>,
}

/// What the verifier accepted as deliberately deleted: the newest honoured RETENTION entry and
/// the segment numbers that are absent because of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RetentionSummary {
    /// Chain index of the newest honoured RETENTION entry (the one declaring the most).
    pub declared_at: u64,
    /// The segment holding it.
    pub declared_in_segment: u64,
    /// Why the agent deleted.
    pub reason: RetentionReason,
    /// Segments the entry declares deleted: `0..=last_deleted_segment`.
    pub declared_segments: Range,
    /// Entries deleted with them, `0..end_index` (absent when `end_index` is 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub declared_entries: Option<Range>,
    /// Runs of declared segment numbers that are absent (normally one run, the whole prefix).
    pub absent: Vec<Range>,
    /// Declared segment numbers still present (the agent was interrupted mid-deletion).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub still_present: Option<Range>,
}

/// Errors that stop verification altogether (as opposed to findings).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The directory could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What pass one keeps of a segment.
struct Checked {
    file: String,
    name_number: Option<u64>,
    header: SegmentHeader,
    digest: Digest,
    content_ok: bool,
    rotations: Vec<(u64, KeyRotation)>,
    losses: Vec<(u64, Loss)>,
    drops: Vec<(u64, Dropped)>,
    retentions: Vec<(u64, Retention)>,
    /// Identity keys of valid ENROLMENT entries certifying this segment's own key.
    enrolled_by: Vec<PublicKey>,
    head_link: Option<Digest>,
}

/// Incremental verifier: feed every file, then [`Verifier::finish`].
pub struct Verifier {
    opts: VerifyOptions,
    checked: Vec<Checked>,
    /// Name numbers of files whose header cannot be trusted.
    broken: BTreeSet<u64>,
    findings: Vec<Finding>,
    notices: Vec<String>,
    files: u64,
    entries_ok: u64,
    kinds: BTreeMap<String, u64>,
    leaves: Vec<Digest>,
}

impl Verifier {
    /// A verifier with these options.
    pub fn new(opts: VerifyOptions) -> Self {
        Verifier {
            opts,
            checked: Vec::new(),
            broken: BTreeSet::new(),
            findings: Vec::new(),
            notices: Vec::new(),
            files: 0,
            entries_ok: 0,
            kinds: BTreeMap::new(),
            leaves: Vec::new(),
        }
    }

    /// Adds a notice to the report.
    pub fn notice(&mut self, n: impl Into<String>) {
        self.notices.push(n.into());
    }

    /// Records a file that could not be read as a segment at all (reported as MODIFIED).
    pub fn add_unreadable(&mut self, file: &str, name_number: Option<u64>, why: &str) {
        self.files += 1;
        self.broken.extend(name_number);
        let mut f = Finding::new(
            FindingKind::Modified,
            format!("segment file unusable: {why}"),
        )
        .file(file);
        f.segments = name_number.map(Range::one);
        self.findings.push(f);
    }

    /// Pass one over one file. `name_number` is the number in the file's name, if it has one.
    pub fn add_file(&mut self, file: &str, name_number: Option<u64>, bytes: &[u8]) {
        self.files += 1;
        let at = |f: Finding| match name_number {
            Some(n) => f.seg(n).file(file),
            None => f.file(file),
        };
        let view = match SegmentView::parse(bytes) {
            Ok(v) => v,
            Err(e) => {
                self.broken.extend(name_number);
                self.findings.push(at(Finding::new(
                    FindingKind::Modified,
                    format!("segment file does not parse: {e}"),
                )));
                return;
            }
        };
        let h = view.header;
        if let Err(e) = view.check_signature() {
            self.broken.extend(name_number);
            self.findings.push(at(Finding::new(
                FindingKind::BadSignature,
                format!("segment header: {e}"),
            )
            .ents(h.index_range().map(|(a, b)| Range::new(a, b)))));
            return;
        }
        // From here the header is authentic (under its own key); check the entries.
        let mut link = h.start_link;
        let mut rotations = Vec::new();
        let mut losses = Vec::new();
        let mut drops = Vec::new();
        let mut retentions = Vec::new();
        let mut enrolled_by = Vec::new();
        let mut tampers = Vec::new();
        let mut head_link = None;
        let mut malformed = Vec::new();
        let mut kinds: Vec<(String, u64)> = Vec::new();
        let want_index = match self.opts.known_head {
            Some(KnownHead::Entry { index, .. }) => Some(index),
            _ => None,
        };
        self.leaves.clear();
        for (i, e) in view.entries().enumerate() {
            let index = h.first_index + i as u64;
            let prev_link = link;
            let leaf = leaf_hash(e);
            link = link_hash(&link, index, &leaf);
            self.leaves.push(leaf);
            if want_index == Some(index) {
                head_link = Some(link);
            }
            match Entry::parse(e) {
                Ok(Entry::Event(_)) => bump(&mut kinds, "EVENT"),
                Ok(Entry::KeyRotation(r)) => {
                    bump(&mut kinds, "KEY_ROTATION");
                    rotations.push((index, r));
                }
                Ok(Entry::Loss(l)) => {
                    bump(&mut kinds, "LOSS");
                    losses.push((index, l));
                }
                Ok(Entry::Filter(_)) => bump(&mut kinds, "FILTER"),
                Ok(Entry::Enforcement(_)) => bump(&mut kinds, "ENFORCEMENT"),
                Ok(Entry::Dropped(d)) => {
                    bump(&mut kinds, "DROPPED");
                    drops.push((index, d));
                }
                Ok(Entry::Retention(r)) => {
                    bump(&mut kinds, "RETENTION");
                    // The deleted segments must all precede the segment recording the
                    // deletion, and so must their entries.
                    if r.last_deleted_segment >= h.segment_number || r.end_index > h.first_index {
                        malformed.push((
                            index,
                            format!(
                                "RETENTION declares segments 0..={} (entries 0..{}) deleted, which \
                                 does not all precede its own segment {} (first index {})",
                                r.last_deleted_segment,
                                r.end_index,
                                h.segment_number,
                                h.first_index
                            ),
                        ));
                    } else {
                        retentions.push((index, r));
                    }
                }
                Ok(Entry::AgentStart(s)) => {
                    bump(&mut kinds, "AGENT_START");
                    let d = s.last_durable;
                    let claim_ok = match d.next_index.cmp(&index) {
                        std::cmp::Ordering::Equal => d.head == prev_link,
                        std::cmp::Ordering::Less => true,
                        std::cmp::Ordering::Greater => false,
                    } && (s.reason != StartReason::FirstStart
                        || (d.next_index == 0 && index == 0));
                    if !claim_ok {
                        malformed.push((
                            index,
                            format!(
                                "AGENT_START ({:?}) claims last durable position {} / {} which the chain does not have",
                                s.reason, d.next_index, d.head
                            ),
                        ));
                    }
                }
                Ok(Entry::Enrolment(en)) => {
                    bump(&mut kinds, "ENROLMENT");
                    if en.epoch_public == h.public_key && en.verify(&h.host_id) {
                        enrolled_by.push(en.identity_public);
                    }
                }
                Ok(Entry::Tamper(t)) => {
                    bump(&mut kinds, "TAMPER");
                    tampers.push((index, t));
                }
                Ok(Entry::AgentStop(_)) => bump(&mut kinds, "AGENT_STOP"),
                Ok(Entry::Heartbeat(_)) => bump(&mut kinds, "HEARTBEAT"),
                Ok(Entry::Unknown { kind, version, .. }) => {
                    bump(&mut kinds, &format!("UNKNOWN({kind}v{version})"))
                }
                Err(err) => malformed.push((index, err.to_string())),
            }
        }
        let root = merkle::root(&self.leaves);
        let head_ok = link == h.chain_head;
        let root_ok = root == h.merkle_root;
        let content_ok = head_ok && root_ok;
        if !content_ok {
            self.findings.push(
                at(Finding::new(
                    FindingKind::Modified,
                    format!(
                        "entries do not match the signed header (chain head {}, Merkle root {})",
                        if head_ok { "matches" } else { "differs" },
                        if root_ok { "matches" } else { "differs" }
                    ),
                ))
                .seg(h.segment_number)
                .ents(h.index_range().map(|(a, b)| Range::new(a, b))),
            );
        } else {
            self.entries_ok += h.entry_count;
            for (k, n) in kinds {
                *self.kinds.entry(k).or_default() += n;
            }
            for (index, what) in malformed {
                self.findings.push(
                    at(Finding::new(FindingKind::Malformed, what))
                        .seg(h.segment_number)
                        .ents(Some(Range::one(index))),
                );
            }
            for (index, t) in tampers {
                let what = format!(
                    "the agent found its capture state changed ({:?}) at {} ns, policy {}: {}",
                    t.what, t.noticed_ns, t.policy_digest, t.detail
                );
                self.findings.push(
                    at(Finding::new(FindingKind::Tamper, what))
                        .seg(h.segment_number)
                        .ents(Some(Range::one(index))),
                );
            }
        }
        self.checked.push(Checked {
            file: file.to_owned(),
            name_number,
            header: h,
            digest: h.digest(),
            content_ok,
            rotations: if content_ok { rotations } else { Vec::new() },
            losses: if content_ok { losses } else { Vec::new() },
            drops: if content_ok { drops } else { Vec::new() },
            retentions: if content_ok { retentions } else { Vec::new() },
            enrolled_by: if content_ok { enrolled_by } else { Vec::new() },
            head_link: if content_ok { head_link } else { None },
        });
    }

    /// Pass two; produces the report.
    pub fn finish(mut self) -> Report {
        let trust = if self.opts.trusted_keys.is_empty() {
            self.notices.push(
                "NO TRUSTED KEYS SUPPLIED: only the log's internal consistency was checked; a log \
                 re-signed by anyone would pass. Pass --key or --trusted-keys to anchor trust."
                    .into(),
            );
            TrustMode::InternalConsistencyOnly
        } else {
            TrustMode::Anchored
        };

        // Order by signed segment number; a file whose name matches comes before a copy.
        let mut checked = std::mem::take(&mut self.checked);
        checked.sort_by(|a, b| {
            let misnamed = |c: &Checked| c.name_number != Some(c.header.segment_number);
            (a.header.segment_number, misnamed(a), &a.file).cmp(&(
                b.header.segment_number,
                misnamed(b),
                &b.file,
            ))
        });
        let mut chain: Vec<&Checked> = Vec::new();
        for c in &checked {
            let n = c.header.segment_number;
            if let Some(first) = chain.last().filter(|p| p.header.segment_number == n) {
                let f = if first.digest == c.digest {
                    Finding::new(
                        FindingKind::Replayed,
                        format!("a second copy of segment {n} (original: {})", first.file),
                    )
                } else {
                    Finding::new(
                        FindingKind::Fork,
                        format!(
                            "two different signed segments claim number {n} (other: {})",
                            first.file
                        ),
                    )
                };
                self.findings
                    .push(f.seg(n).file(&c.file).ents(range_of(&c.header)));
                continue;
            }
            if c.name_number != Some(n) {
                let named = c
                    .name_number
                    .map_or("a non-canonical name".to_string(), |m| {
                        format!("the name of segment {m}")
                    });
                self.findings.push(
                    Finding::new(
                        FindingKind::Reordered,
                        format!("segment {n} is stored under {named}"),
                    )
                    .seg(n)
                    .file(&c.file)
                    .ents(range_of(&c.header)),
                );
            }
            chain.push(c);
        }

        let host = chain.first().map(|c| c.header.host_id);
        let mut tracker = KeyTracker::new(&self.opts.trusted_keys);
        let mut keys: Vec<KeyUse> = Vec::new();
        let mut prev: Option<&Checked> = None;
        let mut expected = 0u64;
        // Absent segment runs (from, to, end index before, first index after); reported once
        // the RETENTION entries of every accepted segment are known.
        let mut gaps: Vec<(u64, u64, u64, u64)> = Vec::new();
        // RETENTION entries in accepted, intact segments: (segment, index, entry).
        let mut retentions: Vec<(u64, u64, Retention)> = Vec::new();
        for c in &chain {
            let h = &c.header;
            let n = h.segment_number;
            let after_gap = n > expected;
            if n > expected {
                let before = prev.map_or(0, |p| p.header.end_index());
                gaps.push((expected, n - 1, before, h.first_index));
            }
            if Some(h.host_id) != host {
                self.findings.push(
                    Finding::new(
                        FindingKind::Fork,
                        format!(
                            "segment belongs to host {}, the log to {}",
                            h.host_id,
                            host.unwrap_or_default()
                        ),
                    )
                    .seg(n)
                    .file(&c.file),
                );
            }
            match prev {
                Some(p) if p.header.segment_number + 1 == n => {
                    let mut why = Vec::new();
                    if h.prev_header_digest != p.digest {
                        why.push("previous-header digest");
                    }
                    if h.first_index != p.header.end_index() {
                        why.push("first index");
                    }
                    if h.start_link != p.header.chain_head {
                        why.push("start link");
                    }
                    if !why.is_empty() {
                        self.findings.push(
                            Finding::new(
                                FindingKind::Fork,
                                format!(
                                    "segment {n} does not continue segment {} ({} differ)",
                                    n - 1,
                                    why.join(", ")
                                ),
                            )
                            .segs(Range::new(n - 1, n))
                            .file(&c.file),
                        );
                    }
                }
                Some(p) if h.first_index < p.header.end_index() => {
                    self.findings.push(
                        Finding::new(
                            FindingKind::Fork,
                            format!(
                                "segment {n} starts at index {} but segment {} already reached {}",
                                h.first_index,
                                p.header.segment_number,
                                p.header.end_index()
                            ),
                        )
                        .segs(Range::new(p.header.segment_number, n))
                        .file(&c.file),
                    );
                }
                _ => {}
            }
            if let Some(p) = prev.filter(|p| p.header.seal.is_some() && h.seal.is_none()) {
                self.findings.push(
                    Finding::new(
                        FindingKind::Fork,
                        format!(
                            "segment {n} is format version 1 after format version 2 segment {}: \
                             a forward-secure chain never goes back to a long-lived key",
                            p.header.segment_number
                        ),
                    )
                    .seg(n)
                    .file(&c.file),
                );
            }
            if n == 0
                && (h.first_index != 0
                    || h.prev_header_digest != Digest::ZERO
                    || h.start_link != genesis_link(&h.host_id))
            {
                self.findings.push(
                    Finding::new(
                        FindingKind::Fork,
                        "segment 0 does not start at the genesis of its host's chain",
                    )
                    .seg(0)
                    .file(&c.file),
                );
            }

            let accepted = self.judge_keys(&mut tracker, c, after_gap, &mut keys);
            if accepted {
                retentions.extend(c.retentions.iter().map(|(i, r)| (n, *i, *r)));
            }
            for (index, l) in &c.losses {
                let (kind, what) = if l.is_explained() {
                    (
                        FindingKind::DeclaredLoss,
                        format!(
                            "{} records lost, kernel drop counter rose by {}",
                            l.missing(),
                            l.counter_delta
                        ),
                    )
                } else {
                    (
                        FindingKind::UnexplainedGap,
                        format!(
                            "{} records missing, kernel drop counter rose by only {}{}",
                            l.missing(),
                            l.counter_delta,
                            if l.flags & crate::entry::LOSS_FLAG_UNEXPLAINED != 0 {
                                " (agent marked it UNEXPLAINED)"
                            } else {
                                ""
                            }
                        ),
                    )
                };
                let mut f = Finding::new(kind, what)
                    .seg(n)
                    .ents(Some(Range::one(*index)))
                    .file(&c.file);
                f.cpu = Some(l.cpu);
                f.sequences = Some(Range::new(l.first_seq, l.last_seq));
                self.findings.push(f);
            }
            for (index, d) in &c.drops {
                let what = format!(
                    "the agent could not record {} entries ({:?}) between {} and {} ns",
                    d.count, d.reason, d.first_time_ns, d.last_time_ns
                );
                self.findings.push(
                    Finding::new(FindingKind::DeclaredLoss, what)
                        .seg(n)
                        .ents(Some(Range::one(*index)))
                        .file(&c.file),
                );
            }
            prev = Some(c);
            expected = n + 1;
        }
        let summary = self.apply_retention(&chain, &retentions, &gaps);
        let declared_up_to = summary.as_ref().map(|s| s.declared_segments.last);
        for (from, to, lo, hi) in gaps {
            match declared_up_to {
                Some(k) if to <= k => {}
                Some(k) if from <= k => {
                    // Part of the run is declared; the rest is missing from the end of the
                    // declared range, whose end index the RETENTION entry states.
                    let end = summary
                        .as_ref()
                        .map_or(lo, |s| s.declared_entries.map_or(0, |e| e.last + 1));
                    self.report_missing(k + 1, to, end, Some(hi));
                }
                _ => self.report_missing(from, to, lo, Some(hi)),
            }
        }
        // Broken files beyond the last valid segment are not "missing" either.
        if let Some(&last_broken) = self.broken.iter().next_back() {
            expected = expected.max(last_broken + 1);
        }

        let last = chain.last().copied();
        let head = last.map(|c| LogHead {
            segment: c.header.segment_number,
            segment_digest: c.digest,
            next_index: c.header.end_index(),
            chain_head: c.header.chain_head,
        });
        self.check_known_head(&chain, expected, last);
        if chain.is_empty() && self.broken.is_empty() && self.opts.known_head.is_none() {
            self.findings.push(Finding::new(
                FindingKind::MissingSegments,
                "the directory holds no segments at all",
            ));
        }
        if self.opts.known_head.is_none() {
            if let Some(h) = head {
                self.notices.push(format!(
                    "Tail truncation can only be detected against a known head; record one of `--head {}` or `--head {}` and pass it next time.",
                    h.as_known_heads()[0],
                    h.as_known_heads()[1]
                ));
            }
        }
        self.findings.sort_by_key(|f| {
            (
                f.segments.map(|s| s.first),
                f.kind,
                f.entries.map(|e| e.first),
            )
        });
        let outcome = self
            .findings
            .iter()
            .map(|f| f.kind.outcome())
            .max()
            .unwrap_or(Outcome::Ok);
        Report {
            outcome,
            trust,
            host_id: host,
            files: self.files,
            segments_ok: checked.iter().filter(|c| c.content_ok).count() as u64,
            entries_ok: self.entries_ok,
            entry_kinds: self.kinds,
            keys,
            head,
            retention: summary,
            findings: self.findings,
            notices: self.notices,
        }
    }

    /// Judges the key of segment `c` and its KEY_ROTATION entries (FORMAT.md §9.2 "Keys"),
    /// reporting UNKNOWN_KEY or BAD_SIGNATURE; returns whether the segment is accepted.
    fn judge_keys(
        &mut self,
        tracker: &mut KeyTracker,
        c: &Checked,
        after_gap: bool,
        keys: &mut Vec<KeyUse>,
    ) -> bool {
        let h = &c.header;
        let n = h.segment_number;
        let k = h.public_key;
        let signed = Signed {
            segment: n,
            key: k,
            after_gap,
            next: h.seal.map(|s| s.next_public_key),
            enrolled_by: &c.enrolled_by,
        };
        let accepted = match tracker.accept(&signed) {
            Ok(how) => {
                // A forward-secure key chain is listed once, under its first key.
                let chained = h.seal.is_some() && how == Accepted::InEffect;
                let known = keys.iter().position(|u| u.public_key == k);
                match known.or(if chained {
                    keys.len().checked_sub(1)
                } else {
                    None
                }) {
                    Some(i) => keys[i].segments.last = n,
                    None => keys.push(KeyUse {
                        key_id: h.key_id,
                        public_key: k,
                        segments: Range::one(n),
                    }),
                }
                true
            }
            Err(refusal) => {
                let why = match refusal {
                    Refusal::Retired(Retired::Rotation(index)) => format!(
                        "a retired key: the KEY_ROTATION at entry {index} replaced it, and a \
                         retired key signs nothing after its rotation"
                    ),
                    Refusal::Retired(Retired::Used(s)) => {
                        format!("a one-time sealing key that already signed segment {s}")
                    }
                    Refusal::NotInEffect(in_effect) => format!(
                        "a trusted key, but key {} is in effect and no valid KEY_ROTATION \
                         introduced this one; a trusted key is only a starting anchor",
                        in_effect.key_id()
                    ),
                    Refusal::Unknown { in_effect: Some(_) } if h.seal.is_some() => {
                        "not the key the previous segment committed to, and no ENROLMENT by a \
                         trusted identity key certifies it"
                            .to_string()
                    }
                    Refusal::Unknown { in_effect: Some(_) } => "neither the key in effect nor a \
                        trusted key, and no valid KEY_ROTATION introduced it"
                        .to_string(),
                    Refusal::Unknown { in_effect: None } if n > 0 => "not one of the trusted \
                        keys; the log starts at this segment, so a KEY_ROTATION in a deleted \
                        earlier segment may have introduced it: trust the key in effect"
                        .to_string(),
                    Refusal::Unknown { in_effect: None } => {
                        "not one of the trusted keys".to_string()
                    }
                };
                self.findings.push(
                    Finding::new(
                        FindingKind::UnknownKey,
                        format!("signed by key {} ({why})", h.key_id),
                    )
                    .seg(n)
                    .file(&c.file)
                    .ents(range_of(h)),
                );
                false
            }
        };
        let mut first = true;
        for (index, rot) in &c.rotations {
            let signature_ok = rot.verify(&h.host_id, *index);
            let result = if h.seal.is_some() {
                Err(RotationRefusal::ForwardSecure)
            } else if accepted {
                tracker.rotate(
                    k,
                    rot.old_public,
                    rot.new_public,
                    *index,
                    signature_ok,
                    first,
                )
            } else if rot.old_public != k {
                Err(RotationRefusal::OldKeyNotSigner)
            } else if !signature_ok {
                Err(RotationRefusal::BadSignature)
            } else {
                // A valid rotation in a segment whose key is not accepted changes nothing; the
                // segment itself is already reported.
                Ok(())
            };
            let what = match result {
                Ok(()) => {
                    first = false;
                    continue;
                }
                Err(RotationRefusal::OldKeyNotSigner) => {
                    "its old key is not the key that signed the segment"
                }
                Err(RotationRefusal::BadSignature) => "the old key's signature does not verify",
                Err(RotationRefusal::SecondRotation) => {
                    "the segment already changed the key once (one KEY_ROTATION per segment)"
                }
                Err(RotationRefusal::NewKeyRetired) => "the new key was retired earlier",
                Err(RotationRefusal::ForwardSecure) => {
                    "format version 2 segments change keys by their header commitments, not by \
                     KEY_ROTATION"
                }
            };
            self.findings.push(
                Finding::new(
                    FindingKind::BadSignature,
                    format!(
                        "KEY_ROTATION to {} rejected: {what}",
                        rot.new_public.key_id()
                    ),
                )
                .seg(n)
                .ents(Some(Range::one(*index)))
                .file(&c.file),
            );
        }
        accepted
    }

    /// Checks honoured RETENTION entries (`(segment, index, entry)`, from accepted, intact
    /// segments) against the segments present on either side of the boundary they declare, and
    /// summarises what the newest of them excuses. `gaps` are the absent runs.
    fn apply_retention(
        &mut self,
        chain: &[&Checked],
        retentions: &[(u64, u64, Retention)],
        gaps: &[(u64, u64, u64, u64)],
    ) -> Option<RetentionSummary> {
        let lookup = |n: u64| {
            chain
                .binary_search_by_key(&n, |c| c.header.segment_number)
                .ok()
                .map(|i| chain[i])
        };
        for &(seg, index, r) in retentions {
            let k = r.last_deleted_segment;
            let what = format!(
                "RETENTION entry {index} (segment {seg}) declares segments 0..={k} deleted, \
                 ending at entry index {} with header digest {}",
                r.end_index, r.last_deleted_header_digest
            );
            // The first kept segment must continue exactly where the declaration says the
            // deleted prefix ended; failing that, the last deleted one if it is still there.
            let mismatch = if let Some(next) = k.checked_add(1).and_then(lookup) {
                let h = &next.header;
                let mut why = Vec::new();
                if h.prev_header_digest != r.last_deleted_header_digest {
                    why.push(format!(
                        "its previous-header digest is {}",
                        h.prev_header_digest
                    ));
                }
                if h.first_index != r.end_index {
                    why.push(format!("it starts at index {}", h.first_index));
                }
                (!why.is_empty()).then_some((next, k + 1, why))
            } else if let Some(last) = lookup(k) {
                let mut why = Vec::new();
                if last.digest != r.last_deleted_header_digest {
                    why.push(format!("its header digest is {}", last.digest));
                }
                if last.header.end_index() != r.end_index {
                    why.push(format!("it ends at index {}", last.header.end_index()));
                }
                (!why.is_empty()).then_some((last, k, why))
            } else {
                None
            };
            if let Some((c, n, why)) = mismatch {
                self.findings.push(
                    Finding::new(
                        FindingKind::Fork,
                        format!("segment {n} contradicts {what}: {}", why.join(", ")),
                    )
                    .seg(n)
                    .file(&c.file),
                );
            }
        }

        let &(seg, index, newest) = retentions
            .iter()
            .max_by_key(|(_, i, r)| (r.last_deleted_segment, *i))?;
        let k = newest.last_deleted_segment;
        let absent: Vec<Range> = gaps
            .iter()
            .filter(|g| g.0 <= k)
            .map(|g| Range::new(g.0, g.1.min(k)))
            .collect();
        let mut present = chain
            .iter()
            .map(|c| c.header.segment_number)
            .filter(|&n| n <= k);
        let still_present = present
            .next()
            .map(|first| Range::new(first, present.next_back().unwrap_or(first)));
        let declared_entries = newest
            .end_index
            .checked_sub(1)
            .map(|last| Range::new(0, last));
        let entries = match declared_entries {
            Some(e) => format!("entries {e}"),
            None => "no entries".to_string(),
        };
        let runs: Vec<String> = absent.iter().map(|r| r.to_string()).collect();
        if !runs.is_empty() {
            self.notices.push(format!(
                "Segment(s) {} were deleted by retention ({:?}): RETENTION entry {index} in \
                 segment {seg} declares segments 0..={k} ({entries}) deleted. They are not \
                 reported as missing; the verified log starts after them.",
                runs.join(", "),
                newest.reason
            ));
        }
        if let Some(p) = still_present {
            self.notices.push(format!(
                "Segment(s) {p} are declared deleted by RETENTION entry {index} but still \
                 present (the agent was interrupted while deleting); they were verified as usual."
            ));
        }
        Some(RetentionSummary {
            declared_at: index,
            declared_in_segment: seg,
            reason: newest.reason,
            declared_segments: Range::new(0, k),
            declared_entries,
            absent,
            still_present,
        })
    }

    /// Reports segment numbers `from..=to` that are absent, skipping numbers of broken files
    /// (those are reported as modified already).
    fn report_missing(&mut self, from: u64, to: u64, end_before: u64, first_after: Option<u64>) {
        let mut runs = Vec::new();
        let mut start = None;
        for n in from..=to {
            if self.broken.contains(&n) {
                if let Some(s) = start.take() {
                    runs.push((s, n - 1));
                }
            } else if start.is_none() {
                start = Some(n);
            }
            if n - from > 1_000_000 && self.broken.range(n..=to).next().is_none() {
                // Do not walk astronomically long gaps number by number.
                runs.push((start.take().unwrap_or(n), to));
                break;
            }
        }
        if let Some(s) = start {
            runs.push((s, to));
        }
        for (a, b) in runs {
            let lo = if a == from { Some(end_before) } else { None };
            let hi = if b == to { first_after } else { None };
            let (entries, what) = match (lo, hi) {
                (Some(lo), Some(hi)) if hi > lo => (
                    Some(Range::new(lo, hi - 1)),
                    format!("{} segment(s) absent, {} entries lost", b - a + 1, hi - lo),
                ),
                (Some(_), Some(_)) => (
                    None,
                    format!("{} segment(s) absent (they held no entries)", b - a + 1),
                ),
                _ => (None, format!("{} segment(s) absent", b - a + 1)),
            };
            self.findings.push(
                Finding::new(FindingKind::MissingSegments, what)
                    .segs(Range::new(a, b))
                    .ents(entries),
            );
        }
    }

    fn check_known_head(&mut self, chain: &[&Checked], seen_up_to: u64, last: Option<&Checked>) {
        let Some(known) = self.opts.known_head else {
            return;
        };
        match known {
            KnownHead::Segment { number, digest } => {
                if number >= seen_up_to {
                    let ends = match last {
                        Some(l) => format!(
                            "at segment {} (entries up to index {})",
                            seen_up_to - 1,
                            l.header.end_index() as i128 - 1
                        ),
                        None => "before segment 0".to_string(),
                    };
                    self.findings.push(
                        Finding::new(
                            FindingKind::Truncated,
                            format!("the known head is segment {number}, the log ends {ends}"),
                        )
                        .segs(Range::new(seen_up_to, number)),
                    );
                } else if let Some(c) = chain.iter().find(|c| c.header.segment_number == number) {
                    if c.digest != digest {
                        self.findings.push(
                            Finding::new(FindingKind::Fork, format!("segment {number} has header digest {}, the known head says {digest}", c.digest))
                                .seg(number)
                                .file(&c.file),
                        );
                    }
                }
            }
            KnownHead::Entry { index, link } => {
                let end = last.map_or(0, |l| l.header.end_index());
                if index >= end {
                    let ends = if end == 0 {
                        "before entry 0".to_string()
                    } else {
                        format!("at entry {}", end - 1)
                    };
                    self.findings.push(
                        Finding::new(
                            FindingKind::Truncated,
                            format!("the known head is entry {index}, the log ends {ends}"),
                        )
                        .ents(Some(Range::new(end, index))),
                    );
                } else if let Some(c) = chain.iter().find(|c| {
                    c.header
                        .index_range()
                        .is_some_and(|(a, b)| a <= index && index <= b)
                }) {
                    if let Some(found) = c.head_link {
                        if found != link {
                            self.findings.push(
                                Finding::new(FindingKind::Fork, format!("entry {index} has link {found}, the known head says {link}"))
                                    .seg(c.header.segment_number)
                                    .ents(Some(Range::one(index)))
                                    .file(&c.file),
                            );
                        }
                    }
                }
            }
        }
    }
}

fn range_of(h: &SegmentHeader) -> Option<Range> {
    h.index_range().map(|(a, b)| Range::new(a, b))
}

fn bump(kinds: &mut Vec<(String, u64)>, k: &str) {
    match kinds.iter_mut().find(|(n, _)| n == k) {
        Some((_, c)) => *c += 1,
        None => kinds.push((k.to_owned(), 1)),
    }
}

/// Verifies the segment store at `dir` (the store root or its `segments` directory).
pub fn verify_dir(dir: &Path, opts: &VerifyOptions) -> Result<Report, VerifyError> {
    let store = SegmentStore::open(dir)?;
    let listing = store.list()?;
    let mut v = Verifier::new(opts.clone());
    for other in &listing.other {
        v.notice(format!(
            "ignored file that is not named like a segment: {}",
            other.display()
        ));
    }
    for (n, path) in &listing.segments {
        match store.read_path(path) {
            Ok(bytes) => v.add_file(&path.display().to_string(), Some(*n), &bytes),
            // An oversized file is hostile content, not an I/O failure: report it and go on.
            Err(StoreError::TooLarge(_)) => v.add_unreadable(
                &path.display().to_string(),
                Some(*n),
                "larger than any valid segment",
            ),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(v.finish())
}

impl EntryKind {
    /// The upper-case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::Event => "EVENT",
            EntryKind::Loss => "LOSS",
            EntryKind::AgentStart => "AGENT_START",
            EntryKind::AgentStop => "AGENT_STOP",
            EntryKind::Heartbeat => "HEARTBEAT",
            EntryKind::KeyRotation => "KEY_ROTATION",
            EntryKind::Filter => "FILTER",
            EntryKind::Retention => "RETENTION",
            EntryKind::Dropped => "DROPPED",
            EntryKind::Enrolment => "ENROLMENT",
            EntryKind::Tamper => "TAMPER",
            EntryKind::Enforcement => "ENFORCEMENT",
        }
    }
}

//! The writer side: one hash chain per host, cut into sealed segments.
//!
//! [`ChainWriter`] is the state machine the agent drives: `append` entries in consumption
//! order (one leaf hash over the entry bytes plus one 73-byte link hash, no allocation once
//! the segment buffer has grown), then `seal` every second or so, which computes the Merkle
//! root, signs the header and hands back a [`SealedSegment`] to store. Indices are never
//! reset: after a restart, [`ChainWriter::resume`] continues from the last sealed segment.
//! Entries appended but not sealed before a crash are not in the chain at all; the next
//! AGENT_START records the last durable position so the loss is visible.

use crate::digest::{genesis_link, leaf_hash, link_hash, Digest, HostId};
pub use crate::entry::ChainPosition;
use crate::entry::{Entry, Event, KeyRotation, StartReason, ENTRY_HEADER_LEN, MAX_ENTRY_LEN};
use crate::keys::SIGNATURE_LEN;
use crate::keys::{PublicKey, SecretKey};
use crate::merkle;
use crate::segment::{
    SealCommitment, SealedSegment, SegmentHeader, SegmentView, HEADER_LEN_V2, MAX_SEGMENT_LEN,
};
use crate::store::{SegmentStore, StoreError};

/// Why an entry was not appended. The writer's state is unchanged after an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// Entry shorter than its 4-byte kind/version header.
    #[error("entry is {0} bytes, shorter than 4")]
    TooShort(usize),
    /// Entry longer than [`MAX_ENTRY_LEN`].
    #[error("entry is {0} bytes, longer than the limit")]
    TooLong(usize),
    /// Entry kind 0 is never valid.
    #[error("entry kind 0 is invalid")]
    ZeroKind,
    /// The open segment would exceed the segment size limit; seal first.
    #[error("segment is full; seal it first")]
    SegmentFull,
    /// 2^64 entries have been written.
    #[error("entry index space exhausted")]
    IndexExhausted,
}

/// Why a writer could not resume from a store.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// Listing or reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The newest segment does not parse or does not check out; the agent must not extend it.
    #[error("segment {number}: {source}")]
    CorruptTail {
        /// Its number.
        number: u64,
        /// What is wrong.
        source: crate::segment::SegmentError,
    },
    /// The newest segment belongs to another host.
    #[error("segment {number} belongs to host {found}, not {expected}")]
    WrongHost {
        /// Its number.
        number: u64,
        /// Host id in the segment.
        found: HostId,
        /// Host id the caller expected.
        expected: HostId,
    },
}

/// Everything needed to continue a chain: what the next sealed segment will commit to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainState {
    /// The host.
    pub host_id: HostId,
    /// Index of the next entry.
    pub next_index: u64,
    /// Link of the last entry, or the genesis link.
    pub head: Digest,
    /// Number of the next segment.
    pub next_segment: u64,
    /// Digest of the last sealed header, or zero before segment 0.
    pub prev_header_digest: Digest,
}

impl ChainState {
    /// A new, empty chain.
    pub fn genesis(host_id: HostId) -> Self {
        ChainState {
            host_id,
            next_index: 0,
            head: genesis_link(&host_id),
            next_segment: 0,
            prev_header_digest: Digest::ZERO,
        }
    }

    /// The state right after `header` was sealed.
    pub fn after(header: &SegmentHeader) -> Self {
        ChainState {
            host_id: header.host_id,
            next_index: header.end_index(),
            head: header.chain_head,
            next_segment: header.segment_number.saturating_add(1),
            prev_header_digest: header.digest(),
        }
    }
}

/// Appends entries and seals segments. See the module docs.
#[derive(Debug)]
pub struct ChainWriter {
    /// State as of the last append.
    state: ChainState,
    /// Index of the first entry of the open segment.
    seg_first_index: u64,
    /// Link before the first entry of the open segment.
    seg_start_link: Digest,
    /// Framed entries of the open segment.
    entries: Vec<u8>,
    /// Leaf hashes of the open segment.
    leaves: Vec<Digest>,
}

impl ChainWriter {
    /// A writer for a brand-new chain.
    pub fn new(host_id: HostId) -> Self {
        Self::from_state(ChainState::genesis(host_id))
    }

    /// A writer that continues from `state` (for example [`ChainState::after`] the last
    /// sealed header).
    pub fn from_state(state: ChainState) -> Self {
        ChainWriter {
            state,
            seg_first_index: state.next_index,
            seg_start_link: state.head,
            entries: Vec::new(),
            leaves: Vec::new(),
        }
    }

    /// Continues the chain stored in `store`: from its highest-numbered segment, which must
    /// parse, carry a valid signature by its own key and match its entries. An empty store
    /// starts a new chain. The caller should then append an AGENT_START recording
    /// [`ChainWriter::position`] as the last durable position.
    pub fn resume(store: &SegmentStore, host_id: HostId) -> Result<Self, ResumeError> {
        let Some(number) = store.last_number()? else {
            return Ok(Self::new(host_id));
        };
        let bytes = store.read(number)?;
        let corrupt = |source| ResumeError::CorruptTail { number, source };
        let view = SegmentView::parse(&bytes).map_err(corrupt)?;
        view.check(&mut Vec::new()).map_err(corrupt)?;
        if view.header.host_id != host_id {
            return Err(ResumeError::WrongHost {
                number,
                found: view.header.host_id,
                expected: host_id,
            });
        }
        Ok(Self::from_state(ChainState::after(&view.header)))
    }

    /// Like [`ChainWriter::resume`], and also says which AGENT_START reason applies: a new
    /// chain is a first start; a chain whose last entry is AGENT_STOP was stopped cleanly
    /// (restart); anything else ended without AGENT_STOP (recovered after a crash). Empty
    /// heartbeat seals after the last entry are skipped, looking back at most 100,000 segments
    /// and never past a segment that is absent (deleted by retention). Only the newest
    /// segments are read, so a store whose oldest segments were deleted resumes as usual.
    pub fn resume_for_start(
        store: &SegmentStore,
        host_id: HostId,
    ) -> Result<(Self, StartReason), ResumeError> {
        let w = Self::resume(store, host_id)?;
        if w.state.next_index == 0 {
            return Ok((w, StartReason::FirstStart));
        }
        let mut n = w.state.next_segment;
        let mut reason = StartReason::RecoveredAfterCrash;
        for _ in 0..100_000 {
            let Some(prev) = n.checked_sub(1) else { break };
            n = prev;
            let bytes = match store.read(n) {
                Ok(b) => b,
                // Deleted by retention: nothing older to look at.
                Err(StoreError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    break
                }
                Err(e) => return Err(e.into()),
            };
            let corrupt = |source| ResumeError::CorruptTail { number: n, source };
            let view = SegmentView::parse(&bytes).map_err(corrupt)?;
            if let Some(last) = view.entries().last() {
                if matches!(Entry::parse(last), Ok(Entry::AgentStop(_))) {
                    reason = StartReason::Restart;
                }
                break;
            }
        }
        Ok((w, reason))
    }

    /// The chain state including unsealed entries.
    pub fn state(&self) -> &ChainState {
        &self.state
    }

    /// Next index and current head (including unsealed entries).
    pub fn position(&self) -> ChainPosition {
        ChainPosition {
            next_index: self.state.next_index,
            head: self.state.head,
        }
    }

    /// Entries appended since the last seal.
    pub fn pending_entries(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// Bytes of the entries section since the last seal.
    pub fn pending_bytes(&self) -> usize {
        self.entries.len()
    }

    /// Appends entry bytes exactly as given. Returns the entry's index and link.
    pub fn append(&mut self, entry: &[u8]) -> Result<(u64, Digest), AppendError> {
        self.append_with(|buf| buf.extend_from_slice(entry))
    }

    /// Appends an EVENT entry built in place from `schema` and `payload` (no intermediate
    /// buffer).
    pub fn append_event(
        &mut self,
        schema: u16,
        payload: &[u8],
    ) -> Result<(u64, Digest), AppendError> {
        self.append_with(|buf| Event { schema, payload }.encode_into(buf))
    }

    /// Appends an entry that `encode` writes onto the end of the segment buffer; use it with
    /// the `encode_into` methods of the entry types, e.g.
    /// `w.append_with(|b| loss.encode_into(b))`.
    pub fn append_with(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(u64, Digest), AppendError> {
        let index = self.state.next_index;
        if index == u64::MAX {
            return Err(AppendError::IndexExhausted);
        }
        let start = self.entries.len();
        self.entries.extend_from_slice(&[0; 4]);
        encode(&mut self.entries);
        let len = self.entries.len() - start - 4;
        let err = if len < ENTRY_HEADER_LEN {
            Some(AppendError::TooShort(len))
        } else if len > MAX_ENTRY_LEN {
            Some(AppendError::TooLong(len))
        } else if self.entries[start + 4..start + 6] == [0, 0] {
            Some(AppendError::ZeroKind)
        } else if (HEADER_LEN_V2 + SIGNATURE_LEN + self.entries.len()) as u64 > MAX_SEGMENT_LEN {
            Some(AppendError::SegmentFull)
        } else {
            None
        };
        if let Some(e) = err {
            self.entries.truncate(start);
            return Err(e);
        }
        self.entries[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
        let leaf = leaf_hash(&self.entries[start + 4..]);
        let link = link_hash(&self.state.head, index, &leaf);
        self.leaves.push(leaf);
        self.state.head = link;
        self.state.next_index = index + 1;
        Ok((index, link))
    }

    /// Appends a KEY_ROTATION to `new_public`, signed by `old` (the key in effect). The new key
    /// takes effect from the *next* segment: seal the open segment with `old`, then use the
    /// new key for every later seal.
    pub fn append_key_rotation(
        &mut self,
        old: &SecretKey,
        new_public: &PublicKey,
    ) -> Result<(u64, Digest), AppendError> {
        let index = self.state.next_index;
        let old_public = old.public();
        let msg = KeyRotation::message(&self.state.host_id, index, &old_public, new_public);
        let rot = KeyRotation {
            old_public,
            new_public: *new_public,
            signature: old.sign(&msg),
        };
        self.append_with(|b| rot.encode_into(b))
    }

    /// Seals the open segment (possibly empty, which makes a heartbeat seal) with `key` and
    /// advances the state. Store the result with [`SegmentStore::write`]; if that fails, retry
    /// writing the same segment: the writer has already moved on.
    pub fn seal(&mut self, seal_time_ns: u64, key: &SecretKey) -> SealedSegment {
        self.seal_with(seal_time_ns, key, None)
    }

    /// Seals the open segment as a format version 2 (forward-secure) segment: signed by `key`,
    /// committing to `next_public` as the key of the next segment and to the capture policy
    /// digest in effect. See [`crate::sealkeys`] for the order of key operations around it.
    pub fn seal_forward(
        &mut self,
        seal_time_ns: u64,
        key: &SecretKey,
        next_public: &PublicKey,
        policy_digest: Digest,
    ) -> SealedSegment {
        let seal = SealCommitment {
            next_public_key: *next_public,
            policy_digest,
        };
        self.seal_with(seal_time_ns, key, Some(seal))
    }

    fn seal_with(
        &mut self,
        seal_time_ns: u64,
        key: &SecretKey,
        seal: Option<SealCommitment>,
    ) -> SealedSegment {
        let public_key = key.public();
        let header = SegmentHeader {
            host_id: self.state.host_id,
            segment_number: self.state.next_segment,
            first_index: self.seg_first_index,
            entry_count: self.leaves.len() as u64,
            entries_len: self.entries.len() as u64,
            prev_header_digest: self.state.prev_header_digest,
            start_link: self.seg_start_link,
            chain_head: self.state.head,
            merkle_root: merkle::root(&self.leaves),
            seal_time_ns,
            key_id: public_key.key_id(),
            public_key,
            seal,
        };
        let capacity = self.entries.capacity();
        let entries = std::mem::replace(&mut self.entries, Vec::with_capacity(capacity));
        self.leaves.clear();
        let sealed = SealedSegment::sign(header, entries, key);
        self.state = ChainState::after(&header);
        self.seg_first_index = self.state.next_index;
        self.seg_start_link = self.state.head;
        sealed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Entry, Heartbeat};

    #[test]
    fn segments_link_up() {
        let key = SecretKey::from_seed([1; 32]);
        let host = HostId([2; 16]);
        let mut w = ChainWriter::new(host);
        assert_eq!(w.append_event(1, b"a").unwrap().0, 0);
        assert_eq!(w.append_event(1, b"b").unwrap().0, 1);
        let s0 = w.seal(10, &key);
        let s1 = w.seal(20, &key); // empty heartbeat seal
        w.append_with(|b| {
            Heartbeat {
                wall_time_ns: 1,
                monotonic_ns: 2,
            }
            .encode_into(b)
        })
        .unwrap();
        let s2 = w.seal(30, &key);

        assert_eq!(s0.header.start_link, genesis_link(&host));
        assert_eq!(s0.header.prev_header_digest, Digest::ZERO);
        assert_eq!((s0.header.first_index, s0.header.entry_count), (0, 2));
        assert_eq!(s1.header.prev_header_digest, s0.header.digest());
        assert_eq!((s1.header.first_index, s1.header.entry_count), (2, 0));
        assert_eq!(s1.header.start_link, s0.header.chain_head);
        assert_eq!(s1.header.chain_head, s0.header.chain_head);
        assert_eq!(s2.header.segment_number, 2);
        assert_eq!(s2.header.first_index, 2);
        for s in [&s0, &s1, &s2] {
            let bytes = s.to_bytes();
            let v = SegmentView::parse(&bytes).unwrap();
            v.check(&mut Vec::new()).unwrap();
            assert_eq!(v.header, s.header);
        }
        let e: Vec<_> = s0.entries().map(|e| Entry::parse(e).unwrap()).collect();
        assert!(matches!(e[1], Entry::Event(ev) if ev.payload == b"b"));
    }

    #[test]
    fn rejected_entries_leave_no_trace() {
        let mut w = ChainWriter::new(HostId([0; 16]));
        let before = *w.state();
        assert_eq!(w.append(&[1, 0]), Err(AppendError::TooShort(2)));
        assert_eq!(w.append(&[0, 0, 1, 0]), Err(AppendError::ZeroKind));
        assert_eq!(
            w.append(&vec![1; MAX_ENTRY_LEN + 1]),
            Err(AppendError::TooLong(MAX_ENTRY_LEN + 1))
        );
        assert_eq!(*w.state(), before);
        assert_eq!(w.pending_bytes(), 0);
    }

    #[test]
    fn from_state_continues_identically() {
        let key = SecretKey::from_seed([1; 32]);
        let host = HostId([2; 16]);
        let mut a = ChainWriter::new(host);
        a.append_event(1, b"x").unwrap();
        let s0 = a.seal(1, &key);
        let mut b = ChainWriter::from_state(ChainState::after(&s0.header));
        a.append_event(1, b"y").unwrap();
        b.append_event(1, b"y").unwrap();
        assert_eq!(a.seal(2, &key), b.seal(2, &key));
    }
}

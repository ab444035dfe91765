//! Sealed segments: the unit that is signed, stored and shipped.
//!
//! A segment file is `header (248 bytes) || signature (64 bytes) || entries`, where entries is
//! `entry_count × (length (u32 LE) || entry bytes)`. The header commits to everything a
//! verifier needs: where the segment sits in the chain (segment number, first index, the
//! previous header's digest, the link before its first entry), what it contains (entry count,
//! entries length, the chain head after its last entry, the Merkle root) and who sealed it
//! (key id and public key). The signature is Ed25519 over
//! `"lineage/segment-header/v1" || header`. Files are self-contained so a collector can store
//! and forward exactly these bytes.

use crate::digest::{header_digest, leaf_hash, link_hash, Digest, HostId};
use crate::entry::{ENTRY_HEADER_LEN, MAX_ENTRY_LEN};
use crate::keys::{KeyId, PublicKey, SecretKey, SIGNATURE_LEN};
use crate::merkle;
use crate::wire::Reader;

/// First 8 bytes of every segment file. The CR LF catches text-mode mangling.
pub const SEGMENT_MAGIC: [u8; 8] = *b"LNGSEG\r\n";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 248;
/// Offset of the entries section in a segment file.
pub const ENTRIES_OFFSET: usize = HEADER_LEN + SIGNATURE_LEN;
/// ASCII prefix of the message a segment signature covers.
pub const SEAL_CONTEXT: &[u8] = b"lineage/segment-header/v1";
/// Largest segment file accepted (1 GiB); bounds reads of hostile directories.
pub const MAX_SEGMENT_LEN: u64 = 1 << 30;

/// Why a segment could not be parsed or does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// Fewer bytes than a header and signature.
    #[error("{0} bytes is too short for a segment")]
    TooShort(usize),
    /// More than [`MAX_SEGMENT_LEN`] bytes.
    #[error("{0} bytes is longer than the segment limit")]
    TooLong(u64),
    /// Wrong magic.
    #[error("bad magic")]
    BadMagic,
    /// A format version this crate does not read.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u16),
    /// A header field has an impossible value.
    #[error("invalid header: {0}")]
    InvalidHeader(&'static str),
    /// The entries section does not frame `entry_count` entries exactly.
    #[error("entry framing: {0}")]
    Framing(&'static str),
    /// The key id is not derived from the public key in the header.
    #[error("key id does not match the public key")]
    KeyIdMismatch,
    /// The signature does not verify under the header's public key.
    #[error("signature does not verify")]
    BadSignature,
    /// The entries do not hash to the header's chain head and/or Merkle root.
    #[error("entries do not match the header (chain head {head}, Merkle root {root})")]
    ContentMismatch {
        /// Whether the recomputed chain head matched.
        head: &'static str,
        /// Whether the recomputed Merkle root matched.
        root: &'static str,
    },
}

/// The fixed-size segment header. See `docs/FORMAT.md` for offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The host whose chain this is.
    pub host_id: HostId,
    /// 0 for the first segment of the chain, then +1 per segment.
    pub segment_number: u64,
    /// Chain index of the first entry (for an empty segment: the index the next entry gets).
    pub first_index: u64,
    /// Number of entries (0 for a heartbeat-only seal).
    pub entry_count: u64,
    /// Length in bytes of the entries section.
    pub entries_len: u64,
    /// Digest of the previous segment's header; all zero for segment 0.
    pub prev_header_digest: Digest,
    /// The link before the first entry (the genesis link for index 0).
    pub start_link: Digest,
    /// The link of the last entry (equal to `start_link` when the segment is empty).
    pub chain_head: Digest,
    /// Merkle root over the entries' leaf hashes.
    pub merkle_root: Digest,
    /// When the segment was sealed, nanoseconds since the Unix epoch.
    pub seal_time_ns: u64,
    /// Key id of `public_key`.
    pub key_id: KeyId,
    /// The key that signed this header.
    pub public_key: PublicKey,
}

impl SegmentHeader {
    /// The header bytes (what is signed and what the next header's digest covers).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        // 12..16: flags, zero.
        b[16..32].copy_from_slice(&self.host_id.0);
        b[32..40].copy_from_slice(&self.segment_number.to_le_bytes());
        b[40..48].copy_from_slice(&self.first_index.to_le_bytes());
        b[48..56].copy_from_slice(&self.entry_count.to_le_bytes());
        b[56..64].copy_from_slice(&self.entries_len.to_le_bytes());
        b[64..96].copy_from_slice(&self.prev_header_digest.0);
        b[96..128].copy_from_slice(&self.start_link.0);
        b[128..160].copy_from_slice(&self.chain_head.0);
        b[160..192].copy_from_slice(&self.merkle_root.0);
        b[192..200].copy_from_slice(&self.seal_time_ns.to_le_bytes());
        b[200..216].copy_from_slice(&self.key_id.0);
        b[216..248].copy_from_slice(self.public_key.as_bytes());
        b
    }

    /// Parses exactly [`HEADER_LEN`] bytes.
    pub fn parse(b: &[u8]) -> Result<Self, SegmentError> {
        if b.len() < HEADER_LEN {
            return Err(SegmentError::TooShort(b.len()));
        }
        let mut r = Reader::new(&b[..HEADER_LEN]);
        let short = SegmentError::TooShort(b.len());
        if r.array::<8>() != Some(SEGMENT_MAGIC) {
            return Err(SegmentError::BadMagic);
        }
        let version = r.u16().ok_or(short.clone())?;
        if version != FORMAT_VERSION {
            return Err(SegmentError::UnsupportedVersion(version));
        }
        if r.u16() != Some(HEADER_LEN as u16) {
            return Err(SegmentError::InvalidHeader("header length is not 248"));
        }
        if r.u32() != Some(0) {
            return Err(SegmentError::InvalidHeader("flags are not zero"));
        }
        let mut r2 = Reader::new(&b[16..HEADER_LEN]);
        let h = SegmentHeader {
            host_id: HostId(r2.array().ok_or(short.clone())?),
            segment_number: r2.u64().ok_or(short.clone())?,
            first_index: r2.u64().ok_or(short.clone())?,
            entry_count: r2.u64().ok_or(short.clone())?,
            entries_len: r2.u64().ok_or(short.clone())?,
            prev_header_digest: Digest(r2.array().ok_or(short.clone())?),
            start_link: Digest(r2.array().ok_or(short.clone())?),
            chain_head: Digest(r2.array().ok_or(short.clone())?),
            merkle_root: Digest(r2.array().ok_or(short.clone())?),
            seal_time_ns: r2.u64().ok_or(short.clone())?,
            key_id: KeyId(r2.array().ok_or(short.clone())?),
            public_key: PublicKey::from_bytes(r2.array().ok_or(short)?),
        };
        if h.first_index.checked_add(h.entry_count).is_none() {
            return Err(SegmentError::InvalidHeader(
                "first_index + entry_count overflows",
            ));
        }
        Ok(h)
    }

    /// One past the last entry's index (= the next segment's `first_index`).
    pub fn end_index(&self) -> u64 {
        self.first_index.saturating_add(self.entry_count)
    }

    /// Inclusive index range of the entries, `None` when empty.
    pub fn index_range(&self) -> Option<(u64, u64)> {
        (self.entry_count > 0).then(|| (self.first_index, self.end_index() - 1))
    }

    /// `BLAKE3(0x03 || header)`.
    pub fn digest(&self) -> Digest {
        header_digest(&self.encode())
    }

    /// The bytes the Ed25519 signature covers.
    pub fn signing_message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(SEAL_CONTEXT.len() + HEADER_LEN);
        m.extend_from_slice(SEAL_CONTEXT);
        m.extend_from_slice(&self.encode());
        m
    }

    /// Whether `key_id` derives from `public_key` and `signature` verifies.
    pub fn check_signature(&self, signature: &[u8; SIGNATURE_LEN]) -> Result<(), SegmentError> {
        if self.public_key.key_id() != self.key_id {
            return Err(SegmentError::KeyIdMismatch);
        }
        if !self.public_key.verify(&self.signing_message(), signature) {
            return Err(SegmentError::BadSignature);
        }
        Ok(())
    }
}

/// A freshly sealed segment, owned. `to_bytes()` is the file content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSegment {
    /// The header.
    pub header: SegmentHeader,
    /// Ed25519 signature over [`SegmentHeader::signing_message`].
    pub signature: [u8; SIGNATURE_LEN],
    /// The framed entries section.
    pub entries: Vec<u8>,
}

impl SealedSegment {
    /// Signs `header` with `key` (which must be the key the header names).
    pub(crate) fn sign(header: SegmentHeader, entries: Vec<u8>, key: &SecretKey) -> Self {
        let signature = key.sign(&header.signing_message());
        SealedSegment {
            header,
            signature,
            entries,
        }
    }

    /// Length of the file.
    pub fn file_len(&self) -> usize {
        ENTRIES_OFFSET + self.entries.len()
    }

    /// The exact file bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.file_len());
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&self.entries);
        out
    }

    /// Iterates over the entry bytes.
    pub fn entries(&self) -> EntryIter<'_> {
        EntryIter {
            r: Reader::new(&self.entries),
            left: self.header.entry_count,
        }
    }
}

/// A parsed segment file borrowing its bytes. Framing is validated by [`SegmentView::parse`];
/// signature and content are checked separately.
#[derive(Debug, Clone, Copy)]
pub struct SegmentView<'a> {
    /// The decoded header.
    pub header: SegmentHeader,
    /// The header bytes as stored.
    pub header_bytes: &'a [u8],
    /// The signature as stored.
    pub signature: [u8; SIGNATURE_LEN],
    /// The entries section as stored.
    pub entries_section: &'a [u8],
}

/// The result of recomputing a segment's commitments from its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recomputed {
    /// Link of the last entry (or `start_link`).
    pub chain_head: Digest,
    /// Merkle root of the leaf hashes.
    pub merkle_root: Digest,
}

impl<'a> SegmentView<'a> {
    /// Parses a whole segment file. Never panics; allocates nothing.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SegmentError> {
        if bytes.len() as u64 > MAX_SEGMENT_LEN {
            return Err(SegmentError::TooLong(bytes.len() as u64));
        }
        if bytes.len() < ENTRIES_OFFSET {
            if bytes.len() >= 8 && bytes[..8] != SEGMENT_MAGIC {
                return Err(SegmentError::BadMagic);
            }
            return Err(SegmentError::TooShort(bytes.len()));
        }
        let header = SegmentHeader::parse(&bytes[..HEADER_LEN])?;
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(&bytes[HEADER_LEN..ENTRIES_OFFSET]);
        let entries_section = &bytes[ENTRIES_OFFSET..];
        if header.entries_len != entries_section.len() as u64 {
            return Err(SegmentError::Framing(
                "entries_len does not match the file length",
            ));
        }
        // Every entry needs at least 4 length bytes + 4 header bytes.
        if header.entry_count > entries_section.len() as u64 / 8 {
            return Err(SegmentError::Framing("entry_count too large for the file"));
        }
        let mut r = Reader::new(entries_section);
        for _ in 0..header.entry_count {
            let len = r.u32().ok_or(SegmentError::Framing("truncated length"))? as usize;
            if len < ENTRY_HEADER_LEN {
                return Err(SegmentError::Framing("entry shorter than 4 bytes"));
            }
            if len > MAX_ENTRY_LEN {
                return Err(SegmentError::Framing("entry longer than the limit"));
            }
            r.bytes(len)
                .ok_or(SegmentError::Framing("truncated entry"))?;
        }
        if r.remaining() != 0 {
            return Err(SegmentError::Framing("bytes after the last entry"));
        }
        Ok(SegmentView {
            header,
            header_bytes: &bytes[..HEADER_LEN],
            signature,
            entries_section,
        })
    }

    /// Iterates over the entry bytes.
    pub fn entries(&self) -> EntryIter<'a> {
        EntryIter {
            r: Reader::new(self.entries_section),
            left: self.header.entry_count,
        }
    }

    /// Checks the key id and signature.
    pub fn check_signature(&self) -> Result<(), SegmentError> {
        self.header.check_signature(&self.signature)
    }

    /// Recomputes leaf hashes into `leaves` (cleared first; reuse it across calls to avoid
    /// allocation), the chain from `start_link`, and the Merkle root.
    pub fn recompute(&self, leaves: &mut Vec<Digest>) -> Recomputed {
        leaves.clear();
        let mut link = self.header.start_link;
        for (i, e) in self.entries().enumerate() {
            let leaf = leaf_hash(e);
            link = link_hash(&link, self.header.first_index + i as u64, &leaf);
            leaves.push(leaf);
        }
        Recomputed {
            chain_head: link,
            merkle_root: merkle::root(leaves),
        }
    }

    /// Recomputes and compares with the header.
    pub fn check_content(&self, leaves: &mut Vec<Digest>) -> Result<(), SegmentError> {
        let r = self.recompute(leaves);
        let head_ok = r.chain_head == self.header.chain_head;
        let root_ok = r.merkle_root == self.header.merkle_root;
        if head_ok && root_ok {
            return Ok(());
        }
        let word = |ok| if ok { "matches" } else { "differs" };
        Err(SegmentError::ContentMismatch {
            head: word(head_ok),
            root: word(root_ok),
        })
    }

    /// Signature, then content.
    pub fn check(&self, leaves: &mut Vec<Digest>) -> Result<(), SegmentError> {
        self.check_signature()?;
        self.check_content(leaves)
    }
}

/// Iterator over the entries of a validated segment.
#[derive(Debug, Clone)]
pub struct EntryIter<'a> {
    r: Reader<'a>,
    left: u64,
}

impl<'a> Iterator for EntryIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let len = self.r.u32()? as usize;
        self.r.bytes(len)
    }
}

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
//!
//! Format version 2 (forward-secure sealing) appends 64 bytes to the header: the public key
//! that must sign the *next* segment and the digest of the capture policy in effect at the
//! seal ([`SealCommitment`]); its signature context is `"lineage/segment-header/v2"`.

use crate::digest::{header_digest, leaf_hash, link_hash, Digest, HostId};
use crate::entry::{ENTRY_HEADER_LEN, MAX_ENTRY_LEN};
use crate::keys::{KeyId, PublicKey, SecretKey, SIGNATURE_LEN};
use crate::merkle;
use crate::wire::Reader;

/// First 8 bytes of every segment file. The CR LF catches text-mode mangling.
pub const SEGMENT_MAGIC: [u8; 8] = *b"LNGSEG\r\n";
/// Format version 1: one long-lived key (rotated by KEY_ROTATION entries).
pub const FORMAT_VERSION: u16 = 1;
/// Format version 2: forward-secure sealing, a new key per segment.
pub const FORMAT_VERSION_2: u16 = 2;
/// Length of a version 1 header.
pub const HEADER_LEN: usize = 248;
/// Length of a version 2 header.
pub const HEADER_LEN_V2: usize = HEADER_LEN + 64;
/// Offset of the entries section in a version 1 segment file.
pub const ENTRIES_OFFSET: usize = HEADER_LEN + SIGNATURE_LEN;
/// ASCII prefix of the message a version 1 segment signature covers.
pub const SEAL_CONTEXT: &[u8] = b"lineage/segment-header/v1";
/// ASCII prefix of the message a version 2 segment signature covers.
pub const SEAL_CONTEXT_V2: &[u8] = b"lineage/segment-header/v2";

/// What a version 2 header adds: the commitments of a forward-secure seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealCommitment {
    /// The public key that must sign segment `segment_number + 1`.
    pub next_public_key: PublicKey,
    /// The capture policy in effect at the seal (all zero when the writer records none).
    pub policy_digest: Digest,
}
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
    /// Version 2 only: the next key and the policy digest. `None` is a version 1 header.
    pub seal: Option<SealCommitment>,
}

impl SegmentHeader {
    /// The format version (1 or 2).
    pub fn version(&self) -> u16 {
        if self.seal.is_some() {
            FORMAT_VERSION_2
        } else {
            FORMAT_VERSION
        }
    }

    /// The header's length in bytes (248 or 312).
    pub fn len(&self) -> usize {
        if self.seal.is_some() {
            HEADER_LEN_V2
        } else {
            HEADER_LEN
        }
    }

    /// Never true; headers have a fixed length per version.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Offset of the entries section in this segment's file.
    pub fn entries_offset(&self) -> usize {
        self.len() + SIGNATURE_LEN
    }

    /// The header bytes (what is signed and what the next header's digest covers).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.len()];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&self.version().to_le_bytes());
        b[10..12].copy_from_slice(&(self.len() as u16).to_le_bytes());
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
        if let Some(s) = &self.seal {
            b[248..280].copy_from_slice(s.next_public_key.as_bytes());
            b[280..312].copy_from_slice(&s.policy_digest.0);
        }
        b
    }

    /// The header length a file starting with `b` declares (from its version), if the first
    /// 10 bytes are there and the version is known.
    pub fn declared_len(b: &[u8]) -> Result<usize, SegmentError> {
        if b.len() < 10 {
            return Err(SegmentError::TooShort(b.len()));
        }
        if b[..8] != SEGMENT_MAGIC {
            return Err(SegmentError::BadMagic);
        }
        match u16::from_le_bytes([b[8], b[9]]) {
            FORMAT_VERSION => Ok(HEADER_LEN),
            FORMAT_VERSION_2 => Ok(HEADER_LEN_V2),
            v => Err(SegmentError::UnsupportedVersion(v)),
        }
    }

    /// Reads and parses just the header at the start of a segment file (or any reader).
    pub fn read_from(r: &mut impl std::io::Read) -> std::io::Result<Result<Self, SegmentError>> {
        let mut buf = [0u8; HEADER_LEN_V2];
        r.read_exact(&mut buf[..10])?;
        let len = match Self::declared_len(&buf[..10]) {
            Ok(len) => len,
            Err(e) => return Ok(Err(e)),
        };
        r.read_exact(&mut buf[10..len])?;
        Ok(Self::parse(&buf[..len]))
    }

    /// Parses a header (version 1: 248 bytes, version 2: 312 bytes) at the start of `b`.
    pub fn parse(b: &[u8]) -> Result<Self, SegmentError> {
        let len = Self::declared_len(b)?;
        if b.len() < len {
            return Err(SegmentError::TooShort(b.len()));
        }
        let mut r = Reader::new(&b[8..len]);
        let short = SegmentError::TooShort(b.len());
        let version = r.u16().ok_or(short.clone())?;
        if r.u16() != Some(len as u16) {
            return Err(SegmentError::InvalidHeader(
                "header length does not match the version",
            ));
        }
        if r.u32() != Some(0) {
            return Err(SegmentError::InvalidHeader("flags are not zero"));
        }
        let mut r2 = Reader::new(&b[16..len]);
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
            public_key: PublicKey::from_bytes(r2.array().ok_or(short.clone())?),
            seal: None,
        };
        let mut h = h;
        if version == FORMAT_VERSION_2 {
            h.seal = Some(SealCommitment {
                next_public_key: PublicKey::from_bytes(r2.array().ok_or(short.clone())?),
                policy_digest: Digest(r2.array().ok_or(short)?),
            });
        }
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
        let context = if self.seal.is_some() {
            SEAL_CONTEXT_V2
        } else {
            SEAL_CONTEXT
        };
        let mut m = Vec::with_capacity(context.len() + self.len());
        m.extend_from_slice(context);
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
        self.header.entries_offset() + self.entries.len()
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
        if bytes.len() >= 8 && bytes[..8] != SEGMENT_MAGIC {
            return Err(SegmentError::BadMagic);
        }
        let header_len = SegmentHeader::declared_len(bytes)?;
        let entries_offset = header_len + SIGNATURE_LEN;
        if bytes.len() < entries_offset {
            return Err(SegmentError::TooShort(bytes.len()));
        }
        let header = SegmentHeader::parse(&bytes[..header_len])?;
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(&bytes[header_len..entries_offset]);
        let entries_section = &bytes[entries_offset..];
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
            header_bytes: &bytes[..header_len],
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

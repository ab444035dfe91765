//! Standalone inclusion proofs for one entry.
//!
//! A proof carries the entry bytes, its chain index, the Merkle audit path and the signed
//! segment header, so anyone holding the right public key can check that the entry was sealed
//! in that segment without the rest of the log. Its size is `337 + entry length +
//! 32 × ⌈log2(entries in the segment)⌉` bytes.
//!
//! Layout: `magic "LNGPRF\r\n" || version (u16) = 1 || 2 zero bytes || header (248, or 312
//! for a format version 2 header) ||
//! signature (64) || index (u64) || entry_len (u32) || entry || path_len (u8) ||
//! path_len × 32-byte hashes`, nothing after.

use crate::digest::{leaf_hash, Digest};
use crate::entry::{ENTRY_HEADER_LEN, MAX_ENTRY_LEN};
use crate::keys::{PublicKey, SIGNATURE_LEN};
use crate::merkle::{self, MAX_PATH_LEN};
use crate::segment::{SegmentError, SegmentHeader, SegmentView};
use crate::wire::Reader;

/// First 8 bytes of a proof file.
pub const PROOF_MAGIC: [u8; 8] = *b"LNGPRF\r\n";
/// Proof format version.
pub const PROOF_VERSION: u16 = 1;

/// Why a proof could not be built, parsed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The bytes are not a proof.
    #[error("not a valid proof: {0}")]
    Syntax(&'static str),
    /// The embedded header does not parse.
    #[error("proof header: {0}")]
    Header(#[from] SegmentError),
    /// The segment does not hold this index.
    #[error("entry {index} is not in segment {segment} (indices {first}..{end})")]
    NotInSegment {
        /// Requested index.
        index: u64,
        /// The segment.
        segment: u64,
        /// Its first index.
        first: u64,
        /// One past its last index.
        end: u64,
    },
    /// The header is signed by a key other than the one supplied.
    #[error("the segment is signed by key {found}, not by the supplied key {expected}")]
    WrongKey {
        /// Key id in the header.
        found: crate::keys::KeyId,
        /// Key id supplied.
        expected: crate::keys::KeyId,
    },
    /// The Merkle path does not lead from the entry to the signed root.
    #[error("the Merkle path does not lead to the signed root (entry modified or proof damaged)")]
    PathMismatch,
}

/// A parsed or freshly built proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The signed header of the segment holding the entry.
    pub header: SegmentHeader,
    /// Its signature.
    pub signature: [u8; SIGNATURE_LEN],
    /// The entry's chain index.
    pub index: u64,
    /// The entry bytes, exactly as stored.
    pub entry: Vec<u8>,
    /// Audit path, leaf to root.
    pub path: Vec<Digest>,
}

impl Proof {
    /// Builds a proof for chain index `index` from a parsed segment (which the caller should
    /// have checked).
    pub fn build(view: &SegmentView<'_>, index: u64) -> Result<Self, ProofError> {
        let h = view.header;
        let not_in = ProofError::NotInSegment {
            index,
            segment: h.segment_number,
            first: h.first_index,
            end: h.end_index(),
        };
        if index < h.first_index || index >= h.end_index() {
            return Err(not_in);
        }
        let pos = (index - h.first_index) as usize;
        let leaves: Vec<Digest> = view.entries().map(leaf_hash).collect();
        let entry = view.entries().nth(pos).ok_or(not_in)?.to_vec();
        let path =
            merkle::inclusion_path(&leaves, pos).ok_or(ProofError::Syntax("index out of range"))?;
        Ok(Proof {
            header: h,
            signature: view.signature,
            index,
            entry,
            path,
        })
    }

    /// The proof file bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            12 + self.header.len() + 64 + 13 + self.entry.len() + 32 * self.path.len(),
        );
        out.extend_from_slice(&PROOF_MAGIC);
        out.extend_from_slice(&PROOF_VERSION.to_le_bytes());
        out.extend_from_slice(&[0; 2]);
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&(self.entry.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.entry);
        out.push(self.path.len() as u8);
        for p in &self.path {
            out.extend_from_slice(&p.0);
        }
        out
    }

    /// Parses proof bytes. Never panics; allocation bounded by the input length.
    pub fn parse(bytes: &[u8]) -> Result<Self, ProofError> {
        let mut r = Reader::new(bytes);
        let short = ProofError::Syntax("truncated");
        if r.array::<8>() != Some(PROOF_MAGIC) {
            return Err(ProofError::Syntax("bad magic"));
        }
        if r.u16() != Some(PROOF_VERSION) {
            return Err(ProofError::Syntax("unsupported proof version"));
        }
        if r.u16() != Some(0) {
            return Err(ProofError::Syntax("reserved bytes not zero"));
        }
        // The header is 248 (version 1) or 312 (version 2) bytes; its version says which.
        let header_len = SegmentHeader::declared_len(bytes.get(12..).unwrap_or_default())?;
        let header = SegmentHeader::parse(r.bytes(header_len).ok_or(short.clone())?)?;
        let signature = r.array().ok_or(short.clone())?;
        let index = r.u64().ok_or(short.clone())?;
        let len = r.u32().ok_or(short.clone())? as usize;
        if !(ENTRY_HEADER_LEN..=MAX_ENTRY_LEN).contains(&len) {
            return Err(ProofError::Syntax("entry length out of range"));
        }
        let entry = r.bytes(len).ok_or(short.clone())?.to_vec();
        let n = r.u8().ok_or(short.clone())? as usize;
        if n > MAX_PATH_LEN {
            return Err(ProofError::Syntax("path too long"));
        }
        let mut path = Vec::with_capacity(n.min(r.remaining() / 32));
        for _ in 0..n {
            path.push(Digest(r.array().ok_or(short.clone())?));
        }
        if r.remaining() != 0 {
            return Err(ProofError::Syntax("trailing bytes"));
        }
        Ok(Proof {
            header,
            signature,
            index,
            entry,
            path,
        })
    }

    /// Checks the proof against a key the verifier trusts: the header is signed by `key`,
    /// the index lies in the segment, and the path leads from the entry's leaf hash to the
    /// signed Merkle root.
    pub fn verify(&self, key: &PublicKey) -> Result<(), ProofError> {
        if self.header.public_key != *key {
            return Err(ProofError::WrongKey {
                found: self.header.key_id,
                expected: key.key_id(),
            });
        }
        self.header.check_signature(&self.signature)?;
        let h = &self.header;
        if self.index < h.first_index || self.index >= h.end_index() {
            return Err(ProofError::NotInSegment {
                index: self.index,
                segment: h.segment_number,
                first: h.first_index,
                end: h.end_index(),
            });
        }
        let pos = self.index - h.first_index;
        if !merkle::verify_inclusion(
            &leaf_hash(&self.entry),
            pos,
            h.entry_count,
            &self.path,
            &h.merkle_root,
        ) {
            return Err(ProofError::PathMismatch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainWriter;
    use crate::digest::HostId;
    use crate::keys::SecretKey;

    #[test]
    fn proofs_verify_and_detect_tampering() {
        let key = SecretKey::from_seed([4; 32]);
        let mut w = ChainWriter::new(HostId([1; 16]));
        for i in 0..37u32 {
            w.append_event(1, &i.to_le_bytes()).unwrap();
        }
        let seg = w.seal(5, &key);
        let bytes = seg.to_bytes();
        let view = SegmentView::parse(&bytes).unwrap();
        for i in 0..37u64 {
            let p = Proof::build(&view, i).unwrap();
            assert!(p.path.len() <= 6, "ceil(log2 37) = 6");
            let parsed = Proof::parse(&p.to_bytes()).unwrap();
            assert_eq!(parsed, p);
            parsed.verify(&key.public()).unwrap();
        }
        let p = Proof::build(&view, 3).unwrap();
        assert!(matches!(
            p.verify(&SecretKey::from_seed([5; 32]).public()),
            Err(ProofError::WrongKey { .. })
        ));
        let mut bytes = p.to_bytes();
        // Flip every byte in turn: every flip must make the proof fail to parse or verify.
        for i in 0..bytes.len() {
            bytes[i] ^= 0x40;
            let ok = Proof::parse(&bytes).is_ok_and(|q| q.verify(&key.public()).is_ok());
            assert!(!ok, "flipping byte {i} went unnoticed");
            bytes[i] ^= 0x40;
        }
        assert!(Proof::build(&view, 37).is_err());
    }
}

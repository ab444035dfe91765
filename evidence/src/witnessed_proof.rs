//! Witnessed proofs: an entry's inclusion proof ([`Proof`]) together with a checkpoint a
//! witness cosigned and the RFC 6962 inclusion path of the entry's segment header in that
//! checkpoint's tree. Checked with the witness's key alone, it shows that the entry is in a
//! segment of the one history the witness vouched for — no other part of the log, and no
//! agent key, is needed (docs/FORMAT.md §10.2).
//!
//! Layout: `magic "LNGWPF\r\n" || version (u16) = 1 || 2 zero bytes || proof_len (u32) ||
//! proof (§10) || note_len (u32, ≤ 64 KiB) || cosigned checkpoint note (UTF-8) ||
//! path_len (u8, ≤ 64) || path_len × 32-byte hashes`, nothing after.

use crate::checkpoint::{Checkpoint, Note, NoteError, VerifierKey, MAX_NOTE_LEN};
use crate::digest::Digest;
use crate::merkle::MAX_PATH_LEN;
use crate::proof::{Proof, ProofError};
use crate::rfc6962;
use crate::wire::Reader;

/// First 8 bytes of a witnessed proof.
pub const WITNESSED_MAGIC: [u8; 8] = *b"LNGWPF\r\n";
/// Its version.
pub const WITNESSED_VERSION: u16 = 1;
/// Largest embedded entry proof (an entry of 1 MiB plus header and path).
const MAX_INNER_LEN: usize = (1 << 20) + 4096;

/// Why a witnessed proof is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessedProofError {
    /// Not the layout above.
    #[error("not a valid witnessed proof: {0}")]
    Syntax(&'static str),
    /// The entry's own proof fails.
    #[error(transparent)]
    Proof(#[from] ProofError),
    /// The note or checkpoint does not parse.
    #[error("cosigned checkpoint: {0}")]
    Note(#[from] NoteError),
    /// The checkpoint is of another host.
    #[error("the checkpoint is of another host than the segment")]
    OtherHost,
    /// Too few of the given witnesses cosigned it validly.
    #[error("{valid} of the {quorum} required witness cosignatures verify")]
    Quorum {
        /// Valid cosignatures by distinct given witnesses.
        valid: usize,
        /// Required.
        quorum: usize,
    },
    /// The segment header is not leaf `segment_number` of the cosigned tree.
    #[error("segment {0} is not in the cosigned tree (path mismatch or tree too small)")]
    NotInTree(u64),
}

/// A parsed or freshly built witnessed proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessedProof {
    /// The entry's proof within its segment.
    pub proof: Proof,
    /// The cosigned checkpoint.
    pub note: Note,
    /// Inclusion path of the segment's leaf in the checkpoint tree.
    pub path: Vec<Digest>,
}

/// Who vouched, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vouched {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// (witness name, cosigning time) of each valid cosignature by a given witness.
    pub cosigners: Vec<(String, u64)>,
}

impl WitnessedProof {
    /// Assembles a proof; only the cosignature lines of `note` are kept (the log's own
    /// signature adds nothing a witness did not already check, and every byte kept must
    /// matter to the verdict).
    pub fn new(proof: Proof, note: &Note, path: Vec<Digest>) -> Self {
        let origin = crate::checkpoint::origin(&proof.header.host_id);
        let mut note = note.clone();
        note.signatures.retain(|s| s.name != origin);
        WitnessedProof { proof, note, path }
    }

    /// The file bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let inner = self.proof.to_bytes();
        let note = self.note.to_text().into_bytes();
        let mut out = Vec::with_capacity(21 + inner.len() + note.len() + 32 * self.path.len());
        out.extend_from_slice(&WITNESSED_MAGIC);
        out.extend_from_slice(&WITNESSED_VERSION.to_le_bytes());
        out.extend_from_slice(&[0; 2]);
        out.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        out.extend_from_slice(&inner);
        out.extend_from_slice(&(note.len() as u32).to_le_bytes());
        out.extend_from_slice(&note);
        out.push(self.path.len() as u8);
        for p in &self.path {
            out.extend_from_slice(&p.0);
        }
        out
    }

    /// Parses the bytes. Never panics; allocation bounded by the input length.
    pub fn parse(bytes: &[u8]) -> Result<Self, WitnessedProofError> {
        let bad = WitnessedProofError::Syntax;
        let mut r = Reader::new(bytes);
        if r.array::<8>() != Some(WITNESSED_MAGIC) {
            return Err(bad("bad magic"));
        }
        if r.u16() != Some(WITNESSED_VERSION) {
            return Err(bad("unsupported version"));
        }
        if r.u16() != Some(0) {
            return Err(bad("reserved bytes not zero"));
        }
        let n = r.u32().ok_or(bad("truncated"))? as usize;
        if n > MAX_INNER_LEN {
            return Err(bad("entry proof too long"));
        }
        let proof = Proof::parse(r.bytes(n).ok_or(bad("truncated"))?)?;
        let n = r.u32().ok_or(bad("truncated"))? as usize;
        if n > MAX_NOTE_LEN {
            return Err(bad("note too long"));
        }
        let note = Note::parse(r.bytes(n).ok_or(bad("truncated"))?)?;
        let n = r.u8().ok_or(bad("truncated"))? as usize;
        if n > MAX_PATH_LEN {
            return Err(bad("path too long"));
        }
        let mut path = Vec::with_capacity(n.min(r.remaining() / 32));
        for _ in 0..n {
            path.push(Digest(r.array().ok_or(bad("truncated"))?));
        }
        if r.remaining() != 0 {
            return Err(bad("trailing bytes"));
        }
        Ok(WitnessedProof { proof, note, path })
    }

    /// Checks everything against the witnesses the verifier trusts (at least `quorum` of
    /// them must have cosigned): the entry is in the segment (its header signed by its own
    /// key), the segment's header digest is leaf `segment_number` of the cosigned tree.
    pub fn verify(
        &self,
        witnesses: &[VerifierKey],
        quorum: usize,
    ) -> Result<Vouched, WitnessedProofError> {
        let h = &self.proof.header;
        self.proof.verify(&h.public_key)?;
        let checkpoint = Checkpoint::parse_body(&self.note.text)?;
        if checkpoint.host != h.host_id {
            return Err(WitnessedProofError::OtherHost);
        }
        let mut cosigners = Vec::new();
        for w in witnesses {
            match self.note.cosignatures_by(w) {
                Some(times) if !times.is_empty() => {
                    cosigners.push((w.name.clone(), times.into_iter().max().expect("one")));
                }
                _ => {}
            }
        }
        if cosigners.len() < quorum.max(1) {
            return Err(WitnessedProofError::Quorum {
                valid: cosigners.len(),
                quorum: quorum.max(1),
            });
        }
        let leaf = rfc6962::segment_leaf(&h.digest());
        if !rfc6962::verify_inclusion(
            &leaf,
            h.segment_number,
            checkpoint.size,
            &self.path,
            &checkpoint.root,
        ) {
            return Err(WitnessedProofError::NotInTree(h.segment_number));
        }
        Ok(Vouched {
            checkpoint,
            cosigners,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainWriter;
    use crate::checkpoint::{cosign, SIG_COSIGNATURE_V1};
    use crate::digest::HostId;
    use crate::keys::SecretKey;
    use crate::segment::SegmentView;

    #[test]
    fn a_witnessed_proof_stands_alone_and_every_flipped_byte_is_caught() {
        let host = HostId([2; 16]);
        let key = SecretKey::from_seed([1; 32]);
        let wk = SecretKey::from_seed([3; 32]);
        let vk = VerifierKey {
            name: "w".into(),
            sig_type: SIG_COSIGNATURE_V1,
            key: wk.public(),
        };
        let mut chain = ChainWriter::new(host);
        let segs: Vec<Vec<u8>> = (0..5)
            .map(|i| {
                chain.append_event(1, format!("e{i}").as_bytes()).unwrap();
                chain.append_event(1, format!("f{i}").as_bytes()).unwrap();
                chain.seal(i + 1, &key).to_bytes()
            })
            .collect();
        let views: Vec<SegmentView<'_>> = segs
            .iter()
            .map(|b| SegmentView::parse(b).unwrap())
            .collect();
        let leaves: Vec<Digest> = views
            .iter()
            .map(|v| rfc6962::segment_leaf(&v.header.digest()))
            .collect();
        let cp = Checkpoint {
            host,
            size: 5,
            root: rfc6962::root(&leaves),
        };
        let mut note = cp.sign(&key);
        note.signatures.push(cosign(&note.text, "w", &wk, 77));
        let wp = WitnessedProof::new(
            Proof::build(&views[3], 7).unwrap(),
            &note,
            rfc6962::inclusion_path(&leaves, 3).unwrap(),
        );
        assert_eq!(wp.note.signatures.len(), 1, "only the cosignature is kept");
        let bytes = wp.to_bytes();
        let parsed = WitnessedProof::parse(&bytes).unwrap();
        assert_eq!(parsed, wp);
        let v = parsed.verify(std::slice::from_ref(&vk), 1).unwrap();
        assert_eq!(v.cosigners, vec![("w".to_owned(), 77)]);
        // Another witness's key, or a quorum of two, is not enough.
        let other = VerifierKey {
            key: SecretKey::from_seed([4; 32]).public(),
            ..vk.clone()
        };
        assert!(parsed.verify(&[other], 1).is_err());
        assert!(parsed.verify(std::slice::from_ref(&vk), 2).is_err());
        let mut b = bytes.clone();
        for i in 0..b.len() {
            b[i] ^= 0x04;
            let ok = WitnessedProof::parse(&b)
                .is_ok_and(|p| p.verify(std::slice::from_ref(&vk), 1).is_ok());
            assert!(!ok, "flipping byte {i} went unnoticed");
            b[i] ^= 0x04;
        }
    }
}

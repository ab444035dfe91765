//! The RFC 6962 Merkle tree with SHA-256, as the transparency-log ecosystem uses it: the tree
//! whose root a checkpoint (see [`crate::checkpoint`]) commits to.
//!
//! `leaf_hash(d) = SHA-256(0x00 || d)`, `node(l, r) = SHA-256(0x01 || l || r)`,
//! `MTH({}) = SHA-256("")`. Lineage's leaves are segment header digests (docs/FORMAT.md §2,
//! 32 bytes each) in segment order, so leaf i is `SHA-256(0x00 || hdigest(segment i))`.
//! The tree shape, inclusion and consistency proofs are the generic ones of [`crate::merkle`].

use sha2::{Digest as _, Sha256};

use crate::digest::{Digest, TAG_LEAF, TAG_NODE};
use crate::merkle::{self, TreeHash};

/// RFC 6962 §2.1 with SHA-256.
#[derive(Debug, Clone, Copy)]
pub enum Rfc6962 {}

impl TreeHash for Rfc6962 {
    fn empty() -> Digest {
        Digest(Sha256::digest([]).into())
    }
    fn node(l: &Digest, r: &Digest) -> Digest {
        let mut h = Sha256::new();
        h.update([TAG_NODE]);
        h.update(l.0);
        h.update(r.0);
        Digest(h.finalize().into())
    }
}

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update([TAG_LEAF]);
    h.update(data);
    Digest(h.finalize().into())
}

/// The leaf of a segment: the leaf hash of its 32-byte header digest.
pub fn segment_leaf(header_digest: &Digest) -> Digest {
    leaf_hash(&header_digest.0)
}

/// The tree hash of `leaves` (already leaf-hashed).
pub fn root(leaves: &[Digest]) -> Digest {
    merkle::root_with::<Rfc6962>(leaves)
}

/// The audit path of leaf `index`, innermost sibling first.
pub fn inclusion_path(leaves: &[Digest], index: usize) -> Option<Vec<Digest>> {
    merkle::inclusion_path_with::<Rfc6962>(leaves, index)
}

/// RFC 9162 §2.1.3.2 inclusion check.
pub fn verify_inclusion(
    leaf: &Digest,
    index: u64,
    size: u64,
    path: &[Digest],
    root: &Digest,
) -> bool {
    merkle::verify_inclusion_with::<Rfc6962>(leaf, index, size, path, root)
}

/// RFC 6962 §2.1.2 consistency proof from the first `old` leaves to all of them.
pub fn consistency_proof(leaves: &[Digest], old: usize) -> Option<Vec<Digest>> {
    merkle::consistency_proof_with::<Rfc6962>(leaves, old)
}

/// RFC 9162 §2.1.4.2 consistency check.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Digest,
    new_root: &Digest,
    proof: &[Digest],
) -> bool {
    merkle::verify_consistency_with::<Rfc6962>(old_size, new_size, old_root, new_root, proof)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leaves of the reference implementations' RFC 6962 test tree.
    fn reference_leaves() -> Vec<Digest> {
        let data: [&[u8]; 8] = [
            b"",
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
                0x6e, 0x6f,
            ],
        ];
        data.iter().map(|d| leaf_hash(d)).collect()
    }

    #[test]
    fn roots_match_the_published_rfc6962_vectors() {
        let l = reference_leaves();
        assert_eq!(
            root(&[]).to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let expected = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        for (n, want) in expected.iter().enumerate() {
            assert_eq!(root(&l[..n + 1]).to_hex(), *want, "size {}", n + 1);
        }
    }

    #[test]
    fn consistency_proofs_match_the_rfc_example_shape() {
        // RFC 6962 §2.1.3: the proof from 3 to 7 leaves is [c, d, g, l] = 4 hashes; from 4 to
        // 7 it is [l]; from 6 to 7 it is [i, j, k, ...] = 3 hashes.
        let l = reference_leaves();
        let t7 = &l[..7];
        assert_eq!(consistency_proof(t7, 3).unwrap().len(), 4);
        assert_eq!(consistency_proof(t7, 4).unwrap(), vec![root(&l[4..7])]);
        assert_eq!(consistency_proof(t7, 6).unwrap().len(), 3);
        for m in 1..=7u64 {
            let p = consistency_proof(t7, m as usize).unwrap();
            assert!(verify_consistency(
                m,
                7,
                &root(&l[..m as usize]),
                &root(t7),
                &p
            ));
        }
    }

    #[test]
    fn inclusion_in_the_reference_tree() {
        let l = reference_leaves();
        let r = root(&l);
        for i in 0..8 {
            let p = inclusion_path(&l, i).unwrap();
            assert_eq!(p.len(), 3);
            assert!(verify_inclusion(&l[i], i as u64, 8, &p, &r));
        }
    }
}

//! Merkle trees in the shape of RFC 6962 §2.1, over any hash: the segment's entry tree
//! (BLAKE3, [`Blake3`]) and the checkpoint tree of segment headers (SHA-256, see
//! [`crate::rfc6962`]) share this one implementation.
//!
//! `MTH({}) = H("")`, `MTH({d}) = leaf_hash(d)`, and for n > 1 with k the largest power of
//! two smaller than n, `MTH(D[n]) = H(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`. Inclusion paths
//! are RFC 6962 audit paths and are checked with the RFC 9162 §2.1.3.2 algorithm, so a proof
//! holds ⌈log2 n⌉ hashes at most; consistency proofs are RFC 6962 §2.1.2 `PROOF(m, D[n])`,
//! checked with RFC 9162 §2.1.4.2.

use crate::digest::{empty_tree_hash, node_hash, Digest};

/// Longest inclusion or consistency path accepted (a tree of 2^64 leaves).
pub const MAX_PATH_LEN: usize = 64;

/// The two hash constructions a tree needs (leaves arrive already hashed).
pub trait TreeHash {
    /// `MTH({})`.
    fn empty() -> Digest;
    /// An interior node over its two children.
    fn node(l: &Digest, r: &Digest) -> Digest;
}

/// The segment entry tree of docs/FORMAT.md §3: BLAKE3 with the 0x01 node tag.
#[derive(Debug, Clone, Copy)]
pub enum Blake3 {}

impl TreeHash for Blake3 {
    fn empty() -> Digest {
        empty_tree_hash()
    }
    fn node(l: &Digest, r: &Digest) -> Digest {
        node_hash(l, r)
    }
}

fn split(n: usize) -> usize {
    // Largest power of two strictly smaller than n (n >= 2).
    1usize << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle tree hash of `leaves` (already leaf-hashed).
pub fn root_with<H: TreeHash>(leaves: &[Digest]) -> Digest {
    match leaves.len() {
        0 => H::empty(),
        _ => subtree::<H>(leaves),
    }
}

fn subtree<H: TreeHash>(leaves: &[Digest]) -> Digest {
    if leaves.len() == 1 {
        return leaves[0];
    }
    let k = split(leaves.len());
    H::node(&subtree::<H>(&leaves[..k]), &subtree::<H>(&leaves[k..]))
}

/// The audit path for leaf `index` (innermost sibling first), or `None` if out of range.
pub fn inclusion_path_with<H: TreeHash>(leaves: &[Digest], index: usize) -> Option<Vec<Digest>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let (mut lo, mut hi, mut m) = (0usize, leaves.len(), index);
    // Walk down from the root collecting siblings, then reverse to get leaf-to-root order.
    while hi - lo > 1 {
        let k = split(hi - lo);
        if m < k {
            path.push(subtree::<H>(&leaves[lo + k..hi]));
            hi = lo + k;
        } else {
            path.push(subtree::<H>(&leaves[lo..lo + k]));
            lo += k;
            m -= k;
        }
    }
    path.reverse();
    Some(path)
}

/// RFC 9162 §2.1.3.2: does `path` prove that `leaf` is leaf `index` of a tree of `size`
/// leaves with root `root`?
pub fn verify_inclusion_with<H: TreeHash>(
    leaf: &Digest,
    index: u64,
    size: u64,
    path: &[Digest],
    root: &Digest,
) -> bool {
    if index >= size || path.len() > MAX_PATH_LEN {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = H::node(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = H::node(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// RFC 6962 §2.1.2 `PROOF(old, D[n])`: the consistency proof from the tree of the first `old`
/// leaves to the tree of all of them. `None` unless `0 < old <= leaves.len()`; empty when
/// `old == leaves.len()`.
pub fn consistency_proof_with<H: TreeHash>(leaves: &[Digest], old: usize) -> Option<Vec<Digest>> {
    if old == 0 || old > leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    subproof::<H>(old, leaves, true, &mut proof);
    Some(proof)
}

/// `SUBPROOF(m, D[n], b)`, appending in RFC order (innermost first).
fn subproof<H: TreeHash>(m: usize, leaves: &[Digest], whole: bool, out: &mut Vec<Digest>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            out.push(subtree::<H>(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof::<H>(m, &leaves[..k], whole, out);
        out.push(subtree::<H>(&leaves[k..]));
    } else {
        subproof::<H>(m - k, &leaves[k..], false, out);
        out.push(subtree::<H>(&leaves[..k]));
    }
}

/// RFC 9162 §2.1.4.2: does `proof` show that the tree of `old_size` leaves with root
/// `old_root` is a prefix of the tree of `new_size` leaves with root `new_root`?
///
/// `old_size == 0` is consistent with anything only with an empty proof (the empty tree is a
/// prefix of every tree); `old_size == new_size` needs an empty proof and equal roots.
pub fn verify_consistency_with<H: TreeHash>(
    old_size: u64,
    new_size: u64,
    old_root: &Digest,
    new_root: &Digest,
    proof: &[Digest],
) -> bool {
    if old_size > new_size || proof.len() > MAX_PATH_LEN {
        return false;
    }
    if old_size == 0 {
        return proof.is_empty();
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Digest> = Vec::with_capacity(proof.len() + 1);
    // A power-of-two old tree is a complete subtree of the new one: its root starts the path.
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = H::node(c, &fr);
            sr = H::node(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = H::node(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    fr == *old_root && sr == *new_root && snode == 0
}

/// The Merkle tree hash of a segment's entry leaves (BLAKE3, docs/FORMAT.md §3).
pub fn root(leaves: &[Digest]) -> Digest {
    root_with::<Blake3>(leaves)
}

/// The BLAKE3 audit path for leaf `index`, or `None` if out of range.
pub fn inclusion_path(leaves: &[Digest], index: usize) -> Option<Vec<Digest>> {
    inclusion_path_with::<Blake3>(leaves, index)
}

/// [`verify_inclusion_with`] for the BLAKE3 entry tree.
pub fn verify_inclusion(
    leaf: &Digest,
    index: u64,
    size: u64,
    path: &[Digest],
    root: &Digest,
) -> bool {
    verify_inclusion_with::<Blake3>(leaf, index, size, path, root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::leaf_hash;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Digest> {
        (0..n as u32).map(|i| leaf_hash(&i.to_le_bytes())).collect()
    }

    #[test]
    fn small_trees_match_the_definition() {
        let l = leaves(3);
        assert_eq!(root(&[]), empty_tree_hash());
        assert_eq!(root(&l[..1]), l[0]);
        assert_eq!(root(&l[..2]), node_hash(&l[0], &l[1]));
        assert_eq!(root(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        assert_eq!(
            inclusion_path(&l, 2).unwrap(),
            vec![node_hash(&l[0], &l[1])]
        );
        assert_eq!(inclusion_path(&l, 0).unwrap(), vec![l[1], l[2]]);
    }

    proptest! {
        #[test]
        fn every_path_verifies_and_is_short(n in 1usize..300, pick in any::<usize>()) {
            let l = leaves(n);
            let r = root(&l);
            let i = pick % n;
            let path = inclusion_path(&l, i).unwrap();
            let bound = (usize::BITS - (n - 1).leading_zeros()) as usize; // ceil(log2 n)
            prop_assert!(path.len() <= bound);
            prop_assert!(verify_inclusion(&l[i], i as u64, n as u64, &path, &r));
            // Wrong index, wrong size, wrong leaf, tampered path: all fail.
            if n > 1 {
                let j = (i + 1) % n;
                prop_assert!(!verify_inclusion(&l[i], j as u64, n as u64, &path, &r));
                prop_assert!(!verify_inclusion(&l[j], i as u64, n as u64, &path, &r));
                let mut bad = path.clone();
                bad[0].0[0] ^= 1;
                prop_assert!(!verify_inclusion(&l[i], i as u64, n as u64, &bad, &r));
            }
            prop_assert!(!verify_inclusion(&l[i], n as u64, n as u64, &path, &r));
        }

        #[test]
        fn every_consistency_proof_verifies_and_a_fork_does_not(
            n in 1usize..200, pick in any::<usize>(), flip in any::<usize>()
        ) {
            let l = leaves(n);
            let m = 1 + pick % n;
            let (old, new) = (root(&l[..m]), root(&l));
            let p = consistency_proof_with::<Blake3>(&l, m).unwrap();
            prop_assert!(p.len() <= MAX_PATH_LEN);
            prop_assert!(verify_consistency_with::<Blake3>(m as u64, n as u64, &old, &new, &p));
            // Another history of the first m leaves is never consistent with this one.
            let mut forked = l.clone();
            forked[flip % m].0[0] ^= 1;
            let forked_old = root(&forked[..m]);
            prop_assert!(!verify_consistency_with::<Blake3>(m as u64, n as u64, &forked_old, &new, &p));
            if m < n {
                // Nor is a tampered proof. (The sizes themselves are bound by the signed
                // checkpoints, not by the proof: 8 -> 9 and 8 -> 10 share a proof shape.)
                let mut bad = p.clone();
                bad[flip % p.len()].0[1] ^= 1;
                prop_assert!(!verify_consistency_with::<Blake3>(m as u64, n as u64, &old, &new, &bad));
                // A rollback (the new tree is the old one's prefix) is not consistent.
                prop_assert!(!verify_consistency_with::<Blake3>(n as u64, m as u64, &new, &old, &p));
            }
        }
    }
}

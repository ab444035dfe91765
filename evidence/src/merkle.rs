//! Merkle trees over a segment's leaf hashes, in the shape of RFC 6962 §2.1 with BLAKE3.
//!
//! `MTH({}) = BLAKE3("")`, `MTH({d}) = leaf_hash(d)`, and for n > 1 with k the largest power of
//! two smaller than n, `MTH(D[n]) = BLAKE3(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`. Inclusion paths
//! are RFC 6962 audit paths and are checked with the RFC 9162 §2.1.3.2 algorithm, so a proof
//! holds ⌈log2 n⌉ hashes at most.

use crate::digest::{empty_tree_hash, node_hash, Digest};

/// Longest inclusion path accepted (a tree of 2^64 leaves).
pub const MAX_PATH_LEN: usize = 64;

fn split(n: usize) -> usize {
    // Largest power of two strictly smaller than n (n >= 2).
    1usize << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The Merkle tree hash of `leaves` (already leaf-hashed).
pub fn root(leaves: &[Digest]) -> Digest {
    match leaves.len() {
        0 => empty_tree_hash(),
        _ => subtree(leaves),
    }
}

fn subtree(leaves: &[Digest]) -> Digest {
    if leaves.len() == 1 {
        return leaves[0];
    }
    let k = split(leaves.len());
    node_hash(&subtree(&leaves[..k]), &subtree(&leaves[k..]))
}

/// The audit path for leaf `index` (innermost sibling first), or `None` if out of range.
pub fn inclusion_path(leaves: &[Digest], index: usize) -> Option<Vec<Digest>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let (mut lo, mut hi, mut m) = (0usize, leaves.len(), index);
    // Walk down from the root collecting siblings, then reverse to get leaf-to-root order.
    while hi - lo > 1 {
        let k = split(hi - lo);
        if m < k {
            path.push(subtree(&leaves[lo + k..hi]));
            hi = lo + k;
        } else {
            path.push(subtree(&leaves[lo..lo + k]));
            lo += k;
            m -= k;
        }
    }
    path.reverse();
    Some(path)
}

/// RFC 9162 §2.1.3.2: does `path` prove that `leaf` is leaf `index` of a tree of `size`
/// leaves with root `root`?
pub fn verify_inclusion(
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
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
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
    }
}

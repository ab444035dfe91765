//! Digests and the domain-separated BLAKE3 constructions.
//!
//! Every hash in the format is plain BLAKE3-256 over a one-byte domain tag followed by the
//! input. The tags 0x00 (leaf) and 0x01 (interior node) are the RFC 6962 ones; the others give
//! links, header digests, the genesis value and key ids their own domains, so no value of one
//! kind can ever be presented as another. Plain BLAKE3 with a prefix byte (rather than BLAKE3's
//! keyed or derive-key modes) keeps an independent implementation trivial.

use std::fmt;

/// Domain tag for the leaf hash of an entry (RFC 6962 leaf prefix).
pub const TAG_LEAF: u8 = 0x00;
/// Domain tag for an interior Merkle node (RFC 6962 node prefix).
pub const TAG_NODE: u8 = 0x01;
/// Domain tag for a chain link.
pub const TAG_LINK: u8 = 0x02;
/// Domain tag for a segment header digest.
pub const TAG_HEADER: u8 = 0x03;
/// Domain tag for the genesis link of a host's chain.
pub const TAG_GENESIS: u8 = 0x04;
/// Domain tag for a key id.
pub const TAG_KEY_ID: u8 = 0x05;

/// ASCII label hashed into the genesis link after [`TAG_GENESIS`].
pub const GENESIS_LABEL: &[u8] = b"lineage/genesis/v1";

/// A 32-byte BLAKE3 output. Displays and serialises as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The all-zero digest, used as the "previous header digest" of segment 0.
    pub const ZERO: Digest = Digest([0; 32]);

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out)?;
        Ok(Digest(out))
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// A 16-byte host identifier (for example the 128-bit `/etc/machine-id`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct HostId(pub [u8; 16]);

impl HostId {
    /// Parses 32 hex characters (the format of `/etc/machine-id`).
    pub fn from_hex(s: &str) -> Result<Self, hex::FromHexError> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s.trim(), &mut out)?;
        Ok(HostId(out))
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostId({})", self.to_hex())
    }
}

impl serde::Serialize for HostId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// `BLAKE3(0x00 || entry_bytes)`: the Merkle leaf hash of one entry.
#[inline]
pub fn leaf_hash(entry: &[u8]) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(&[TAG_LEAF]);
    h.update(entry);
    Digest(*h.finalize().as_bytes())
}

/// `BLAKE3(0x01 || left || right)`: an interior Merkle node.
#[inline]
pub fn node_hash(left: &Digest, right: &Digest) -> Digest {
    let mut buf = [0u8; 65];
    buf[0] = TAG_NODE;
    buf[1..33].copy_from_slice(&left.0);
    buf[33..65].copy_from_slice(&right.0);
    Digest(*blake3::hash(&buf).as_bytes())
}

/// `BLAKE3(0x02 || prev_link || index_le64 || leaf_hash)`: the chain link of entry `index`.
///
/// The link commits to the entry bytes through their leaf hash, so each entry's bytes are
/// hashed exactly once.
#[inline]
pub fn link_hash(prev: &Digest, index: u64, leaf: &Digest) -> Digest {
    let mut buf = [0u8; 73];
    buf[0] = TAG_LINK;
    buf[1..33].copy_from_slice(&prev.0);
    buf[33..41].copy_from_slice(&index.to_le_bytes());
    buf[41..73].copy_from_slice(&leaf.0);
    Digest(*blake3::hash(&buf).as_bytes())
}

/// `BLAKE3(0x03 || header_bytes)`: the digest of a segment header, which the next header
/// commits to.
#[inline]
pub fn header_digest(header_bytes: &[u8]) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(&[TAG_HEADER]);
    h.update(header_bytes);
    Digest(*h.finalize().as_bytes())
}

/// `BLAKE3(0x04 || "lineage/genesis/v1" || host_id)`: the link "before" entry 0.
pub fn genesis_link(host: &HostId) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(&[TAG_GENESIS]);
    h.update(GENESIS_LABEL);
    h.update(&host.0);
    Digest(*h.finalize().as_bytes())
}

/// The hash of the empty Merkle tree, `BLAKE3("")` (RFC 6962: `MTH({}) = HASH()`).
pub fn empty_tree_hash() -> Digest {
    Digest(*blake3::hash(&[]).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_separated() {
        let d = Digest([7; 32]);
        // The same 64 bytes hashed as a node and as a link input must differ.
        assert_ne!(node_hash(&d, &d), link_hash(&d, 0, &d));
        assert_ne!(leaf_hash(&[]), empty_tree_hash());
        assert_ne!(leaf_hash(b""), header_digest(b""));
    }

    #[test]
    fn genesis_depends_on_host() {
        assert_ne!(
            genesis_link(&HostId([0; 16])),
            genesis_link(&HostId([1; 16]))
        );
    }

    #[test]
    fn hex_round_trip() {
        let d = leaf_hash(b"x");
        assert_eq!(Digest::from_hex(&d.to_hex()).unwrap(), d);
        assert!(Digest::from_hex("zz").is_err());
    }
}

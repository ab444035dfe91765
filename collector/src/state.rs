//! Per-host pull state, persisted as `<host>/state.json` in the store after every stored
//! segment. It is what lets a restarted collector resume without downloading anything twice:
//! the cursor is the next segment number to pull, and the last stored header's digest, end
//! index, chain head and the key in effect are what the next segment must continue. The last
//! cosigned checkpoint (size and root) is what the next checkpoint must be consistent with.
//!
//! Digests and keys are hex strings so the file is readable and stable.

use lineage_evidence::digest::Digest;
use lineage_evidence::keys::PublicKey;
use lineage_evidence::segment::SegmentHeader;
use serde::{Deserialize, Serialize};

use crate::cosigner::Witnessed;

/// State errors.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Not the JSON we write.
    #[error("state.json does not parse: {0}")]
    Json(#[from] serde_json::Error),
    /// A digest or key field is not valid hex of the right length.
    #[error("state.json: field {0} is not valid")]
    Field(&'static str),
}

/// A range of segment numbers the agent no longer had when the collector asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// First missing segment.
    pub first: u64,
    /// Last missing segment (inclusive).
    pub last: u64,
    /// Whether a RETENTION entry on the chain declares this range deleted.
    pub declared: bool,
}

/// Where the stored chain of one host ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState {
    /// Next segment number to pull.
    pub cursor: u64,
    /// The last stored segment, if any.
    pub last: Option<LastSegment>,
    /// The agent key that must sign the next segment (after any KEY_ROTATION).
    pub key_in_effect: Option<PublicKey>,
    /// Ranges the agent no longer had.
    pub gaps: Vec<Gap>,
    /// The newest checkpoint this collector cosigned for the host.
    pub witnessed: Option<Witnessed>,
}

/// What the next segment must continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSegment {
    /// Its number.
    pub number: u64,
    /// Its header digest.
    pub header_digest: Digest,
    /// Its end index (first index of the next segment).
    pub end_index: u64,
    /// Its chain head (start link of the next segment).
    pub chain_head: Digest,
}

impl LastSegment {
    /// From a verified header.
    pub fn of(h: &SegmentHeader) -> Self {
        LastSegment {
            number: h.segment_number,
            header_digest: h.digest(),
            end_index: h.end_index(),
            chain_head: h.chain_head,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    cursor: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_segment: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_header_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_index: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    head_link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_in_effect: Option<String>,
    #[serde(default)]
    gaps: Vec<Gap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    witnessed_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    witnessed_root: Option<String>,
}

impl HostState {
    /// A host nothing has been pulled from.
    pub fn new() -> Self {
        HostState {
            cursor: 0,
            last: None,
            key_in_effect: None,
            gaps: Vec::new(),
            witnessed: None,
        }
    }

    /// The JSON written to the store.
    pub fn to_json(&self) -> Vec<u8> {
        let f = StateFile {
            version: 1,
            cursor: self.cursor,
            last_segment: self.last.map(|l| l.number),
            last_header_digest: self.last.map(|l| l.header_digest.to_hex()),
            next_index: self.last.map(|l| l.end_index),
            head_link: self.last.map(|l| l.chain_head.to_hex()),
            key_in_effect: self.key_in_effect.map(|k| k.to_string()),
            gaps: self.gaps.clone(),
            witnessed_size: self.witnessed.map(|w| w.size),
            witnessed_root: self.witnessed.map(|w| w.root.to_hex()),
        };
        let mut v = serde_json::to_vec_pretty(&f).expect("state serialises");
        v.push(b'\n');
        v
    }

    /// Parses what [`HostState::to_json`] wrote.
    pub fn from_json(bytes: &[u8]) -> Result<Self, StateError> {
        let f: StateFile = serde_json::from_slice(bytes)?;
        let digest = |s: Option<String>, what| {
            s.map(|s| Digest::from_hex(&s).map_err(|_| StateError::Field(what)))
                .transpose()
        };
        let last = match (
            f.last_segment,
            digest(f.last_header_digest, "last_header_digest")?,
            f.next_index,
            digest(f.head_link, "head_link")?,
        ) {
            (Some(number), Some(header_digest), Some(end_index), Some(chain_head)) => {
                Some(LastSegment {
                    number,
                    header_digest,
                    end_index,
                    chain_head,
                })
            }
            (None, None, None, None) => None,
            _ => return Err(StateError::Field("last_segment")),
        };
        let key_in_effect = f
            .key_in_effect
            .map(|k| PublicKey::parse_one(&k).map_err(|_| StateError::Field("key_in_effect")))
            .transpose()?;
        if let Some(l) = last {
            if l.number.checked_add(1) != Some(f.cursor) {
                return Err(StateError::Field("cursor"));
            }
        }
        let witnessed = match (
            f.witnessed_size,
            digest(f.witnessed_root, "witnessed_root")?,
        ) {
            (Some(size), Some(root)) => Some(Witnessed { size, root }),
            (None, None) => None,
            _ => return Err(StateError::Field("witnessed_size")),
        };
        Ok(HostState {
            cursor: f.cursor,
            last,
            key_in_effect,
            gaps: f.gaps,
            witnessed,
        })
    }
}

impl Default for HostState {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let s = HostState {
            cursor: 8,
            last: Some(LastSegment {
                number: 7,
                header_digest: Digest([1; 32]),
                end_index: 99,
                chain_head: Digest([2; 32]),
            }),
            key_in_effect: Some(lineage_evidence::SecretKey::from_seed([3; 32]).public()),
            gaps: vec![Gap {
                first: 0,
                last: 2,
                declared: true,
            }],
            witnessed: Some(Witnessed {
                size: 8,
                root: Digest([4; 32]),
            }),
        };
        assert_eq!(HostState::from_json(&s.to_json()).unwrap(), s);
        assert_eq!(
            HostState::from_json(&HostState::new().to_json()).unwrap(),
            HostState::new()
        );
        assert!(HostState::from_json(b"{\"version\":1,\"cursor\":1,\"x\":1}").is_err());
    }
}

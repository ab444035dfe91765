//! The Lineage evidence format.
//!
//! Everything the agent records ends up as *entries* in one hash chain per host. Entries are
//! grouped into *segments*, each sealed by an Ed25519 signature over a fixed-size header that
//! commits to the chain head, a Merkle root over the segment's entries and the previous
//! segment's header. The exact bytes of each entry are what is hashed, stored and shipped;
//! nothing is ever re-serialised before it is verified.
//!
//! The crate is deliberately free of kernel and async dependencies so that the agent, a
//! collector and the `lineagectl` verifier share one implementation. The byte-exact
//! specification lives in `docs/FORMAT.md`; this crate is one implementation of it.
//!
//! Module map:
//! - [`digest`]: the 32-byte digest type and the domain-separated hash functions.
//! - [`entry`]: entry kinds, their encoders and the borrowing decoder.
//! - [`merkle`]: RFC 6962-shaped Merkle trees over any hash: roots, inclusion and consistency proofs.
//! - [`chain`]: [`chain::ChainWriter`], the append/seal state machine the agent drives.
//! - [`segment`]: the sealed segment header and file encoding, and its parser.
//! - [`keys`]: Ed25519 key generation, files, key ids.
//! - [`sealkeys`]: forward-secure sealing keys on disk (format version 2): enrolment, evolution, erasure.
//! - [`store`]: one immutable file per segment in a directory, written atomically.
//! - [`trust`]: which key may sign which segment (anchors, rotations, retired keys).
//! - [`verify`]: the offline verifier and its findings.
//! - [`proof`]: standalone single-entry inclusion proofs.
//! - [`rfc6962`]: the SHA-256 RFC 6962 tree of segment header digests that checkpoints commit to.
//! - [`checkpoint`]: C2SP signed notes, checkpoints, cosignatures and verifier keys.
//! - [`witnessed`]: verifying a log against the checkpoints its witnesses cosigned.
//! - [`witnessed_proof`]: an entry's proof carrying a cosigned checkpoint, standing alone.
//! - [`tlog`]: a log's `checkpoints/` directory (leaves, the latest checkpoint, cosigned ones).

pub mod chain;
pub mod checkpoint;
pub mod digest;
pub mod entry;
pub mod keys;
pub mod lock;
pub mod merkle;
pub mod proof;
pub mod rfc6962;
pub mod sealkeys;
pub mod segment;
pub mod store;
pub mod tlog;
pub mod trust;
pub mod verify;
mod wire;
pub mod witnessed;
pub mod witnessed_proof;

pub use chain::{ChainPosition, ChainState, ChainWriter};
pub use digest::{Digest, HostId};
pub use entry::{Entry, EntryKind};
pub use keys::{KeyId, PublicKey, SecretKey};
pub use proof::Proof;
pub use segment::{SealedSegment, SegmentHeader, SegmentView};
pub use store::SegmentStore;
pub use verify::{verify_dir, Finding, FindingKind, Outcome, Report, VerifyOptions};

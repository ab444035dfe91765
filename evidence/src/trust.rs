//! Which key may sign which segment (FORMAT.md §9.2 "Keys").
//!
//! The verifier walks the segments in order with a [`KeyTracker`]. Trusted keys are only
//! *starting anchors*: they admit the first segment the walk sees (or the first after a run of
//! absent segments, where the key in effect cannot be known). From then on only the key in
//! effect may sign: the same key (format version 1) until a KEY_ROTATION, whose old key is
//! then retired for good. Retirement is what makes rotation mean something: a stolen or
//! leaked retired key must not be able to append to the log, even if the verifier was told to
//! trust it once.
//!
//! Format version 2 (forward-secure sealing) uses the same walk with one-time keys: an accepted
//! version 2 segment retires its own key and puts the key its header commits to in effect. A
//! version 2 segment may also be accepted through an ENROLMENT entry in it, signed by a trusted
//! identity key, that certifies its key.

use std::collections::BTreeMap;

use crate::keys::PublicKey;

/// Why a key was retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retired {
    /// A KEY_ROTATION at this chain index replaced it.
    Rotation(u64),
    /// A one-time (format version 2) key that already signed this segment.
    Used(u64),
}

/// What the walk knows about the segment being judged.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// Its segment number.
    pub segment: u64,
    /// The key that signed it.
    pub key: PublicKey,
    /// Segment numbers are absent just before it.
    pub after_gap: bool,
    /// Format version 2: the key its header commits to for the next segment.
    pub next: Option<PublicKey>,
    /// Identity keys of the valid ENROLMENT entries in it that certify `key`.
    pub enrolled_by: &'a [PublicKey],
}

/// How a segment was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// By the key in effect.
    InEffect,
    /// By a trusted key as a starting anchor, or on first use.
    Anchor,
    /// By an ENROLMENT from a trusted identity key (or, without trusted keys, on first use).
    Enrolled(PublicKey),
}

/// Why a segment's key was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The key was retired earlier in the log.
    Retired(Retired),
    /// A trusted key, but another key is in effect (a pinned key is only a starting anchor).
    NotInEffect(PublicKey),
    /// Neither trusted nor reached by a valid rotation.
    Unknown {
        /// The key in effect, if any.
        in_effect: Option<PublicKey>,
    },
}

/// Why a KEY_ROTATION in an accepted segment is not honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationRefusal {
    /// Its old key is not the key that signed the segment.
    OldKeyNotSigner,
    /// The old key's signature does not verify.
    BadSignature,
    /// The segment already changed the key once.
    SecondRotation,
    /// The new key was retired earlier.
    NewKeyRetired,
    /// KEY_ROTATION has no meaning in a format version 2 segment.
    ForwardSecure,
}

/// The key state of a verification walk.
#[derive(Debug, Clone)]
pub struct KeyTracker {
    trusted: Vec<PublicKey>,
    in_effect: Option<PublicKey>,
    retired: BTreeMap<[u8; 32], Retired>,
}

impl KeyTracker {
    /// A walk anchored at `trusted` (empty: trust on first use).
    pub fn new(trusted: &[PublicKey]) -> Self {
        KeyTracker {
            trusted: trusted.to_vec(),
            in_effect: None,
            retired: BTreeMap::new(),
        }
    }

    /// The key that must sign the next segment, if known.
    pub fn in_effect(&self) -> Option<PublicKey> {
        self.in_effect
    }

    /// Whether `key` has been retired, and why.
    pub fn retired(&self, key: &PublicKey) -> Option<Retired> {
        self.retired.get(key.as_bytes()).copied()
    }

    /// Judges the next segment in the walk. On acceptance the key in effect becomes its key
    /// (version 1) or the key its header commits to (version 2, whose own key is retired).
    pub fn accept(&mut self, s: &Signed<'_>) -> Result<Accepted, Refusal> {
        let how = self.judge(s)?;
        match s.next {
            Some(next) => {
                self.retired
                    .insert(*s.key.as_bytes(), Retired::Used(s.segment));
                self.in_effect = Some(next);
            }
            None => self.in_effect = Some(s.key),
        }
        Ok(how)
    }

    /// Version 1 shorthand: a segment signed by `key` with no enrolment.
    pub fn accept_v1(
        &mut self,
        segment: u64,
        key: PublicKey,
        after_gap: bool,
    ) -> Result<Accepted, Refusal> {
        self.accept(&Signed {
            segment,
            key,
            after_gap,
            next: None,
            enrolled_by: &[],
        })
    }

    fn judge(&self, s: &Signed<'_>) -> Result<Accepted, Refusal> {
        let key = s.key;
        // Retirement first: a version 2 header may even commit to its own (now used) key.
        if let Some(r) = self.retired(&key) {
            return Err(Refusal::Retired(r));
        }
        if self.in_effect == Some(key) {
            return Ok(Accepted::InEffect);
        }
        let first_use = self.trusted.is_empty() && self.in_effect.is_none();
        if let Some(id) = s
            .enrolled_by
            .iter()
            .find(|id| first_use || self.trusted.contains(id))
        {
            return Ok(Accepted::Enrolled(*id));
        }
        let anchor_allowed = self.in_effect.is_none() || s.after_gap;
        // Without trusted keys: trust on first use, only the very first segment of the walk.
        if first_use || (anchor_allowed && self.trusted.contains(&key)) {
            return Ok(Accepted::Anchor);
        }
        match self.in_effect {
            Some(k) if self.trusted.contains(&key) => Err(Refusal::NotInEffect(k)),
            in_effect => Err(Refusal::Unknown { in_effect }),
        }
    }

    /// Applies a KEY_ROTATION at chain `index` of an accepted segment signed by `signer`.
    /// `signature_ok` is the rotation signature check; `first_in_segment` is false for a
    /// second rotation in the same segment. On success the old key is retired and the new
    /// one is in effect from the next segment on.
    pub fn rotate(
        &mut self,
        signer: PublicKey,
        old: PublicKey,
        new: PublicKey,
        index: u64,
        signature_ok: bool,
        first_in_segment: bool,
    ) -> Result<(), RotationRefusal> {
        if old != signer {
            return Err(RotationRefusal::OldKeyNotSigner);
        }
        if !signature_ok {
            return Err(RotationRefusal::BadSignature);
        }
        if !first_in_segment {
            return Err(RotationRefusal::SecondRotation);
        }
        if new == old || self.retired(&new).is_some() {
            return Err(RotationRefusal::NewKeyRetired);
        }
        self.retired
            .insert(*old.as_bytes(), Retired::Rotation(index));
        self.in_effect = Some(new);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    fn k(seed: u8) -> PublicKey {
        SecretKey::from_seed([seed; 32]).public()
    }

    #[test]
    fn a_pinned_key_is_only_a_starting_anchor() {
        let mut t = KeyTracker::new(&[k(1), k(2)]);
        t.accept_v1(0, k(1), false).unwrap();
        // k(2) is trusted, but k(1) is in effect and no rotation introduced k(2).
        assert_eq!(t.accept_v1(0, k(2), false), Err(Refusal::NotInEffect(k(1))));
        // After a gap the key in effect is unknown: a trusted key may anchor again.
        t.accept_v1(0, k(2), true).unwrap();
        assert_eq!(t.in_effect(), Some(k(2)));
    }

    #[test]
    fn a_rotation_retires_the_old_key_for_good() {
        let mut t = KeyTracker::new(&[k(1)]);
        t.accept_v1(0, k(1), false).unwrap();
        t.rotate(k(1), k(1), k(2), 7, true, true).unwrap();
        assert_eq!(
            t.accept_v1(0, k(1), false),
            Err(Refusal::Retired(Retired::Rotation(7)))
        );
        // Not even after a gap, although k(1) is trusted.
        assert_eq!(
            t.accept_v1(0, k(1), true),
            Err(Refusal::Retired(Retired::Rotation(7)))
        );
        t.accept_v1(0, k(2), false).unwrap();
        // Rotating back to a retired key is refused.
        assert_eq!(
            t.rotate(k(2), k(2), k(1), 9, true, true),
            Err(RotationRefusal::NewKeyRetired)
        );
        assert_eq!(
            t.rotate(k(2), k(2), k(3), 9, true, false),
            Err(RotationRefusal::SecondRotation)
        );
        assert_eq!(
            t.rotate(k(2), k(3), k(4), 9, true, true),
            Err(RotationRefusal::OldKeyNotSigner)
        );
    }

    fn v2<'a>(
        segment: u64,
        key: PublicKey,
        next: PublicKey,
        enrolled_by: &'a [PublicKey],
    ) -> Signed<'a> {
        Signed {
            segment,
            key,
            after_gap: false,
            next: Some(next),
            enrolled_by,
        }
    }

    #[test]
    fn forward_secure_keys_chain_from_an_enrolment() {
        let identity = k(9);
        let mut t = KeyTracker::new(&[identity]);
        // The first key is only accepted through the identity's certificate.
        assert!(t.accept(&v2(0, k(1), k(2), &[])).is_err());
        assert_eq!(
            t.accept(&v2(0, k(1), k(2), &[identity])),
            Ok(Accepted::Enrolled(identity))
        );
        assert_eq!(t.accept(&v2(1, k(2), k(3), &[])), Ok(Accepted::InEffect));
        // A key that already signed cannot sign again, nor can an uncommitted one.
        assert_eq!(
            t.accept(&v2(2, k(2), k(4), &[])),
            Err(Refusal::Retired(Retired::Used(1)))
        );
        assert!(matches!(
            t.accept(&v2(2, k(5), k(6), &[])),
            Err(Refusal::Unknown { .. })
        ));
        // An enrolment by an untrusted identity does not help.
        assert!(t.accept(&v2(2, k(5), k(6), &[k(8)])).is_err());
        t.accept(&v2(2, k(3), k(4), &[])).unwrap();
    }

    #[test]
    fn without_trusted_keys_only_the_first_segment_is_taken_on_trust() {
        let mut t = KeyTracker::new(&[]);
        t.accept_v1(0, k(5), false).unwrap();
        assert!(matches!(
            t.accept_v1(0, k(6), true),
            Err(Refusal::Unknown { .. })
        ));
    }
}

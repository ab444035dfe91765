//! Checkpoints and cosignatures in the transparency-log ecosystem's formats (C2SP
//! `signed-note`, `tlog-checkpoint`, `tlog-cosignature`), so that off-the-shelf witnesses and
//! checkers can hold a Lineage agent to one append-only history of segments.
//!
//! A Lineage checkpoint commits to the RFC 6962 SHA-256 tree ([`crate::rfc6962`]) whose leaf
//! i is segment i's header digest. Its origin is `lineage/<host id hex>`; the agent signs it
//! with the key that signed the newest segment in the tree (signature type 0x01, key name =
//! origin). A witness (the collector) adds a timestamped `cosignature/v1` (type 0x04) after
//! checking a consistency proof from the last checkpoint it cosigned. docs/FORMAT.md §12
//! specifies all of it byte for byte.

use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::digest::{Digest, HostId};
use crate::keys::{PublicKey, SecretKey, SIGNATURE_LEN};

/// Signature type of plain Ed25519 note signatures (C2SP signed-note).
pub const SIG_ED25519: u8 = 0x01;
/// Signature type of timestamped Ed25519 cosignatures (C2SP tlog-cosignature).
pub const SIG_COSIGNATURE_V1: u8 = 0x04;
/// Largest note accepted (a checkpoint with many cosignatures is far smaller).
pub const MAX_NOTE_LEN: usize = 64 * 1024;
/// Most signature lines accepted (C2SP asks verifiers to accept at least 16).
pub const MAX_SIGNATURES: usize = 100;
/// The em dash and space that start a signature line.
const SIG_PREFIX: &str = "\u{2014} ";
/// Header line of the cosigned message.
const COSIGNATURE_HEADER: &str = "cosignature/v1\n";

/// Note, checkpoint and key parse errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Longer than [`MAX_NOTE_LEN`] or with more than [`MAX_SIGNATURES`] signatures.
    #[error("note too large")]
    TooLarge,
    /// Not UTF-8, or holds a control character other than newline.
    #[error("note is not UTF-8 text without control characters")]
    NotText,
    /// No blank line separating the text from the signatures, or no signature.
    #[error("note has no signature block")]
    NoSignatures,
    /// A signature line is not `— <name> <base64>`.
    #[error("malformed signature line {0}")]
    BadSignatureLine(usize),
    /// The checkpoint body is not origin, size, root hash.
    #[error("malformed checkpoint body: {0}")]
    BadCheckpoint(&'static str),
    /// A verifier key string is not `<name>+<hex id>+<base64(type || key)>` or its id is wrong.
    #[error("malformed verifier key: {0}")]
    BadVerifierKey(&'static str),
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// The 32-bit key id (big-endian on the wire).
    pub key_id: u32,
    /// The signature bytes after the key id.
    pub sig: Vec<u8>,
}

impl NoteSignature {
    /// `— <name> <base64(key id || sig)>\n`.
    pub fn to_line(&self) -> String {
        let mut raw = self.key_id.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.sig);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }

    /// Parses one line without its newline.
    fn parse_line(line: &str, n: usize) -> Result<Self, NoteError> {
        let bad = || NoteError::BadSignatureLine(n);
        let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(bad)?;
        let (name, b64) = rest.split_once(' ').ok_or_else(bad)?;
        if !valid_key_name(name) {
            return Err(bad());
        }
        let raw = B64.decode(b64).map_err(|_| bad())?;
        if raw.len() < 4 {
            return Err(bad());
        }
        Ok(NoteSignature {
            name: name.to_owned(),
            key_id: u32::from_be_bytes(raw[..4].try_into().expect("4 bytes")),
            sig: raw[4..].to_vec(),
        })
    }
}

/// Key names are non-empty and hold no Unicode space and no `+`.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// `SHA-256(name || 0x0A || type || public key)[:4]`, big-endian.
pub fn key_id(name: &str, sig_type: u8, key: &PublicKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', sig_type]);
    h.update(key.as_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A signed note: text (ending in a newline) and its signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, including its final newline.
    pub text: String,
    /// Signature lines in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a signed note: text, a blank line, one or more signature lines.
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() > MAX_NOTE_LEN {
            return Err(NoteError::TooLarge);
        }
        let s = std::str::from_utf8(bytes).map_err(|_| NoteError::NotText)?;
        if s.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::NotText);
        }
        // The text ends at the last blank line; it keeps its own final newline.
        let split = s.rfind("\n\n").ok_or(NoteError::NoSignatures)?;
        let (text, sigs) = (&s[..split + 1], &s[split + 2..]);
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(NoteError::NoSignatures);
        }
        let lines: Vec<&str> = sigs[..sigs.len() - 1].split('\n').collect();
        if lines.len() > MAX_SIGNATURES {
            return Err(NoteError::TooLarge);
        }
        let signatures = lines
            .iter()
            .enumerate()
            .map(|(i, l)| NoteSignature::parse_line(l, i + 1))
            .collect::<Result<_, _>>()?;
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note as text: body, blank line, signature lines.
    pub fn to_text(&self) -> String {
        let mut s = self.text.clone();
        s.push('\n');
        for sig in &self.signatures {
            s.push_str(&sig.to_line());
        }
        s
    }

    /// Signature lines whose name and key id are those of `(name, type, key)`.
    fn candidates<'a>(
        &'a self,
        name: &'a str,
        sig_type: u8,
        key: &PublicKey,
    ) -> impl Iterator<Item = &'a NoteSignature> + 'a {
        let id = key_id(name, sig_type, key);
        self.signatures
            .iter()
            .filter(move |s| s.name == name && s.key_id == id)
    }

    /// Is there a valid Ed25519 (type 0x01) signature by `key` under `name`, and no invalid
    /// one? Signatures of other keys are ignored, as C2SP requires.
    pub fn verify_ed25519(&self, name: &str, key: &PublicKey) -> bool {
        let mut any = false;
        for s in self.candidates(name, SIG_ED25519, key) {
            let Ok(sig) = <[u8; SIGNATURE_LEN]>::try_from(&s.sig[..]) else {
                return false;
            };
            if !key.verify(self.text.as_bytes(), &sig) {
                return false;
            }
            any = true;
        }
        any
    }

    /// The timestamps of valid cosignatures by `witness`; `None` if a cosignature line of that
    /// witness does not verify (the note is then to be rejected).
    pub fn cosignatures_by(&self, witness: &VerifierKey) -> Option<Vec<u64>> {
        self.candidates(&witness.name, SIG_COSIGNATURE_V1, &witness.key)
            .map(|s| verify_cosignature(&self.text, s, &witness.key))
            .collect()
    }
}

/// The origin line of a host's log.
pub fn origin(host: &HostId) -> String {
    format!("lineage/{}", host.to_hex())
}

/// A checkpoint body: origin, tree size, root hash (no extension lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The host whose log this is (its origin is [`origin`]).
    pub host: HostId,
    /// Number of leaves (segments).
    pub size: u64,
    /// RFC 6962 root hash of the first `size` segment header digests.
    pub root: Digest,
}

impl Checkpoint {
    /// The note text: three lines, each ending in a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            origin(&self.host),
            self.size,
            B64.encode(self.root.0)
        )
    }

    /// Parses a Lineage checkpoint body (exactly the three mandatory lines).
    pub fn parse_body(text: &str) -> Result<Self, NoteError> {
        let bad = NoteError::BadCheckpoint;
        let body = text.strip_suffix('\n').ok_or(bad("no final newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin_line, size, root] = lines[..] else {
            return Err(bad("a Lineage checkpoint has exactly three lines"));
        };
        let host = origin_line
            .strip_prefix("lineage/")
            .and_then(|h| (h.len() == 32).then_some(h))
            .and_then(|h| HostId::from_hex(h).ok())
            .filter(|h| origin(h) == origin_line)
            .ok_or(bad("origin is not lineage/<32 lowercase hex>"))?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad("tree size is not a decimal without leading zeroes"));
        }
        let size = size.parse().map_err(|_| bad("tree size exceeds 64 bits"))?;
        let root: [u8; 32] = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(bad("root hash is not 32 bytes of base64"))?;
        let cp = Checkpoint {
            host,
            size,
            root: Digest(root),
        };
        // Only the canonical encoding is accepted, so a checkpoint has one text.
        if cp.body() != text {
            return Err(bad("not in canonical form"));
        }
        Ok(cp)
    }

    /// Signs the checkpoint as the log: a note with one Ed25519 signature under the origin.
    pub fn sign(&self, key: &SecretKey) -> Note {
        let text = self.body();
        let name = origin(&self.host);
        let sig = NoteSignature {
            key_id: key_id(&name, SIG_ED25519, &key.public()),
            name,
            sig: key.sign(text.as_bytes()).to_vec(),
        };
        Note {
            text,
            signatures: vec![sig],
        }
    }
}

/// The message a `cosignature/v1` signs.
pub fn cosigned_message(body: &str, timestamp: u64) -> Vec<u8> {
    format!("{COSIGNATURE_HEADER}time {timestamp}\n{body}").into_bytes()
}

/// A timestamped cosignature line by the witness `(name, key)` on a checkpoint body.
pub fn cosign(body: &str, name: &str, key: &SecretKey, timestamp: u64) -> NoteSignature {
    let mut sig = timestamp.to_be_bytes().to_vec();
    sig.extend_from_slice(&key.sign(&cosigned_message(body, timestamp)));
    NoteSignature {
        name: name.to_owned(),
        key_id: key_id(name, SIG_COSIGNATURE_V1, &key.public()),
        sig,
    }
}

/// Checks one cosignature line against `key`; its timestamp if valid.
pub fn verify_cosignature(body: &str, s: &NoteSignature, key: &PublicKey) -> Option<u64> {
    if s.sig.len() != 8 + SIGNATURE_LEN {
        return None;
    }
    let ts = u64::from_be_bytes(s.sig[..8].try_into().expect("8 bytes"));
    let sig: [u8; SIGNATURE_LEN] = s.sig[8..].try_into().expect("64 bytes");
    (ts <= i64::MAX as u64 && key.verify(&cosigned_message(body, ts), &sig)).then_some(ts)
}

/// A C2SP verifier key: `<name>+<8 hex: key id>+<base64(type || 32-byte key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    /// Key name.
    pub name: String,
    /// Signature type (0x01 note signer, 0x04 cosigner).
    pub sig_type: u8,
    /// The Ed25519 public key.
    pub key: PublicKey,
}

impl VerifierKey {
    /// The key id.
    pub fn key_id(&self) -> u32 {
        key_id(&self.name, self.sig_type, &self.key)
    }

    /// Parses a verifier key, checking its key id. Surrounding whitespace is ignored.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let bad = NoteError::BadVerifierKey;
        // Names and ids hold no `+`; the base64 key may.
        let mut parts = s.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected <name>+<key id>+<key>"));
        };
        if !valid_key_name(name) {
            return Err(bad("invalid key name"));
        }
        let id = u32::from_str_radix(id, 16)
            .ok()
            .filter(|_| id.len() == 8)
            .ok_or(bad("key id is not 8 hex digits"))?;
        let raw = B64.decode(b64).map_err(|_| bad("key is not base64"))?;
        let (&sig_type, key) = raw.split_first().ok_or(bad("empty key"))?;
        if sig_type != SIG_ED25519 && sig_type != SIG_COSIGNATURE_V1 {
            return Err(bad("only Ed25519 (0x01) and cosignature/v1 (0x04) keys"));
        }
        let key: [u8; 32] = key.try_into().map_err(|_| bad("key is not 32 bytes"))?;
        let vk = VerifierKey {
            name: name.to_owned(),
            sig_type,
            key: PublicKey::from_bytes(key),
        };
        if vk.key_id() != id {
            return Err(bad("key id does not match name and key"));
        }
        Ok(vk)
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = vec![self.sig_type];
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.key_id(), B64.encode(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: HostId = HostId([0x11; 16]);

    fn cp() -> Checkpoint {
        Checkpoint {
            host: HOST,
            size: 42,
            root: Digest([7; 32]),
        }
    }

    #[test]
    fn body_round_trips_and_only_canonical_bodies_parse() {
        let c = cp();
        let body = c.body();
        assert_eq!(
            body,
            format!(
                "lineage/{}\n42\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
                "11".repeat(16)
            )
        );
        assert_eq!(Checkpoint::parse_body(&body).unwrap(), c);
        for bad in [
            body.replace("\n42\n", "\n042\n"),
            body.replace("\n42\n", "\n-1\n"),
            body.replace("lineage/", "lineage:/"),
            body.trim_end().to_owned(),
            format!("{body}extension\n"),
            body.replace("Bwc=", "Bw=="),
        ] {
            assert!(Checkpoint::parse_body(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_signed_checkpoint_verifies_only_with_its_key_and_text() {
        let k = SecretKey::from_seed([1; 32]);
        let other = SecretKey::from_seed([2; 32]);
        let note = cp().sign(&k);
        let text = note.to_text();
        let parsed = Note::parse(text.as_bytes()).unwrap();
        assert_eq!(parsed, note);
        let name = origin(&HOST);
        assert!(parsed.verify_ed25519(&name, &k.public()));
        assert!(!parsed.verify_ed25519(&name, &other.public()));
        assert!(!parsed.verify_ed25519("lineage/other", &k.public()));
        // A changed size invalidates the signature.
        let forged = Note::parse(text.replace("\n42\n", "\n43\n").as_bytes()).unwrap();
        assert!(!forged.verify_ed25519(&name, &k.public()));
    }

    #[test]
    fn cosignatures_carry_a_time_and_bind_the_body() {
        let log = SecretKey::from_seed([1; 32]);
        let w = SecretKey::from_seed([3; 32]);
        let vk = VerifierKey {
            name: "collector.example/w1".into(),
            sig_type: SIG_COSIGNATURE_V1,
            key: w.public(),
        };
        let mut note = cp().sign(&log);
        let c = cosign(&note.text, &vk.name, &w, 1_700_000_000);
        assert_eq!(c.sig.len(), 72);
        note.signatures.push(c.clone());
        let parsed = Note::parse(note.to_text().as_bytes()).unwrap();
        assert_eq!(parsed.cosignatures_by(&vk), Some(vec![1_700_000_000]));
        // The log's signature is unaffected by the cosignature line and vice versa.
        assert!(parsed.verify_ed25519(&origin(&HOST), &log.public()));
        // On another body, or with the time changed, it fails.
        let other = Checkpoint { size: 43, ..cp() }.body();
        assert_eq!(verify_cosignature(&other, &c, &w.public()), None);
        let mut moved = c.clone();
        moved.sig[7] ^= 1;
        assert_eq!(verify_cosignature(&note.text, &moved, &w.public()), None);
        // A note without any line of this witness has no cosignature of it.
        assert_eq!(cp().sign(&log).cosignatures_by(&vk), Some(vec![]));
    }

    #[test]
    fn verifier_keys_round_trip_and_check_their_id() {
        let vk = VerifierKey {
            name: "collector".into(),
            sig_type: SIG_COSIGNATURE_V1,
            key: SecretKey::from_seed([3; 32]).public(),
        };
        let s = vk.to_string();
        assert_eq!(VerifierKey::parse(&format!(" {s}\n")).unwrap(), vk);
        let (name, rest) = s.split_once('+').unwrap();
        assert!(VerifierKey::parse(&format!("{name}x+{rest}")).is_err());
        assert!(VerifierKey::parse("a+b").is_err());
    }

    #[test]
    fn malformed_notes_are_refused() {
        let note = cp().sign(&SecretKey::from_seed([1; 32])).to_text();
        for bad in [
            note.replace('\u{2014}', "-"),
            note.replace("\n\n", "\n"),
            format!("{note}\u{7}"),
            note.trim_end().to_owned(),
            note.replace(" lineage/", " lineage/a+b "),
        ] {
            assert!(Note::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert_eq!(
            Note::parse(&vec![b'a'; MAX_NOTE_LEN + 1]),
            Err(NoteError::TooLarge)
        );
    }
}

//! A whole hostile directory: the input is split into several "files" (u16 length prefixes,
//! the byte before each naming its slot) and fed to the verifier, exercising the
//! cross-segment logic (ordering, replay, gaps, keys, known heads) on arbitrary headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lineage_evidence::verify::{KnownHead, Verifier, VerifyOptions};
use lineage_evidence::{Digest, SecretKey};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let opts = VerifyOptions {
        trusted_keys: if mode & 1 == 1 {
            vec![SecretKey::from_seed([1; 32]).public()]
        } else {
            vec![]
        },
        known_head: match mode >> 6 {
            1 => Some(KnownHead::Segment {
                number: u64::from(mode & 0x3f),
                digest: Digest([mode; 32]),
            }),
            2 => Some(KnownHead::Entry {
                index: u64::from(mode & 0x3f),
                link: Digest([mode; 32]),
            }),
            _ => None,
        },
    };
    let mut v = Verifier::new(opts);
    while rest.len() >= 3 {
        let slot = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let name = if slot == 0xff {
            None
        } else {
            Some(u64::from(slot))
        };
        v.add_file("fuzz", name, &rest[3..3 + len]);
        rest = &rest[3 + len..];
    }
    let _ = v.finish();
});

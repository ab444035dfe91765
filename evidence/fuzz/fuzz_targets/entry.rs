//! Entry bytes: the decoder of every entry kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lineage_evidence::entry::Entry;

fuzz_target!(|data: &[u8]| {
    let _ = Entry::parse(data);
});

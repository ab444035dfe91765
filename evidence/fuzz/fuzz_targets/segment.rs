//! A segment file from an untrusted directory: parse, check, and run the per-file verifier.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lineage_evidence::segment::SegmentView;
use lineage_evidence::verify::{Verifier, VerifyOptions};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = SegmentView::parse(data) {
        let _ = v.check(&mut Vec::new());
        assert_eq!(v.entries().count() as u64, v.header.entry_count);
    }
    let mut verifier = Verifier::new(VerifyOptions::default());
    verifier.add_file("fuzz", Some(0), data);
    let _ = verifier.finish();
});

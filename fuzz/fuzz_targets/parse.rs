//! `cargo +nightly fuzz run parse` (or `cargo fuzz run parse`): the parser, service grouping and
//! diff must not panic on any input.
#![no_main]

use kindred::rules::{Options, compare, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = parse(text) {
        let c = compare(&d, &d, &Options::default());
        assert!(c.equal);
    }
    if let Ok(d) = kindred::rules::nft::parse(text) {
        let c = kindred::rules::diff::compare_nft(&d, &d, &Options::default());
        assert!(c.equal);
    }
});

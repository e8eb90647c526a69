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
    // Both nftables grammars (`nft list`, with handles and every table of a ruleset, and
    // knftables' transactions), and the diff of two different inputs (not the equal-text
    // shortcut): the first and second half.
    let mut mid = text.len() / 2;
    while !text.is_char_boundary(mid) {
        mid -= 1;
    }
    let (a, b) = text.split_at(mid);
    for all_tables in [false, true] {
        if let Ok(d) = kindred::rules::nft::parse_tables(text.to_string(), all_tables) {
            let c = kindred::rules::diff::compare_nft(&d, &d, &Options::default());
            assert!(c.equal);
            if let Ok(e) = kindred::rules::nft::parse_tables(a.to_string(), all_tables) {
                let _ = kindred::rules::diff::compare_nft(&d, &e, &Options::default());
            }
        }
    }
    if let (Ok(x), Ok(y)) = (parse(a), parse(b)) {
        let _ = compare(&x, &y, &Options::default());
    }
});

//! `cargo fuzz run recording`: the recording reader must answer every input with a recording or
//! a file:line error, never a panic; what it reads writes back to what it reads.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match kindred::backend::recording::parse(text, "fuzz.jsonl") {
        Ok(r) => {
            let again = kindred::backend::recording::parse(&r.to_jsonl(), "again").unwrap();
            assert_eq!(again.records, r.records);
            assert_eq!(again.complete, r.complete);
        }
        Err(e) => assert!(e.line >= 1),
    }
});

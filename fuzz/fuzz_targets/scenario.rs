//! `cargo fuzz run scenario`: the scenario parser (YAML with budgets, then validation) must
//! answer every input with a scenario or a file:line error, never a panic or a long parse.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = kindred::scenario::Scenario::parse(text, "fuzz.yaml") {
        assert!(e.line >= 1);
    }
});

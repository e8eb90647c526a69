//! Property tests: no input makes the parser or the diff panic, and a dump always equals itself.

use kindred::rules::{Options, compare, parse};
use proptest::prelude::*;

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*nat".to_string()),
        Just("*filter".to_string()),
        Just("COMMIT".to_string()),
        "[:A-Z\\-]{1,20} [A-Z\\-]{1,6} \\[[0-9]{1,3}:[0-9]{1,3}\\]",
        "-A KUBE-(SVC|SEP|XLB|EXT|SVL|FW)-[A-Z0-9]{4} (-m comment --comment \"[a-z]{1,3}/[a-z]{1,3}:?[a-z]{0,2}( [a-z ]{0,8})?\" )?(-p tcp --dport [0-9]{1,5} )?-j KUBE-(SVC|SEP|MARK-MASQ|SVL)-[A-Z0-9]{4}",
        "-A KUBE-(SERVICES|NODEPORTS) -d [0-9.]{7,15}(/32)? -m comment --comment \"[a-z]{1,3}/[a-z]{1,3} (cluster IP|loadbalancer IP)\" -j KUBE-(SVC|EXT|FW)-[A-Z0-9]{4}",
        "-[ANP] [A-Z\\-]{0,12}( -c [0-9]{1,3} [0-9]{1,3})?",
        "\\[[0-9:]{0,5}\\] -A [A-Z]{1,5} .{0,20}",
        ".{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parser_never_panics(s in ".{0,400}") {
        let _ = parse(s.clone());
        let _ = kindred::rules::nft::parse(&s);
    }

    #[test]
    fn nft_like_input_never_panics(lines in prop::collection::vec(prop_oneof![
        Just("table ip kube-proxy {".to_string()),
        Just("}".to_string()),
        "chain (service|external|endpoint)-[A-Z0-9]{8}-[a-z]{1,3}/[a-z]{1,3}/tcp/[a-z]{0,3}(__10\\.0\\.0\\.[0-9]/80)? \\{",
        "map service-ips \\{",
        "elements = \\{ [0-9.]{7,12} \\. tcp \\. [0-9]{1,5} : goto service-[A-Z0-9]{8}-a/b/tcp/(, )?",
        "ip daddr [0-9.]{7,12} tcp dport [0-9]{1,5} jump mark-for-masquerade",
        "add (rule|element|chain) ip kube-proxy .{0,40}",
        ".{0,30}",
    ], 0..30)) {
        let text = lines.join("\n");
        if let Ok(d) = kindred::rules::nft::parse(&text) {
            let c = kindred::rules::diff::compare_nft(&d, &d, &Default::default());
            prop_assert!(c.equal);
        }
    }

    #[test]
    fn rule_like_input_never_panics_and_equals_itself(lines in prop::collection::vec(line(), 0..40)) {
        let text = lines.join("\n");
        if let Ok(d) = parse(text.clone()) {
            let c = compare(&d, &d, &Options::default());
            prop_assert!(c.equal);
            let raw = compare(&d, &d, &Options { raw: true, ..Options::default() });
            prop_assert!(raw.equal);
            let _ = kindred::rules::render::text(&c, true);
        }
    }
}

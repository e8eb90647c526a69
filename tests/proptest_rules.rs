//! Property tests: no input makes the parser or the diff panic, and a dump always equals itself.

#[allow(dead_code)] // the synthetic dumps only
#[path = "common/synth.rs"]
mod synth;

use kindred::rules::{Options, compare, compare_texts, parse};
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

/// The k3s dump's blocks (chains, maps, sets) and the table around them.
fn k3s_blocks() -> (String, Vec<String>) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/nftables/k3s-real-nft-list-table-ip-kube-proxy.txt"
    ))
    .unwrap();
    let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let mut blocks = Vec::new();
    let mut cur = String::new();
    for l in &body[2..body.len() - 1] {
        if l.trim().is_empty() {
            if !cur.is_empty() {
                blocks.push(std::mem::take(&mut cur));
            }
            continue;
        }
        cur.push_str(l);
        cur.push('\n');
    }
    if !cur.is_empty() {
        blocks.push(cur);
    }
    (body[0].to_string(), blocks)
}

/// Reverse the branches of every `vmap { ... }` and the elements of every one-line list.
fn reorder(block: &str, rev: bool) -> String {
    if !rev {
        return block.to_string();
    }
    block
        .lines()
        .map(|l| match (l.find("{ "), l.rfind(" }")) {
            (Some(a), Some(b)) if a < b && !l.trim_end().ends_with('{') => {
                let mut parts: Vec<&str> = l[a + 2..b].split(", ").collect();
                parts.reverse();
                format!("{}{}{}", &l[..a + 2], parts.join(", "), &l[b..])
            }
            _ => l.to_string(),
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Chain, map and set order, element and vmap branch order, `nft -a` handles and counters
    /// never change the verdict.
    #[test]
    fn nft_noise_never_changes_the_verdict(
        order in Just((0..20usize).collect::<Vec<_>>()).prop_shuffle(),
        rev in any::<bool>(),
        handle in 1u32..100_000,
        packets in 0u64..1_000_000,
    ) {
        let (head, blocks) = k3s_blocks();
        let mut shuffled: Vec<&String> = order.iter().filter_map(|&i| blocks.get(i)).collect();
        shuffled.extend(blocks.iter().skip(20));
        let mut body = String::new();
        for (k, b) in shuffled.iter().enumerate() {
            let b = reorder(b, rev).replace(
                "jump mark-for-masquerade\n",
                &format!("counter packets {packets} bytes {} jump mark-for-masquerade # handle {}\n", packets * 60, handle + k as u32),
            );
            body.push_str(&b);
            body.push('\n');
        }
        let original = format!("{head}\n{}}}\n", blocks.iter().map(|b| format!("{b}\n")).collect::<String>());
        let noisy = format!("{head} # handle {handle}\n{body}}}\n");
        let a = kindred::rules::nft::parse(&original).unwrap();
        let b = kindred::rules::nft::parse(&noisy).unwrap();
        let c = kindred::rules::diff::compare_nft(&a, &b, &Options::default());
        prop_assert!(c.equal, "{}", kindred::rules::render::text(&c, false));
    }

    /// iptables: the order chains are declared in and the interleaving of different chains'
    /// rules never change the verdict; two different dumps compare without panicking, and the
    /// filtered comparison is the unfiltered one's entry.
    #[test]
    fn iptables_chain_order_never_changes_the_verdict(seed in 0u64..1000) {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/iptables/k8s-proxier_test-TestOverallIPTablesRules.txt"
        ))
        .unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        // Stable-sort rule lines by a seeded key of their chain: whole chains move, each chain's
        // own order stays.
        let key = |l: &str| -> u64 {
            let chain = l.split_whitespace().nth(1).unwrap_or("");
            chain.bytes().fold(seed, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)) % 97
        };
        let mut out: Vec<String> = Vec::new();
        let mut block: Vec<&str> = Vec::new();
        for l in &lines {
            if l.starts_with("-A ") || l.starts_with(':') {
                block.push(l);
                continue;
            }
            block.sort_by_key(|l| (!l.starts_with(':'), key(l)));
            out.extend(block.drain(..).map(str::to_string));
            out.push(l.to_string());
        }
        out.extend(block.drain(..).map(str::to_string));
        let shuffled = out.join("\n") + "\n";
        let (a, b) = (parse(lines.join("\n") + "\n").unwrap(), parse(shuffled).unwrap());
        let c = compare(&a, &b, &Options::default());
        prop_assert!(c.equal, "{}", kindred::rules::render::text(&c, false));
        // Filtering picks the same entry out of the whole comparison.
        if let Some(s) = c.services.first() {
            let f = kindred::rules::ServiceFilter::parse(&s.service).unwrap();
            let one = compare(&a, &b, &Options { service: Some(f), ..Options::default() });
            prop_assert_eq!(&one.services[0], s);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Two different clusters' dumps (other IPs, NodePorts, hashes, order; one side with the
    /// change or not), in both formats: the whole diff runs (no equal-text shortcut), exactly the
    /// changed Services differ, and filtering to any Service gives the whole comparison's entry.
    #[test]
    fn different_dumps_diff_fully_and_filtering_agrees(
        seeds in (1u64..500, 501u64..1000),
        change in any::<bool>(),
        nft in any::<bool>(),
        pick in 0usize..1000,
    ) {
        let spec = |seed, change| synth::Spec { services: 120, seed, change, ..synth::Spec::default() };
        let make = if nft { synth::nft_dump } else { synth::dump };
        let (a, b) = (make(&spec(seeds.0, false)), make(&spec(seeds.1, change)));
        prop_assert_ne!(&a, &b);
        let c = compare_texts(&a, &b, &Options::default()).unwrap();
        prop_assert_eq!(c.services.len(), 120);
        let changed: Vec<&str> = c.changed().map(|s| s.service.as_str()).collect();
        // Every 100th Service is the changed kind (an eTP=Local LoadBalancer): 0 and 100.
        let want: Vec<&str> = if change { vec!["ns0/svc0:p80", "ns3/svc100:p80"] } else { vec![] };
        prop_assert_eq!(changed, want);
        let s = &c.services[pick % c.services.len()];
        let f = kindred::rules::ServiceFilter::parse(&s.service).unwrap();
        let one = compare_texts(&a, &b, &Options { service: Some(f), ..Options::default() }).unwrap();
        prop_assert_eq!(one.services.len(), 1);
        prop_assert_eq!(&one.services[0], s);
    }
}

/// A Service whose `n` remote endpoints (numbered `first..first+n`, so two clusters name them
/// differently) are reached by a vmap sending branch k to endpoint `to[k]`.
fn vmap_table(n: usize, to: &[usize], first: usize) -> String {
    let ep = |i: usize| {
        let x = first + i;
        format!(
            "endpoint-{:08}-d/s/tcp/__10.244.{}.{}/80",
            x,
            x / 200,
            x % 200 + 1
        )
        .replace("-0", "-A")
    };
    let branches: Vec<String> = to
        .iter()
        .enumerate()
        .map(|(k, &e)| format!("{k} : goto {}", ep(e)))
        .collect();
    let mut t = format!(
        "table ip kube-proxy {{\n\tchain service-SSSSSSSS-d/s/tcp/ {{\n\t\tnumgen random mod {} vmap {{ {} }}\n\t}}\n",
        to.len(),
        branches.join(", ")
    );
    for i in 0..n {
        let ip = ep(i)
            .rsplit("__")
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_string();
        t.push_str(&format!(
            "\tchain {} {{\n\t\tmeta l4proto tcp dnat to {ip}:80\n\t}}\n",
            ep(i)
        ));
    }
    t + "}\n"
}

/// How many branches reach each endpoint, largest first: what uniform random dispatch means.
fn weights(n: usize, to: &[usize]) -> Vec<usize> {
    let mut w: Vec<usize> = (0..n)
        .map(|e| to.iter().filter(|&&t| t == e).count())
        .collect();
    w.sort_unstable_by(|a, b| b.cmp(a));
    w
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Two vmaps over endpoints that normalize alike are equal exactly when they give the same
    /// weights (branches per endpoint), whatever the endpoints are called and branch order.
    #[test]
    fn vmaps_are_equal_exactly_when_their_weights_are(
        n in 1usize..4,
        a in prop::collection::vec(0usize..4, 1..6),
        b in prop::collection::vec(0usize..4, 1..6),
    ) {
        let a: Vec<usize> = a.into_iter().map(|e| e % n).collect();
        let b: Vec<usize> = b.into_iter().map(|e| e % n).collect();
        let (ta, tb) = (vmap_table(n, &a, 0), vmap_table(n, &b, 500));
        let c = compare_texts(&ta, &tb, &Options::default()).unwrap();
        let same = a.len() == b.len() && weights(n, &a) == weights(n, &b);
        prop_assert_eq!(c.equal, same, "{:?} vs {:?}\n{}", a, b, kindred::rules::render::text(&c, false));
    }
}

/// The first line where two canonical texts part (a short failure message, not two dumps).
fn first_difference(a: &str, b: &str) -> String {
    let (mut x, mut y) = (a.lines(), b.lines());
    let mut n = 0;
    loop {
        n += 1;
        match (x.next(), y.next()) {
            (None, None) => return "equal".into(),
            (l, r) if l != r => return format!("line {n}: {l:?} vs {r:?}"),
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Grouping nodes: what differs between two nodes of one cluster with the same rules (the
    /// order of chains, sets, maps and elements, counters, `nft -a` handles, the node's address
    /// in `nodeport-ips`) never makes their rules different; one rule more always does.
    #[test]
    fn nft_node_noise_never_splits_a_group(
        order in Just((0..20usize).collect::<Vec<_>>()).prop_shuffle(),
        rev in any::<bool>(),
        handle in 1u32..100_000,
        packets in 0u64..1_000_000,
        node in 1u8..250,
        extra in 0usize..20,
    ) {
        use kindred::rules::group::canonical;
        let (head, blocks) = k3s_blocks();
        let mut shuffled: Vec<&String> = order.iter().filter_map(|&i| blocks.get(i)).collect();
        shuffled.extend(blocks.iter().skip(20));
        let mut body = String::new();
        for (k, b) in shuffled.iter().enumerate() {
            let b = reorder(b, rev).replace(
                "jump mark-for-masquerade\n",
                &format!("counter packets {packets} bytes {} jump mark-for-masquerade # handle {}\n", packets * 60, handle + k as u32),
            );
            body.push_str(&b);
            body.push('\n');
        }
        let original = format!("{head}\n{}}}\n", blocks.iter().map(|b| format!("{b}\n")).collect::<String>());
        let noisy = format!("{head} # handle {handle}\n{body}}}\n");
        let ip = original
            .lines()
            .skip_while(|l| !l.contains("set nodeport-ips"))
            .find_map(|l| l.trim().strip_prefix("elements = { ")?.strip_suffix(" }").map(str::to_string));
        let noisy = match &ip {
            Some(ip) => noisy.replace(&format!("elements = {{ {ip} }}"), &format!("elements = {{ 10.9.9.{node} }}")),
            None => noisy,
        };
        let (a, b) = (canonical(&original, &[]).unwrap(), canonical(&noisy, &[]).unwrap());
        prop_assert!(a == b, "{}", first_difference(&a.text, &b.text));
        // One rule more in one chain: other rules.
        let chain = blocks.iter().filter(|b| b.trim_start().starts_with("chain ")).nth(extra % 5).unwrap();
        let more = original.replacen(chain.as_str(), &chain.replacen("{\n", "{\n\t\tip saddr 10.99.0.1 drop\n", 1), 1);
        prop_assert!(a != canonical(&more, &[]).unwrap());
    }

    /// iptables: the order kube-proxy writes Services in (a Go map's, per node) never makes two
    /// nodes' rules different; another local endpoint always does.
    #[test]
    fn iptables_service_order_never_splits_a_group(shift in 1usize..30, seed in 1u64..50) {
        use kindred::rules::group::canonical;
        let text = synth::dump(&synth::Spec { services: 30, seed, ..synth::Spec::default() });
        let lines: Vec<&str> = text.lines().collect();
        let nat = lines.iter().position(|l| *l == "*nat").unwrap();
        let first = nat + lines[nat..].iter().position(|l| l.starts_with("-A KUBE-SERVICES")).unwrap();
        let last = first + lines[first..].iter().position(|l| l.contains("kubernetes service nodeports")).unwrap();
        // Each Service's dispatch rules (kube-proxy writes them together), Services rotated.
        let mut svc: Vec<Vec<&str>> = Vec::new();
        for l in &lines[first..last] {
            let name = l.split('"').nth(1).and_then(|c| c.split(' ').next());
            match svc.last_mut() {
                Some(g) if g[0].split('"').nth(1).and_then(|c| c.split(' ').next()) == name => g.push(l),
                _ => svc.push(vec![l]),
            }
        }
        let n = svc.len();
        svc.rotate_left(shift % n);
        let moved: Vec<&str> = lines[..first].iter().copied().chain(svc.into_iter().flatten()).chain(lines[last..].iter().copied()).collect();
        let moved = moved.join("\n") + "\n";
        prop_assert_ne!(&moved, &text);
        let (a, b) = (canonical(&text, &[]).unwrap(), canonical(&moved, &[]).unwrap());
        prop_assert!(a == b, "{}", first_difference(&a.text, &b.text));
        // A local endpoint chain's jump to another endpoint: other rules.
        let sep = lines.iter().find(|l| l.starts_with("-A KUBE-SVL-") && l.contains("-j KUBE-SEP-"));
        if let Some(l) = sep {
            let other = l.replace("-j KUBE-SEP-", "-j KUBE-SEP-Z");
            let text2 = text.replacen(l, &other, 1);
            prop_assert!(a != canonical(&text2, &[]).unwrap());
        }
    }
}

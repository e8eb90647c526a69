//! Grouping a cluster's nodes by their kube-proxy rules: nodes whose rules are the same (after
//! what legitimately differs from node to node is set aside) form one group, so that a 500-node
//! side with 3 distinct rule sets is 3 groups, not 500 dumps to compare.
//!
//! What is set aside is only what kube-proxy writes differently per node for the same behaviour:
//! the node's own addresses (`nodeport-ips`, `-d NODE-IP -j KUBE-NODEPORTS`), the order it
//! writes Services in (a Go map's: per node, per sync), the order nftables lists set and map
//! elements in, counters, comment lines, and session-affinity sets' elements (clients seen
//! lately: state, not rules). Endpoint IPs, NodePorts and chain names are the same on every
//! node of a cluster and are kept: two nodes whose eTP=Local Services have different local
//! endpoints have different rules and are never grouped.
//!
//! Each node's rules become one canonical text ([`canonical`]); nodes are grouped by a hash of
//! it, then by the text itself (a hash is never trusted alone). Only one canonical text per
//! distinct group is kept ([`Grouper`]).

use std::hash::Hasher;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::parse::ParseError;

/// A node's rules written one way: equal texts mean the same rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canon {
    pub hash: u64,
    pub text: Arc<str>,
}

impl Canon {
    /// A node's own: equal to no other node's (its dump could not be read as rules: `why`).
    pub fn alone(node: &str, why: &str) -> Canon {
        Canon::new(format!("\0unreadable {node}: {why}"))
    }

    fn new(text: String) -> Canon {
        let mut h = rustc_hash::FxHasher::default();
        h.write(text.as_bytes());
        Canon {
            hash: h.finish(),
            text: Arc::from(text),
        }
    }
}

/// How the node's own addresses are written in the canonical text.
pub const NODE_IP: &str = "<node-ip>";

/// The canonical text of one node's kube-proxy rules (iptables or nftables, detected).
/// `node_ips`: the node's addresses as its cluster reports them; those the rules themselves name
/// as the node's (`nodeport-ips`, `-d IP -j KUBE-NODEPORTS`) are added.
pub fn canonical(text: &str, node_ips: &[Ipv4Addr]) -> Result<Canon, ParseError> {
    let out = if super::nft::looks_like_nft(text) {
        nft_canonical(text, node_ips)?
    } else {
        iptables_canonical(text, node_ips)?
    };
    Ok(Canon::new(out))
}

/// iptables: each Service's rules (in key order; chain by chain in name order, each chain's in
/// file order), then kube-proxy's shared rules likewise, each with its place among the
/// Services' rules of its chain. Rule bodies without counters.
fn iptables_canonical(text: &str, node_ips: &[Ipv4Addr]) -> Result<String, ParseError> {
    use super::service::{services, shared};
    let d = super::parse::parse(text)?;
    let shared = shared(&d);
    let mut ips: Vec<String> = node_ips.iter().map(ToString::to_string).collect();
    for (i, _) in &shared {
        let r = &d.rules[*i];
        let body = d.rule_body(r);
        if d.rule_chain(r) == "KUBE-SERVICES"
            && super::tokens::jump_target(body) == Some("KUBE-NODEPORTS")
        {
            let words = super::tokens::split(body);
            if let Some(k) = words
                .iter()
                .position(|w| *w == "-d" || *w == "--destination")
                && let Some(ip) = words.get(k + 1)
            {
                let ip = ip.strip_suffix("/32").unwrap_or(ip);
                if ip.parse::<Ipv4Addr>().is_ok() && !ips.iter().any(|x| x == ip) {
                    ips.push(ip.to_string());
                }
            }
        }
    }
    let mut svcs = services(&d, None);
    svcs.sort_by(|a, b| a.key.cmp(&b.key));
    // Chains in name order (iptables-save lists them in the order the kernel has them), each
    // chain's rules in their order.
    let by_chain = |i: &usize| {
        let r = &d.rules[*i];
        (super::service::rule_table(&d, r), d.rule_chain(r))
    };
    for s in &mut svcs {
        s.rules.sort_by_key(by_chain);
    }
    let mut shared = shared;
    shared.sort_by_key(|(i, _)| by_chain(i));
    let mut out = String::with_capacity(text.len());
    let rule = |out: &mut String, i: usize, suffix: &str| {
        let r = &d.rules[i];
        out.push_str(super::service::rule_table(&d, r).name());
        out.push(' ');
        out.push_str(d.rule_chain(r));
        out.push(' ');
        push_masked(out, d.rule_body(r), &ips);
        out.push_str(suffix);
        out.push('\n');
    };
    for s in &svcs {
        out.push_str("== ");
        out.push_str(&s.key.to_string());
        out.push('\n');
        for &i in &s.rules {
            rule(&mut out, i, "");
        }
    }
    out.push_str("== shared\n");
    for (i, place) in &shared {
        rule(&mut out, *i, place.suffix());
    }
    Ok(out)
}

/// nftables (kube-proxy's tables): chains, sets and maps in name order (kube-proxy creates them
/// in a Go map's order); a chain's rules in order, without counters, the elements of their
/// inline sets and maps sorted; a set's or map's elements sorted (nft lists them in its hash's
/// order).
fn nft_canonical(text: &str, node_ips: &[Ipv4Addr]) -> Result<String, ParseError> {
    let d = super::nft::parse_tables(text.to_string(), false)?;
    let mut ips: Vec<String> = node_ips.iter().map(ToString::to_string).collect();
    for it in &d.items {
        if !it.decl && &*it.chain == "set nodeport-ips" {
            let ip = it.text.trim();
            if ip.parse::<Ipv4Addr>().is_ok() && !ips.iter().any(|x| x == ip) {
                ips.push(ip.to_string());
            }
        }
    }
    // (table, chain) -> its items' texts, declarations first.
    type Block<'a> = ((&'a str, &'a str), Vec<String>, Vec<String>);
    let mut blocks: Vec<Block> = Vec::new();
    let mut at: rustc_hash::FxHashMap<(&str, &str), usize> = Default::default();
    for it in &d.items {
        let table = it.table.as_deref().map_or("", |t| t.as_str());
        let chain = it.chain.as_str();
        let bare = chain
            .strip_prefix("set ")
            .or_else(|| chain.strip_prefix("map "))
            .unwrap_or(chain);
        if !it.decl && bare.starts_with("affinity-") {
            continue;
        }
        let k = *at.entry((table, chain)).or_insert_with(|| {
            blocks.push(((table, chain), Vec::new(), Vec::new()));
            blocks.len() - 1
        });
        let mut t = String::with_capacity(it.text.len());
        let words = super::nft::without_counters(it.text.trim()).join(" ");
        push_masked(&mut t, &sorted_braces(&words), &ips);
        if it.decl {
            blocks[k].1.push(t);
        } else {
            blocks[k].2.push(t);
        }
    }
    blocks.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::with_capacity(text.len());
    for ((table, chain), decls, mut items) in blocks {
        if chain.starts_with("set ") || chain.starts_with("map ") {
            items.sort_unstable();
        }
        out.push_str("== ");
        out.push_str(table);
        out.push(' ');
        out.push_str(chain);
        out.push('\n');
        for t in decls.iter().chain(&items) {
            out.push_str(t);
            out.push('\n');
        }
    }
    Ok(out)
}

/// A rule with the elements of each inline set or map (`{ a, b }`, `vmap { 0 : goto A, 1 :
/// goto B }`) sorted: a map is keyed, and nft lists its elements in any order.
fn sorted_braces(rule: &str) -> String {
    let mut out = String::with_capacity(rule.len());
    let mut rest = rule;
    loop {
        let Some(open) = outside_quotes(rest, '{') else {
            out.push_str(rest);
            return out;
        };
        let Some(len) = outside_quotes(&rest[open + 1..], '}') else {
            out.push_str(rest);
            return out;
        };
        let inner = &rest[open + 1..open + 1 + len];
        if inner.contains('{') {
            // Nested: left as written.
            out.push_str(&rest[..open + 2 + len]);
        } else {
            let mut els = super::nft::split_elements(inner);
            els.sort_unstable();
            out.push_str(&rest[..open]);
            out.push_str("{ ");
            out.push_str(&els.join(", "));
            out.push_str(" }");
        }
        rest = &rest[open + 2 + len..];
    }
}

/// Where `c` first stands outside double quotes.
fn outside_quotes(s: &str, c: char) -> Option<usize> {
    let mut quoted = false;
    for (i, x) in s.char_indices() {
        match x {
            '"' => quoted = !quoted,
            x if x == c && !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// `s` with every one of `ips` that stands alone (not part of a longer address or number)
/// written [`NODE_IP`].
fn push_masked(out: &mut String, s: &str, ips: &[String]) {
    let mut rest = s;
    'outer: while !rest.is_empty() {
        // The earliest whole-address match of any of `ips`.
        let mut best: Option<(usize, usize)> = None;
        for ip in ips {
            let mut from = 0;
            while let Some(k) = rest[from..].find(ip.as_str()) {
                let start = from + k;
                let end = start + ip.len();
                let b = rest.as_bytes();
                let before_ok =
                    start == 0 || !(b[start - 1].is_ascii_digit() || b[start - 1] == b'.');
                let after_ok = end == b.len()
                    || !(b[end].is_ascii_digit()
                        || (b[end] == b'.' && b.get(end + 1).is_some_and(u8::is_ascii_digit)));
                if before_ok && after_ok {
                    if best.is_none_or(|(s, _)| start < s) {
                        best = Some((start, end));
                    }
                    break;
                }
                from = start + 1;
            }
        }
        match best {
            Some((s, e)) => {
                out.push_str(&rest[..s]);
                out.push_str(NODE_IP);
                rest = &rest[e..];
            }
            None => {
                out.push_str(rest);
                break 'outer;
            }
        }
    }
}

/// A group of nodes of one role whose rules are the same, or one node alone (an outlier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The nodes' role (`worker`, `control-plane`).
    pub role: String,
    /// `worker group A` for a group of several nodes; the node's name for one alone.
    pub label: String,
    /// Its nodes, by name (sorted); the first is the one whose rules stand for the group's.
    pub nodes: Vec<String>,
}

impl Group {
    /// More than one node (else an outlier).
    pub fn is_group(&self) -> bool {
        self.nodes.len() > 1
    }
    /// The node whose rules are compared for the group.
    pub fn representative(&self) -> &str {
        &self.nodes[0]
    }
    /// `worker group A: 184 nodes, same rules`, or the outlier's name.
    pub fn title(&self) -> String {
        if self.is_group() {
            format!("{}: {} nodes, same rules", self.label, self.nodes.len())
        } else {
            self.label.clone()
        }
    }
}

/// Nodes added one at a time, grouped as they come: one canonical text kept per distinct
/// group (a node equal to a group seen already only adds its name).
#[derive(Debug, Default, Clone)]
pub struct Grouper {
    /// Distinct (role, rules) seen: the canonical text kept for each.
    distinct: Vec<(String, Canon)>,
    /// (role, node) -> its index into `distinct`.
    nodes: std::collections::BTreeMap<(String, String), usize>,
}

impl Grouper {
    pub fn new() -> Grouper {
        Grouper::default()
    }

    /// Add (or replace) a node of `role` whose rules are `canon`.
    pub fn add(&mut self, role: &str, node: &str, canon: Canon) {
        let k = match self
            .distinct
            .iter()
            .position(|(r, c)| r == role && c.hash == canon.hash && c.text == canon.text)
        {
            Some(k) => k,
            None => {
                self.distinct.push((role.to_string(), canon));
                self.distinct.len() - 1
            }
        };
        self.nodes.insert((role.to_string(), node.to_string()), k);
        self.forget_unused();
    }

    /// Remove a node.
    pub fn remove(&mut self, role: &str, node: &str) {
        self.nodes.remove(&(role.to_string(), node.to_string()));
        self.forget_unused();
    }

    /// How many distinct rule sets are kept.
    pub fn distinct(&self) -> usize {
        self.distinct.len()
    }

    /// Drop the texts no node has any more (a node's rules changed), renumbering.
    fn forget_unused(&mut self) {
        let mut used = vec![false; self.distinct.len()];
        for &k in self.nodes.values() {
            used[k] = true;
        }
        if used.iter().all(|u| *u) {
            return;
        }
        let mut map = vec![usize::MAX; used.len()];
        let mut kept = Vec::new();
        for (k, d) in std::mem::take(&mut self.distinct).into_iter().enumerate() {
            if used[k] {
                map[k] = kept.len();
                kept.push(d);
            }
        }
        self.distinct = kept;
        for k in self.nodes.values_mut() {
            *k = map[*k];
        }
    }

    /// The groups: per role (in name order), the largest first (ties: by first node name);
    /// groups of several nodes lettered A, B, ... per role, a node alone named by itself.
    pub fn groups(&self) -> Vec<Group> {
        let mut by: Vec<(String, Vec<String>)> =
            vec![(String::new(), Vec::new()); self.distinct.len()];
        for ((role, node), &k) in &self.nodes {
            by[k].0 = role.clone();
            by[k].1.push(node.clone());
        }
        by.sort_by(|a, b| {
            (&a.0, std::cmp::Reverse(a.1.len()), &a.1[0]).cmp(&(
                &b.0,
                std::cmp::Reverse(b.1.len()),
                &b.1[0],
            ))
        });
        let mut out = Vec::with_capacity(by.len());
        let mut letter = 0usize;
        let mut last_role: Option<String> = None;
        for (role, nodes) in by {
            if last_role.as_deref() != Some(role.as_str()) {
                letter = 0;
                last_role = Some(role.clone());
            }
            let label = if nodes.len() > 1 {
                letter += 1;
                format!("{role} group {}", letter_name(letter - 1))
            } else {
                nodes[0].clone()
            };
            out.push(Group { role, label, nodes });
        }
        out
    }
}

/// A, B, ..., Z, AA, AB, ...
fn letter_name(mut k: usize) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (k % 26) as u8);
        if k < 26 {
            break;
        }
        k = k / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).expect("ASCII letters")
}

/// A base group and the PR group it is compared with (indices into the two lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupPair {
    pub base: usize,
    pub pr: usize,
    /// Node names (as `key` spells them) the two have in common.
    pub shared: usize,
}

/// Match base groups to PR groups of the same role: first one to one, by the most node names in
/// common, then by size (the largest with the largest, the second with the second, ...); then
/// every group left over is compared with the other side's group holding most of its node names
/// (else the one nearest in size rank). `base_key`/`pr_key` spell a node's name the same way on
/// both sides (kind's nodes: without the cluster's name). Groups whose role the other side lacks
/// are in no pair.
pub fn match_groups(
    base: &[Group],
    pr: &[Group],
    base_key: impl Fn(&str) -> String,
    pr_key: impl Fn(&str) -> String,
) -> Vec<GroupPair> {
    let names = |gs: &[Group], key: &dyn Fn(&str) -> String| {
        gs.iter()
            .map(|g| g.nodes.iter().map(|n| key(n)).collect())
            .collect::<Vec<std::collections::BTreeSet<String>>>()
    };
    let (bn, pn) = (names(base, &base_key), names(pr, &pr_key));
    // Each group's rank among its role's (0: the largest).
    let rank = |gs: &[Group], i: usize| gs[..i].iter().filter(|g| g.role == gs[i].role).count();
    let mut cands: Vec<(usize, usize, usize, usize)> = Vec::new();
    for (b, bg) in base.iter().enumerate() {
        for (p, pg) in pr.iter().enumerate() {
            if bg.role != pg.role {
                continue;
            }
            let shared = bn[b].intersection(&pn[p]).count();
            let gap = rank(base, b).abs_diff(rank(pr, p));
            cands.push((shared, gap, b, p));
        }
    }
    cands.sort_by(|x, y| {
        y.0.cmp(&x.0)
            .then(x.1.cmp(&y.1))
            .then((x.2, x.3).cmp(&(y.2, y.3)))
    });
    let (mut bdone, mut pdone) = (vec![false; base.len()], vec![false; pr.len()]);
    let mut out = Vec::new();
    for &(shared, _, b, p) in &cands {
        if !bdone[b] && !pdone[p] {
            bdone[b] = true;
            pdone[p] = true;
            out.push(GroupPair {
                base: b,
                pr: p,
                shared,
            });
        }
    }
    // Left over: with the best partner, taken or not (candidates are in preference order).
    for &(shared, _, b, p) in &cands {
        if !bdone[b] {
            bdone[b] = true;
            out.push(GroupPair {
                base: b,
                pr: p,
                shared,
            });
        }
    }
    for &(shared, _, b, p) in &cands {
        if !pdone[p] {
            pdone[p] = true;
            out.push(GroupPair {
                base: b,
                pr: p,
                shared,
            });
        }
    }
    out.sort_by_key(|x| (x.base, x.pr));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKER: &str = include_str!("../../tests/fixtures/predict/builtin-base-worker.nft");
    const WORKER2: &str = include_str!("../../tests/fixtures/predict/builtin-base-worker2.nft");

    fn canon(text: &str) -> Canon {
        canonical(text, &[]).unwrap()
    }

    /// Two Services in KUBE-SERVICES, in the order given, with `node` as the NodePort address
    /// and `local` as echo's local endpoint (none: no local endpoint).
    fn iptables(first_echo: bool, node: &str, local: Option<&str>, counters: &str) -> String {
        let echo = "-A KUBE-SERVICES -d 10.96.0.5/32 -p tcp -m comment --comment \"default/echo: cluster IP\" -m tcp --dport 8080 -j KUBE-SVC-AAAA\n";
        let dns = "-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment \"kube-system/kube-dns:dns cluster IP\" -m udp --dport 53 -j KUBE-SVC-BBBB\n";
        let (a, b) = if first_echo { (echo, dns) } else { (dns, echo) };
        let xlb = match local {
            Some(ip) => format!(
                "-A KUBE-XLB-AAAA -m comment --comment \"Balancing rule 0 for default/echo:\" -j KUBE-SEP-{ip}\n"
            ),
            None => "-A KUBE-XLB-AAAA -m comment --comment \"default/echo: has no local endpoints\" -j KUBE-MARK-DROP\n".into(),
        };
        format!(
            "# Generated by iptables-save v1.8.7 on {counters}\n*nat\n:PREROUTING ACCEPT [{counters}]\n:KUBE-SERVICES - [0:0]\n\
             -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
             {a}{b}\
             -A KUBE-SERVICES -d {node}/32 -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -j KUBE-NODEPORTS\n\
             -A KUBE-NODEPORTS -p tcp -m comment --comment \"default/echo:\" -m tcp --dport 30012 -j KUBE-XLB-AAAA\n\
             -A KUBE-SVC-AAAA -m comment --comment \"default/echo:\" -j KUBE-SEP-ONE\n\
             -A KUBE-SEP-ONE -p tcp -m comment --comment \"default/echo:\" -m tcp -j DNAT --to-destination 10.244.2.2:8080\n\
             {xlb}\
             -A KUBE-SVC-BBBB -m comment --comment \"kube-system/kube-dns:dns\" -j KUBE-SEP-TWO\n\
             -A KUBE-SEP-TWO -p udp -m comment --comment \"kube-system/kube-dns:dns\" -m udp -j DNAT --to-destination 10.244.0.2:53\n\
             COMMIT\n"
        )
    }

    #[test]
    fn iptables_nodes_differing_only_in_what_differs_per_node_have_one_text() {
        let a = canon(&iptables(true, "172.18.0.3", None, "1:2"));
        // Services written in the other order, another node address, other counters and date.
        let b = canon(&iptables(false, "172.18.0.4", None, "77:99"));
        assert_eq!(a, b);
        assert!(a.text.contains("-d <node-ip>/32"), "{}", a.text);
        // A Service's chains listed in another order (iptables-save lists them as the kernel
        // has them).
        let sep = "-A KUBE-SEP-ONE -p tcp -m comment --comment \"default/echo:\" -m tcp -j DNAT --to-destination 10.244.2.2:8080\n";
        let svc = "-A KUBE-SVC-AAAA -m comment --comment \"default/echo:\" -j KUBE-SEP-ONE\n";
        let text = iptables(true, "172.18.0.3", None, "1:2");
        let swapped = text.replace(&format!("{svc}{sep}"), &format!("{sep}{svc}"));
        assert_ne!(swapped, text);
        assert_eq!(canon(&swapped), a);
    }

    #[test]
    fn iptables_nodes_with_other_local_endpoints_differ() {
        let none = canon(&iptables(true, "172.18.0.3", None, "0:0"));
        let one = canon(&iptables(true, "172.18.0.3", Some("ONE"), "0:0"));
        let other = canon(&iptables(true, "172.18.0.3", Some("THREE"), "0:0"));
        assert_ne!(none, one);
        assert_ne!(one, other);
        assert_ne!(one.hash, other.hash);
    }

    #[test]
    fn the_node_address_is_masked_only_where_it_stands_alone() {
        let mut out = String::new();
        let ips = ["10.0.0.1".to_string()];
        push_masked(
            &mut out,
            "-d 10.0.0.1/32 -s 10.0.0.10 -d 110.0.0.1 x 10.0.0.1",
            &ips,
        );
        assert_eq!(out, "-d <node-ip>/32 -s 10.0.0.10 -d 110.0.0.1 x <node-ip>");
    }

    #[test]
    fn nft_nodes_differing_in_node_address_and_element_order_have_one_text() {
        let a = canon(WORKER);
        let moved = WORKER.replace("172.18.0.3", "172.18.0.9").replace(
            "elements = { 10.96.0.1, 10.96.0.10,\n\t\t\t     10.96.118.33, 10.96.201.7 }",
            "elements = { 10.96.201.7, 10.96.0.10,\n\t\t\t     10.96.118.33, 10.96.0.1 }",
        );
        assert_ne!(
            moved, WORKER,
            "the fixture changed: the test no longer moves anything"
        );
        assert!(moved.contains("10.96.201.7, 10.96.0.10"));
        let b = canon(&moved);
        assert_eq!(a, b);
        assert!(!a.text.contains("172.18.0.3"), "{}", a.text);
        // Another element is another rule set.
        let more = WORKER.replace("10.96.201.7 }", "10.96.201.8 }");
        assert_ne!(canon(&more), a);
    }

    #[test]
    fn nft_nodes_with_and_without_a_local_endpoint_differ() {
        assert_ne!(canon(WORKER), canon(WORKER2));
        // Even given each its own address (the worker2 fixture is 172.18.0.4).
        let w = canonical(WORKER, &["172.18.0.3".parse().unwrap()]).unwrap();
        let w2 = canonical(WORKER2, &["172.18.0.4".parse().unwrap()]).unwrap();
        assert_ne!(w, w2);
    }

    #[test]
    fn inline_maps_are_written_in_one_order() {
        assert_eq!(
            sorted_braces(
                "numgen random mod 2 vmap { 1 : goto B, 0 : goto A } comment \"{ x, a }\""
            ),
            "numgen random mod 2 vmap { 0 : goto A, 1 : goto B } comment \"{ x, a }\""
        );
        assert_eq!(
            sorted_braces("ip daddr { b, a } x { d, c }"),
            "ip daddr { a, b } x { c, d }"
        );
        assert_eq!(sorted_braces("a { b"), "a { b");
    }

    #[test]
    fn a_bad_dump_is_an_error_with_its_line() {
        let e = canonical("*nat\n-A\nCOMMIT\n", &[]).unwrap_err();
        assert_eq!(e.line, 2);
    }

    fn c(s: &str) -> Canon {
        Canon::new(s.to_string())
    }

    #[test]
    fn groups_are_per_role_largest_first_with_outliers_by_name() {
        let mut g = Grouper::new();
        for i in 0..5 {
            g.add("worker", &format!("w{i}"), c("small"));
        }
        for i in 5..12 {
            g.add("worker", &format!("w{i:02}"), c("big"));
        }
        g.add("worker", "odd", c("odd"));
        g.add("control-plane", "cp1", c("big"));
        g.add("control-plane", "cp2", c("big"));
        assert_eq!(g.distinct(), 4);
        let gs = g.groups();
        let titles: Vec<String> = gs.iter().map(Group::title).collect();
        assert_eq!(
            titles,
            [
                "control-plane group A: 2 nodes, same rules",
                "worker group A: 7 nodes, same rules",
                "worker group B: 5 nodes, same rules",
                "odd",
            ]
        );
        assert_eq!(gs[1].representative(), "w05");
        assert!(!gs[3].is_group());
        // A node whose rules change moves; a text no node has is forgotten.
        g.add("worker", "odd", c("small"));
        assert_eq!(g.distinct(), 3);
        assert_eq!(g.groups()[2].nodes.len(), 6);
        g.remove("control-plane", "cp1");
        g.remove("control-plane", "cp2");
        assert_eq!(g.groups().len(), 2);
    }

    #[test]
    fn equal_hashes_alone_do_not_group() {
        let mut g = Grouper::new();
        g.add(
            "worker",
            "a",
            Canon {
                hash: 1,
                text: Arc::from("x"),
            },
        );
        g.add(
            "worker",
            "b",
            Canon {
                hash: 1,
                text: Arc::from("y"),
            },
        );
        assert_eq!(g.groups().len(), 2);
    }

    #[test]
    fn letters_go_on_after_z() {
        assert_eq!(letter_name(0), "A");
        assert_eq!(letter_name(25), "Z");
        assert_eq!(letter_name(26), "AA");
        assert_eq!(letter_name(27), "AB");
    }

    fn group(role: &str, label: &str, nodes: &[&str]) -> Group {
        Group {
            role: role.into(),
            label: label.into(),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn groups_match_by_role_then_shared_names_then_size() {
        let id = |n: &str| n.to_string();
        let base = [
            group("control-plane", "cp", &["cp"]),
            group("worker", "worker group A", &["a", "b", "c", "d"]),
            group("worker", "worker group B", &["e", "f"]),
            group("worker", "x", &["x"]),
        ];
        let pr = [
            group("control-plane", "cp9", &["cp9"]),
            // The PR's largest group holds base's B nodes: matched by names, not size.
            group("worker", "worker group A", &["e", "f", "y", "z", "w"]),
            group("worker", "worker group B", &["a", "b", "c"]),
            group("worker", "d", &["d"]),
        ];
        let m = match_groups(&base, &pr, id, id);
        let pairs: Vec<(usize, usize)> = m.iter().map(|p| (p.base, p.pr)).collect();
        // cp <-> cp9 (role, no names in common); A <-> B (3 names); B <-> A (2); x <-> d (by
        // size rank: both the third worker group).
        assert_eq!(pairs, [(0, 0), (1, 2), (2, 1), (3, 3)]);
        assert_eq!(m[1].shared, 3);
    }

    #[test]
    fn a_group_left_over_is_compared_with_the_group_holding_its_nodes() {
        let id = |n: &str| n.to_string();
        let base = [
            group("worker", "worker group A", &["a", "b", "c"]),
            group("worker", "d", &["d"]),
        ];
        let pr = [group("worker", "worker group A", &["a", "b", "c", "d"])];
        let m = match_groups(&base, &pr, id, id);
        let pairs: Vec<(usize, usize)> = m.iter().map(|p| (p.base, p.pr)).collect();
        assert_eq!(pairs, [(0, 0), (1, 0)]);
        // A role the other side lacks: no pair.
        let lone = [group("control-plane", "cp", &["cp"])];
        assert!(match_groups(&lone, &pr, id, id).is_empty());
    }
}

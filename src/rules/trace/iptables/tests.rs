use super::*;
use crate::rules::parse::parse;
use crate::rules::trace::{Origin, Proto};

fn pkt(src: &str, dst: &str, dport: u16, from: Origin, local: &[&str]) -> Packet {
    Packet {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        dport,
        sport: 40000,
        proto: Proto::Tcp,
        from,
        local_ips: local.iter().map(|s| s.parse().unwrap()).collect(),
    }
}

/// Trace a pod's packet to 10.96.0.1:80 (node 172.18.0.2) through `text`.
fn pod(text: &str) -> Trace {
    trace(
        text,
        &pkt("10.244.0.5", "10.96.0.1", 80, Origin::Pod, &["172.18.0.2"]),
    )
}

fn trace(text: &str, p: &Packet) -> Trace {
    let d = parse(text).unwrap();
    Tracer::new(&d).trace(p)
}

const NAT_HEAD: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -j KUBE-SERVICES\n-A OUTPUT -j KUBE-SERVICES\n-A POSTROUTING -j KUBE-POSTROUTING\n-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n-A KUBE-POSTROUTING -j MASQUERADE\n";

#[test]
fn a_statistic_cascade_reaches_every_endpoint() {
    let t = pod(&format!(
        "{NAT_HEAD}-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A\n\
         -A KUBE-SVC-A -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-1\n\
         -A KUBE-SVC-A -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-2\n\
         -A KUBE-SVC-A -j KUBE-SEP-3\n\
         -A KUBE-SEP-1 -p tcp -m tcp -j DNAT --to-destination 10.244.1.1:8080\n\
         -A KUBE-SEP-2 -p tcp -m tcp -j DNAT --to-destination 10.244.2.1:8080\n\
         -A KUBE-SEP-3 -p tcp -m tcp -j DNAT --to-destination 10.244.3.1:8080\nCOMMIT\n"
    ));
    assert_eq!(t.verdict, Verdict::Dnat);
    assert_eq!(
        t.endpoints,
        vec!["10.244.1.1:8080", "10.244.2.1:8080", "10.244.3.1:8080"]
    );
    assert!(!t.masquerade);
    assert!(t.notes.is_empty(), "{:?}", t.notes);
    // Each rule once, the first branch's first.
    let lines: Vec<u32> = t.path.iter().map(|s| s.line).collect();
    assert_eq!(lines, vec![5, 11, 12, 15, 7, 9, 13, 16, 14, 17]);
}

#[test]
fn branches_that_end_otherwise_are_named() {
    // One endpoint's branch is dropped in forward: the trace DNATs, and says the other.
    let text = format!(
        "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -d 10.244.2.1/32 -j DROP\nCOMMIT\n{NAT_HEAD}\
         -A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A\n\
         -A KUBE-SVC-A -m statistic --mode random --probability 0.5 -j KUBE-SEP-1\n\
         -A KUBE-SVC-A -j KUBE-SEP-2\n\
         -A KUBE-SEP-1 -p tcp -j DNAT --to-destination 10.244.1.1:8080\n\
         -A KUBE-SEP-2 -p tcp -j DNAT --to-destination 10.244.2.1:8080\nCOMMIT\n"
    );
    let t = pod(&text);
    assert_eq!(t.verdict, Verdict::Dnat);
    assert_eq!(t.endpoints, vec!["10.244.1.1:8080"]);
    assert_eq!(
        t.notes,
        vec!["a branch DNATed to 10.244.2.1:8080 ends in drop at line 3"]
    );
}

#[test]
fn what_it_cannot_evaluate_is_unknown_where_reached() {
    let text = format!(
        "{NAT_HEAD}-A KUBE-SERVICES -d 10.96.0.9/32 -m set --match-set X dst -j ACCEPT\n\
         -A KUBE-SERVICES -d 10.96.0.1/32 -m set --match-set X dst -j ACCEPT\nCOMMIT\n"
    );
    let t = pod(&text);
    assert_eq!(t.verdict, Verdict::Unknown);
    assert_eq!(t.notes, vec!["line 12: -m set"]);
    assert_eq!(t.path.last().unwrap().line, 12);
    // Not reached: no unknown.
    let t = trace(&text, &pkt("10.244.0.5", "10.96.0.7", 80, Origin::Pod, &[]));
    assert_eq!(t.verdict, Verdict::Accept, "{t:?}");
    // An unknown branch makes the whole trace unknown, even if another DNATs.
    let t = pod(&format!(
        "{NAT_HEAD}-A KUBE-SERVICES -m statistic --mode random --probability 0.5 -j DNAT --to-destination 10.244.1.1:80\n\
         -A KUBE-SERVICES -j REDIRECT --to-ports 8080\nCOMMIT\n"
    ));
    assert_eq!(t.verdict, Verdict::Unknown);
    assert_eq!(
        t.notes,
        vec![
            "line 12: target REDIRECT",
            "a branch DNATs to 10.244.1.1:80"
        ]
    );
    assert!(t.endpoints.is_empty(), "{:?}", t.endpoints);
}

#[test]
fn interfaces() {
    let rule = |m: &str| {
        format!("{NAT_HEAD}-A KUBE-SERVICES {m} -j DNAT --to-destination 10.244.1.1:80\nCOMMIT\n")
    };
    // A pod's packet does not come in on lo.
    assert_eq!(pod(&rule("-i lo")).verdict, Verdict::Accept);
    assert_eq!(pod(&rule("! -i lo")).verdict, Verdict::Dnat);
    assert_eq!(pod(&rule("-i +")).verdict, Verdict::Dnat);
    // Any other name: not known.
    let t = pod(&rule("-i eth0"));
    assert_eq!(t.verdict, Verdict::Unknown);
    assert!(t.notes[0].contains("-i eth0"), "{:?}", t.notes);
    // A host's packet to a local address leaves by lo; to another, not.
    let host = |dst: &str| pkt("172.18.0.2", dst, 80, Origin::Host, &["172.18.0.2"]);
    assert_eq!(
        trace(&rule("-o lo"), &host("172.18.0.2")).verdict,
        Verdict::Dnat
    );
    assert_eq!(
        trace(&rule("-o lo"), &host("10.96.0.1")).verdict,
        Verdict::Accept
    );
}

#[test]
fn host_traffic_to_a_local_address_comes_back_through_input() {
    let text = "*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i lo -p tcp --dport 30000 -j REJECT\nCOMMIT\n";
    let t = trace(
        text,
        &pkt(
            "172.18.0.2",
            "172.18.0.2",
            30000,
            Origin::Host,
            &["172.18.0.2"],
        ),
    );
    assert_eq!(t.verdict, Verdict::Reject);
    assert_eq!(t.path[0].hook, Hook::Input);
    // Without local addresses, the host's own source is its only one.
    let t = trace(
        text,
        &pkt("172.18.0.2", "172.18.0.2", 30000, Origin::Host, &[]),
    );
    assert_eq!(t.verdict, Verdict::Reject);
    // A pod's packet to the node: input, not through lo.
    let t = trace(
        text,
        &pkt(
            "10.244.0.5",
            "172.18.0.2",
            30000,
            Origin::Pod,
            &["172.18.0.2"],
        ),
    );
    assert_eq!(t.verdict, Verdict::Accept);
}

#[test]
fn routing_uses_the_destination_after_dnat() {
    // DNAT to a node address: input, where it is rejected; elsewhere: forward.
    let text = |to: &str| {
        format!(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n-A INPUT -j REJECT\n-A FORWARD -m conntrack --ctstate DNAT -j DROP\nCOMMIT\n{NAT_HEAD}-A KUBE-SERVICES -d 10.96.0.1/32 -j DNAT --to-destination {to}\nCOMMIT\n"
        )
    };
    let t = pod(&text("172.18.0.2:80"));
    assert_eq!(t.verdict, Verdict::Reject);
    assert_eq!(t.path.last().unwrap().hook, Hook::Input);
    let t = pod(&text("10.244.1.1"));
    assert_eq!(t.verdict, Verdict::Drop, "ctstate DNAT after a DNAT: {t:?}");
    assert_eq!(t.path.last().unwrap().hook, Hook::Forward);
}

#[test]
fn marks_are_carried_through_the_walk() {
    let text = |mark: &str| {
        format!(
            "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m mark --mark 0x8000/0x8000 -j DROP\nCOMMIT\n{NAT_HEAD}\
             -A KUBE-SERVICES -j KUBE-MARK-MASQ\n-A KUBE-SERVICES -j MARK {mark}\nCOMMIT\n"
        )
    };
    let t = pod(&text("--set-xmark 0x8000/0x8000"));
    assert_eq!(t.verdict, Verdict::Drop);
    // The masquerade mark alone: not dropped, masqueraded in postrouting.
    let t = pod(&text("--and-mark 0x4000"));
    assert_eq!(t.verdict, Verdict::Accept);
    assert!(t.masquerade);
    // Cleared again: not masqueraded.
    let t = pod(&text("--xor-mark 0x4000"));
    assert!(!t.masquerade, "{t:?}");
}

#[test]
fn addrtype_local_is_the_node_s_addresses() {
    let text = format!(
        "{NAT_HEAD}-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n\
         -A KUBE-NODEPORTS -p tcp -m tcp --dport 30080 -j DNAT --to-destination 10.244.1.1:80\nCOMMIT\n"
    );
    let p = |dst: &str| pkt("10.244.0.5", dst, 30080, Origin::Pod, &["172.18.0.2"]);
    assert_eq!(trace(&text, &p("172.18.0.2")).verdict, Verdict::Dnat);
    assert_eq!(trace(&text, &p("127.0.0.1")).verdict, Verdict::Dnat);
    assert_eq!(trace(&text, &p("172.18.0.3")).verdict, Verdict::Accept);
}

#[test]
fn jumps_gotos_returns_and_policies() {
    // A goto's RETURN goes back past the chain that went: to the base chain's policy.
    let text = "*filter\n:FORWARD DROP [0:0]\n:A - [0:0]\n:B - [0:0]\n-A FORWARD -j A\n-A FORWARD -j ACCEPT\n-A A -g B\n-A A -j ACCEPT\n-A B -j RETURN\nCOMMIT\n";
    let t = trace(text, &pkt("10.244.0.5", "10.244.1.1", 80, Origin::Pod, &[]));
    assert_eq!(t.verdict, Verdict::Accept, "{t:?}");
    let lines: Vec<u32> = t.path.iter().map(|s| s.line).collect();
    assert_eq!(lines, vec![5, 7, 9, 6]);
    let t = trace(
        &text.replace("-A FORWARD -j ACCEPT\n", ""),
        &pkt("10.244.0.5", "10.244.1.1", 80, Origin::Pod, &[]),
    );
    assert_eq!(t.verdict, Verdict::Drop);
    assert_eq!(t.path.last().unwrap().rule, "-P FORWARD DROP");
    // A chain jumped to but not in the dump: empty, and said.
    let t = pod(&format!(
        "{NAT_HEAD}-A KUBE-SERVICES -j KUBE-MISSING\nCOMMIT\n"
    ));
    assert_eq!(t.verdict, Verdict::Accept);
    assert_eq!(
        t.notes,
        vec!["chain KUBE-MISSING (nat) is not in the dump: taken as empty"]
    );
}

#[test]
fn affinity_has_no_prior_entry() {
    let t = pod(&format!(
        "{NAT_HEAD}-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-A\n\
         -A KUBE-SVC-A -m recent --name KUBE-SEP-1 --rcheck --seconds 10800 --reap -j KUBE-SEP-1\n\
         -A KUBE-SVC-A -j KUBE-SEP-2\n\
         -A KUBE-SEP-1 -m recent --name KUBE-SEP-1 --set -p tcp -j DNAT --to-destination 10.244.1.1:80\n\
         -A KUBE-SEP-2 -m recent --name KUBE-SEP-2 --set -p tcp -j DNAT --to-destination 10.244.2.1:80\nCOMMIT\n"
    ));
    assert_eq!(t.endpoints, vec!["10.244.2.1:80"]);
    assert!(
        t.notes[0].starts_with("recent --set KUBE-SEP-2"),
        "{:?}",
        t.notes
    );
}

#[test]
fn untracked_packets_are_not_nated() {
    let text = format!(
        "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j NOTRACK\nCOMMIT\n{NAT_HEAD}-A KUBE-SERVICES -j DNAT --to-destination 10.244.1.1:80\nCOMMIT\n"
    );
    assert_eq!(pod(&text).verdict, Verdict::Accept);
    assert_eq!(
        pod(&text.replace("-j NOTRACK", "-j CT --zone 1")).verdict,
        Verdict::Dnat
    );
}

#[test]
fn iptables_s_v_and_fragments() {
    // `iptables -t nat -S -v`: no table named (read as nat), counters out of the rule's text.
    let text = "-P PREROUTING ACCEPT -c 0 0\n-N KUBE-SERVICES\n-A PREROUTING -j KUBE-SERVICES\n-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -c 5 300 -j DNAT --to-destination 10.244.1.1:80\n";
    let t = pod(text);
    assert_eq!(t.verdict, Verdict::Dnat);
    assert_eq!(
        t.path[1].rule,
        "-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.1.1:80"
    );
    assert_eq!(t.path[1].table, "nat");
    assert!(
        t.notes[0].contains("read as the nat table's"),
        "{:?}",
        t.notes
    );
    // `iptables -S` of the filter table (its default).
    let text = "-P INPUT ACCEPT\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n-A FORWARD -d 10.244.1.1/32 -j ACCEPT\n";
    let t = trace(text, &pkt("10.244.0.5", "10.244.1.1", 80, Origin::Pod, &[]));
    assert_eq!(t.verdict, Verdict::Accept);
    assert_eq!(t.path[0].table, "filter");
    assert!(
        t.notes[0].contains("read as the filter table's"),
        "{:?}",
        t.notes
    );
    let t = trace(text, &pkt("10.244.0.5", "10.244.1.2", 80, Origin::Pod, &[]));
    assert_eq!(t.verdict, Verdict::Drop);
}

#[test]
fn udp_and_ports() {
    let text = format!(
        "{NAT_HEAD}-A KUBE-SERVICES -d 10.96.0.1/32 -p udp -m multiport --dports 53,5000:5100 -j DNAT --to-destination 10.244.1.1\nCOMMIT\n"
    );
    let mut p = pkt("10.244.0.5", "10.96.0.1", 5050, Origin::Pod, &[]);
    assert_eq!(trace(&text, &p).verdict, Verdict::Accept);
    p.proto = Proto::Udp;
    let t = trace(&text, &p);
    assert_eq!(t.endpoints, vec!["10.244.1.1:5050"]);
    p.dport = 5101;
    assert_eq!(trace(&text, &p).verdict, Verdict::Accept);
}

/// A chain long enough to be indexed, its rules written between another chain's: each rule a
/// packet can match is met, in order, whatever its destination test (a network, a negation, none)
/// or port test (a range, multiport, a negation). Each such rule sets a mark bit; the DNAT needs
/// all of them, else the packet is dropped.
#[test]
fn an_indexed_chain_meets_every_rule_a_packet_can_match_in_order() {
    let mut text = String::from(NAT_HEAD);
    for i in 0..40 {
        text.push_str(&format!(
            "-A KUBE-SERVICES -d 10.96.1.{i}/32 -p tcp -m tcp --dport 8080 -j KUBE-SEP-X\n-A KUBE-SEP-X -j RETURN\n"
        ));
    }
    for rule in [
        "-d 10.0.0.0/8 -p tcp -m tcp --dport 8080 -j MARK --or-mark 0x1",
        "! -d 10.96.0.2/32 -j MARK --or-mark 0x2",
        "-p tcp -m multiport --dports 80,8000:9000 -j MARK --or-mark 0x4",
        "-p tcp -m tcp ! --dport 80 -j MARK --or-mark 0x8",
        "-p tcp -m tcp --dport 80 -j MARK --or-mark 0x100",
        "-d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j MARK --or-mark 0x200",
        "-d 10.96.0.1/32 -p tcp -m tcp --dport 8080 -m mark --mark 0xf/0xfff -j KUBE-SEP-OK",
        "-d 10.96.0.1/32 -j DROP",
    ] {
        text.push_str(&format!(
            "-A KUBE-SERVICES {rule}\n-A KUBE-SEP-X -j RETURN\n"
        ));
    }
    text.push_str("-A KUBE-SEP-OK -p tcp -j DNAT --to-destination 10.244.9.9:8080\nCOMMIT\n");
    let d = parse(&text).unwrap();
    let tracer = Tracer::new(&d);
    let services = &tracer.chains[tracer.names[table_slot(Table::Nat)]["KUBE-SERVICES"]];
    assert!(services.index.is_some(), "the chain is indexed");
    let t = tracer.trace(&pkt("10.244.0.5", "10.96.0.1", 8080, Origin::Pod, &[]));
    assert_eq!(t.verdict, Verdict::Dnat, "{:#?}", t.path);
    assert_eq!(t.endpoints, ["10.244.9.9:8080"]);
    let marks = |t: &Trace| -> Vec<String> {
        t.path
            .iter()
            .filter(|s| s.chain == "KUBE-SERVICES")
            .filter_map(|s| s.rule.split("--or-mark ").nth(1).map(str::to_string))
            .collect()
    };
    assert_eq!(marks(&t), ["0x1", "0x2", "0x4", "0x8"]);
    // Port 80 meets the port-80 rules instead, and is dropped.
    let t = tracer.trace(&pkt("10.244.0.5", "10.96.0.1", 80, Origin::Pod, &[]));
    assert_eq!(t.verdict, Verdict::Drop, "{:#?}", t.path);
    assert_eq!(marks(&t), ["0x2", "0x4", "0x100", "0x200"]);
    assert_eq!(
        t.path.last().unwrap().rule,
        "-A KUBE-SERVICES -d 10.96.0.1/32 -j DROP"
    );
}

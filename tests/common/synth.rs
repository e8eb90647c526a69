//! Synthetic kube-proxy dumps in real `iptables-save` form, for benchmarks and tests (dev-only:
//! included by the tests through `common` and by the benches with `#[path]`).
//!
//! Two dumps made with the same `services` and `change` but different `seed`s describe the same
//! behaviour with different incidental values: NodePorts, cluster/LB/endpoint IPs, endpoint chain
//! hashes, the order services were written in, and counters. With `hash_seed` the per-service
//! chain hashes differ too (as between kube-proxy versions). `change` alters the behaviour of every
//! 100th LoadBalancer service with externalTrafficPolicy: Local (drops its "masquerade LOCAL
//! traffic" rule), the way a PR would; with `change_all`, of every one (as the 2019 fix did).

use std::fmt::Write;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    pub services: usize,
    pub endpoints: usize,
    pub seed: u64,
    /// Seed for per-service chain hashes (same value = same kube-proxy naming).
    pub hash_seed: u64,
    pub change: bool,
    /// `change` alters every eTP=Local LoadBalancer service, not every 100th.
    pub change_all: bool,
    /// Write `[p:b]` counters on chain declarations.
    pub counters: bool,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            services: 100,
            endpoints: 2,
            seed: 1,
            hash_seed: 0,
            change: false,
            change_all: false,
            counters: true,
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn hash16(seed: u64, s: &str) -> String {
    const A: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut h = seed ^ 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    let mut r = Rng(h);
    (0..16)
        .map(|_| A[(r.next() % 32) as usize] as char)
        .collect()
}

struct Svc {
    /// Session affinity's timeout in seconds (`sessionAffinity: ClientIP`), nftables only.
    affinity: Option<u32>,
    id: String,
    hash: String,
    cluster_ip: String,
    lb_ip: Option<String>,
    nodeport: Option<u32>,
    hc_nodeport: Option<u32>,
    local: bool,
    eps: Vec<(String, String)>,
    changed: bool,
}

/// The services of a dump, the order they are written in, and the generator for what follows.
fn generate(spec: &Spec) -> (Vec<Svc>, Vec<usize>, Rng) {
    let mut rng = Rng(spec.seed.wrapping_mul(7919) + 1);
    let mut svcs: Vec<Svc> = Vec::with_capacity(spec.services);
    let mut used_np = std::collections::HashSet::new();
    for i in 0..spec.services {
        let id = format!("ns{}/svc{}:p80", i % 97, i);
        let kind = i % 5; // 0: LB local, 1: LB cluster, 2: NodePort, 3,4: ClusterIP
        // NodePorts from a widened range (--service-node-port-range) so 10k services fit.
        let mut np = || {
            let mut p = 0;
            for _ in 0..64 {
                p = 20000 + (rng.next() % 40000) as u32;
                if used_np.insert(p) {
                    break;
                }
            }
            p
        };
        let nodeport = (kind <= 2).then(&mut np);
        let hc_nodeport = (kind == 0).then(&mut np);
        let x = rng.next();
        let cluster_ip = format!("10.96.{}.{}", (x >> 8) % 256, x % 254 + 1);
        let lb_ip =
            (kind <= 1).then(|| format!("172.18.{}.{}", (x >> 16) % 256, (x >> 24) % 254 + 1));
        // Endpoint k runs on worker k+1 (pod CIDR 10.244.(k+1).0/24, as in kind).
        let eps = (0..spec.endpoints)
            .map(|k| {
                let y = rng.next();
                let ip = format!("10.244.{}.{}", k + 1, (y >> 8) % 254 + 1);
                let sep = hash16(y, &ip);
                (ip, sep)
            })
            .collect();
        svcs.push(Svc {
            affinity: None,
            hash: hash16(spec.hash_seed, &id),
            id,
            cluster_ip,
            lb_ip,
            nodeport,
            hc_nodeport,
            local: kind == 0,
            eps,
            changed: spec.change && kind == 0 && (spec.change_all || i % 100 == 0),
        });
    }
    // Services are written in an order that depends on the seed.
    let mut order: Vec<usize> = (0..svcs.len()).collect();
    for i in (1..order.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    (svcs, order, rng)
}

/// Generate a dump.
pub fn dump(spec: &Spec) -> String {
    let (svcs, order, mut rng) = generate(spec);
    let c = |spec: &Spec, r: &mut Rng| {
        if spec.counters {
            format!("[{}:{}]", r.next() % 1000, r.next() % 100000)
        } else {
            "[0:0]".to_string()
        }
    };
    let mut out = String::with_capacity(spec.services * 1500);
    out.push_str("# Generated by iptables-save v1.8.9 (kindred synth)\n*filter\n");
    for ch in ["INPUT ACCEPT", "FORWARD ACCEPT", "OUTPUT ACCEPT"] {
        let _ = writeln!(out, ":{ch} {}", c(spec, &mut rng));
    }
    for ch in ["KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-SERVICES"] {
        let _ = writeln!(out, ":{ch} - {}", c(spec, &mut rng));
    }
    out.push_str("-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n");
    out.push_str("-A INPUT -j KUBE-NODEPORTS\n");
    for &i in &order {
        let s = &svcs[i];
        if let Some(hc) = s.hc_nodeport {
            let _ = writeln!(
                out,
                "-A KUBE-NODEPORTS -p tcp -m comment --comment \"{} health check node port\" -m tcp --dport {hc} -j ACCEPT",
                s.id
            );
        }
    }
    out.push_str("COMMIT\n*nat\n");
    for ch in [
        "PREROUTING ACCEPT",
        "INPUT ACCEPT",
        "OUTPUT ACCEPT",
        "POSTROUTING ACCEPT",
    ] {
        let _ = writeln!(out, ":{ch} {}", c(spec, &mut rng));
    }
    let mut decls: Vec<String> = vec![
        "KUBE-MARK-MASQ".into(),
        "KUBE-NODEPORTS".into(),
        "KUBE-POSTROUTING".into(),
        "KUBE-SERVICES".into(),
    ];
    for &i in &order {
        let s = &svcs[i];
        decls.push(format!("KUBE-SVC-{}", s.hash));
        if s.nodeport.is_some() || s.lb_ip.is_some() {
            decls.push(format!("KUBE-EXT-{}", s.hash));
        }
        if s.local {
            decls.push(format!("KUBE-SVL-{}", s.hash));
        }
        for (_, sep) in &s.eps {
            decls.push(format!("KUBE-SEP-{sep}"));
        }
    }
    decls.sort();
    for d in &decls {
        let _ = writeln!(out, ":{d} - {}", c(spec, &mut rng));
    }
    out.push_str(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
    );
    out.push_str(
        "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
    );
    out.push_str("-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n");
    out.push_str("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n");
    for &i in &order {
        let s = &svcs[i];
        if let Some(np) = s.nodeport {
            let _ = writeln!(
                out,
                "-A KUBE-NODEPORTS -p tcp -m comment --comment \"{}\" -m tcp --dport {np} -j KUBE-EXT-{}",
                s.id, s.hash
            );
        }
    }
    out.push_str("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n");
    out.push_str("-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n");
    out.push_str("-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n");
    // Per-service chains: iptables-save prints chains in kernel order; kube-proxy's rules for one
    // chain stay together.
    let mut chains: Vec<(String, Vec<String>)> = Vec::new();
    for &i in &order {
        let s = &svcs[i];
        let h = &s.hash;
        let id = &s.id;
        let mut svc = vec![format!(
            "-A KUBE-SVC-{h} ! -s 10.244.0.0/16 -d {}/32 -p tcp -m comment --comment \"{id} cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ",
            s.cluster_ip
        )];
        let n = s.eps.len();
        for (k, (ip, sep)) in s.eps.iter().enumerate() {
            if k + 1 < n {
                let p = 1.0 / (n - k) as f64;
                svc.push(format!("-A KUBE-SVC-{h} -m comment --comment \"{id} -> {ip}:8080\" -m statistic --mode random --probability {p:.11} -j KUBE-SEP-{sep}"));
            } else {
                svc.push(format!(
                    "-A KUBE-SVC-{h} -m comment --comment \"{id} -> {ip}:8080\" -j KUBE-SEP-{sep}"
                ));
            }
            chains.push((
                format!("KUBE-SEP-{sep}"),
                vec![
                    format!("-A KUBE-SEP-{sep} -s {ip}/32 -m comment --comment \"{id}\" -j KUBE-MARK-MASQ"),
                    format!("-A KUBE-SEP-{sep} -p tcp -m comment --comment \"{id}\" -m tcp -j DNAT --to-destination {ip}:8080"),
                ],
            ));
        }
        chains.push((format!("KUBE-SVC-{h}"), svc));
        if s.nodeport.is_some() || s.lb_ip.is_some() {
            let ext = if s.local {
                let mut v = vec![format!(
                    "-A KUBE-EXT-{h} -s 10.244.0.0/16 -m comment --comment \"pod traffic for {id} external destinations\" -j KUBE-SVC-{h}"
                )];
                if !s.changed {
                    v.push(format!("-A KUBE-EXT-{h} -m comment --comment \"masquerade LOCAL traffic for {id} external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"));
                }
                v.push(format!("-A KUBE-EXT-{h} -m comment --comment \"route LOCAL traffic for {id} external destinations\" -m addrtype --src-type LOCAL -j KUBE-SVC-{h}"));
                v.push(format!("-A KUBE-EXT-{h} -j KUBE-SVL-{h}"));
                let (ip, sep) = &s.eps[0];
                chains.push((
                    format!("KUBE-SVL-{h}"),
                    vec![format!("-A KUBE-SVL-{h} -m comment --comment \"{id} -> {ip}:8080\" -j KUBE-SEP-{sep}")],
                ));
                v
            } else {
                vec![
                    format!(
                        "-A KUBE-EXT-{h} -m comment --comment \"masquerade traffic for {id} external destinations\" -j KUBE-MARK-MASQ"
                    ),
                    format!("-A KUBE-EXT-{h} -j KUBE-SVC-{h}"),
                ]
            };
            chains.push((format!("KUBE-EXT-{h}"), ext));
        }
    }
    for &i in &order {
        let s = &svcs[i];
        let _ = writeln!(
            out,
            "-A KUBE-SERVICES -d {}/32 -p tcp -m comment --comment \"{} cluster IP\" -m tcp --dport 80 -j KUBE-SVC-{}",
            s.cluster_ip, s.id, s.hash
        );
        if let Some(lb) = &s.lb_ip {
            let _ = writeln!(
                out,
                "-A KUBE-SERVICES -d {lb}/32 -p tcp -m comment --comment \"{} loadbalancer IP\" -m tcp --dport 80 -j KUBE-EXT-{}",
                s.id, s.hash
            );
        }
    }
    out.push_str("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n");
    chains.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, rules) in chains {
        for r in rules {
            out.push_str(&r);
            out.push('\n');
        }
    }
    out.push_str("COMMIT\n# Completed\n");
    out
}

/// Session affinity in an nftables dump (see [`nft_dump_with`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Affinity {
    /// `sessionAffinity: ClientIP` with this timeout (seconds) on every fifth Service (the
    /// ClusterIP ones `ns3/svc3:p80`, `ns8/svc8:p80`, ...); 0: none.
    pub timeout: u32,
    /// The first of them, `ns3/svc3:p80`, with this timeout instead.
    pub changed: Option<u32>,
}

/// The Service with session affinity that [`Affinity::changed`] changes.
pub const AFFINITY_CHANGED: &str = "ns3/svc3:p80";

/// The same services as [`dump`], as kube-proxy's nftables mode writes them (`nft list table ip
/// kube-proxy`): per-service chains, the service/nodeport maps and the cluster-IP set. `change`
/// drops the "masquerade local traffic" rule of the same services as in [`dump`].
pub fn nft_dump(spec: &Spec) -> String {
    nft_dump_with(spec, Affinity::default())
}

/// [`nft_dump`] with session affinity as kube-proxy writes it: a set per endpoint,
/// `affinity-<endpoint chain's hash>-ns/name/proto/port__IP/PORT` (`flags dynamic,timeout`,
/// the Service's timeout), updated in the endpoint's chain and matched in the Service's chain
/// before the random dispatch. Loadable with `nft -f`.
pub fn nft_dump_with(spec: &Spec, affinity: Affinity) -> String {
    let (mut svcs, order, mut rng) = generate(spec);
    if affinity.timeout > 0 {
        for s in svcs.iter_mut().skip(3).step_by(5) {
            let changed = affinity.changed.filter(|_| s.id == AFFINITY_CHANGED);
            s.affinity = Some(changed.unwrap_or(affinity.timeout));
        }
    }
    let mut out = String::with_capacity(spec.services * 1500);
    out.push_str(NFT_BASE);
    let name = |s: &Svc| {
        let (ns_name, port) = s.id.split_once(':').unwrap_or((&s.id, ""));
        format!("{}-{ns_name}/tcp/{port}", &s.hash[..8])
    };
    let mut ips = Vec::new();
    let mut nodeports = Vec::new();
    for &i in &order {
        let s = &svcs[i];
        let n = name(s);
        ips.push(format!("{} . tcp . 80 : goto service-{n}", s.cluster_ip));
        if let Some(lb) = &s.lb_ip {
            ips.push(format!("{lb} . tcp . 80 : goto external-{n}"));
        }
        if let Some(np) = s.nodeport {
            nodeports.push(format!("tcp . {np} : goto external-{n}"));
        }
    }
    let elements = |out: &mut String, v: &[String]| {
        if !v.is_empty() {
            let _ = writeln!(out, "\t\telements = {{ {} }}", v.join(",\n\t\t\t     "));
        }
    };
    out.push_str("\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t\tcomment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\"\n");
    elements(&mut out, &ips);
    out.push_str("\t}\n\n\tmap service-nodeports {\n\t\ttype inet_proto . inet_service : verdict\n\t\tcomment \"NodePort traffic\"\n");
    elements(&mut out, &nodeports);
    out.push_str(
        "\t}\n\n\tset cluster-ips {\n\t\ttype ipv4_addr\n\t\tcomment \"Active ClusterIPs\"\n",
    );
    let cips: Vec<String> = order.iter().map(|&i| svcs[i].cluster_ip.clone()).collect();
    elements(&mut out, &cips);
    out.push_str("\t}\n");
    // Affinity sets before the chains that name them.
    for &i in &order {
        let s = &svcs[i];
        if let Some(t) = s.affinity {
            for e in &s.eps {
                let _ = writeln!(
                    out,
                    "\n\tset {} {{\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout {t}s\n\t}}",
                    ep_name("affinity", e, &name(s))
                );
            }
        }
    }
    for &i in &order {
        nft_service(&mut out, &svcs[i], &name(&svcs[i]), spec.counters, &mut rng);
    }
    out.push_str("}\n");
    out
}

/// One service's chains.
fn nft_service(out: &mut String, s: &Svc, n: &str, counters: bool, rng: &mut Rng) {
    let counter = |r: &mut Rng| {
        if counters {
            format!(
                "counter packets {} bytes {} ",
                r.next() % 1000,
                r.next() % 100000
            )
        } else {
            String::new()
        }
    };
    let ep = |e: &(String, String)| ep_name("endpoint", e, n);
    let branches: Vec<String> = s
        .eps
        .iter()
        .enumerate()
        .map(|(k, e)| format!("{k} : goto {}", ep(e)))
        .collect();
    let sticky: String = s
        .eps
        .iter()
        .filter(|_| s.affinity.is_some())
        .map(|e| {
            format!(
                "\t\tip saddr @{} goto {}\n",
                ep_name("affinity", e, n),
                ep(e)
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "\n\tchain service-{n} {{\n\t\tip daddr {} tcp dport 80 ip saddr != 10.244.0.0/16 {}jump mark-for-masquerade\n{sticky}\t\tnumgen random mod {} vmap {{ {} }}\n\t}}",
        s.cluster_ip,
        counter(rng),
        s.eps.len(),
        branches.join(", ")
    );
    if s.nodeport.is_some() || s.lb_ip.is_some() {
        let _ = writeln!(out, "\n\tchain external-{n} {{");
        if s.local {
            let _ = writeln!(out, "\t\tip saddr 10.244.0.0/16 goto service-{n}");
            if !s.changed {
                let _ = writeln!(out, "\t\tfib saddr type local jump mark-for-masquerade");
            }
            let _ = writeln!(out, "\t\tfib saddr type local goto service-{n}");
            let _ = writeln!(out, "\t\tgoto local-{n}\n\t}}");
            let _ = writeln!(
                out,
                "\n\tchain local-{n} {{\n\t\tnumgen random mod 1 vmap {{ 0 : goto {} }}\n\t}}",
                ep(&s.eps[0])
            );
        } else {
            let _ = writeln!(
                out,
                "\t\tjump mark-for-masquerade\n\t\tgoto service-{n}\n\t}}"
            );
        }
    }
    for e in &s.eps {
        let update = match s.affinity {
            Some(_) => format!("\t\tupdate @{} {{ ip saddr }}\n", ep_name("affinity", e, n)),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "\n\tchain {} {{\n\t\tip saddr {ip} jump mark-for-masquerade\n{update}\t\tmeta l4proto tcp dnat to {ip}:8080\n\t}}",
            ep(e),
            ip = e.0
        );
    }
}

/// An endpoint's chain (`kind` "endpoint") or affinity set ("affinity") of Service chain name
/// `n` ("HASH-ns/name/tcp/port"): both carry the endpoint's hash.
fn ep_name(kind: &str, (ip, sep): &(String, String), n: &str) -> String {
    format!("{kind}-{}-{}__{ip}/8080", &sep[..8], &n[9..])
}

/// kube-proxy's chains that no Service owns, as `nft list` prints them (a kind cluster's).
const NFT_BASE: &str = "table ip kube-proxy {
\tcomment \"rules for kube-proxy\"

\tchain nat-prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tjump services
\t}

\tchain nat-output {
\t\ttype nat hook output priority -100; policy accept;
\t\tjump services
\t}

\tchain nat-postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tjump masquerading
\t}

\tchain services {
\t\tip daddr . meta l4proto . th dport vmap @service-ips
\t\tip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
\t}

\tchain masquerading {
\t\tmeta mark & 0x00004000 == 0x00000000 return
\t\tmeta mark set meta mark ^ 0x00004000
\t\tmasquerade fully-random
\t}

\tchain mark-for-masquerade {
\t\tmeta mark set meta mark | 0x00004000
\t}

\tset nodeport-ips {
\t\ttype ipv4_addr
\t\tcomment \"IPs that accept NodePort traffic\"
\t\telements = { 172.18.0.3 }
\t}

";

//! Dumps that went through the real iptables: loaded with iptables-restore into a fresh network
//! namespace and read back with iptables-save, legacy on one side and nft on the other.
//! Needs root, iproute2 and Debian's iptables; ignored by plain `cargo test`, run by CI.

mod common;
use common::synth::{Spec, dump};
use common::*;
use std::io::Write;
use std::process::{Command, Stdio};

/// A network namespace removed on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("kindred-{tag}-{}", std::process::id());
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip netns add (needs root and iproute2)");
        assert!(st.success(), "ip netns add {name} failed (needs root)");
        Netns(name)
    }

    fn restore(&self, tool: &str, text: &str) {
        let mut c = Command::new("ip")
            .args(["netns", "exec", &self.0, tool])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn save(&self, tool: &str, extra: &[&str]) -> String {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.0, tool])
            .args(extra)
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(
            o.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
#[ignore = "needs root, ip netns and iptables (CI runs it)"]
fn real_iptables_round_trip_same_behaviour_is_equal() {
    let dir = tempfile::tempdir().unwrap();
    let base = Netns::new("base");
    let pr = Netns::new("pr");
    // Same behaviour, other NodePorts, IPs, endpoint hashes, service order, chain hashes.
    base.restore(
        "iptables-legacy-restore",
        &dump(&Spec {
            services: 150,
            seed: 41,
            ..Spec::default()
        }),
    );
    pr.restore(
        "iptables-nft-restore",
        &dump(&Spec {
            services: 150,
            seed: 42,
            hash_seed: 7,
            ..Spec::default()
        }),
    );
    let b = base.save("iptables-legacy-save", &[]);
    let p = pr.save("iptables-nft-save", &["-c"]); // counters on every rule: "[p:b] -A ..."
    assert!(p.contains("(nf_tables)"), "nft save format");
    assert!(
        p.lines().any(|l| l.starts_with("[0:0] -A KUBE-")),
        "counters on rules"
    );
    let (bf, pf) = (
        write(dir.path(), "base.txt", &b),
        write(dir.path(), "pr.txt", &p),
    );
    let o = kindred(&["diff", &bf, &pf]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("150 services compared (normalized): 0 changed, 150 equal"),
        "{}",
        stdout(&o)
    );
    // Raw: everything differs.
    assert_eq!(kindred(&["diff", &bf, &pf, "--raw"]).status.code(), Some(1));
}

#[test]
#[ignore = "needs root, ip netns and iptables (CI runs it)"]
fn real_iptables_round_trip_behaviour_change_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let base = Netns::new("b2");
    let pr = Netns::new("p2");
    base.restore(
        "iptables-nft-restore",
        &dump(&Spec {
            services: 120,
            seed: 51,
            ..Spec::default()
        }),
    );
    pr.restore(
        "iptables-legacy-restore",
        &dump(&Spec {
            services: 120,
            seed: 52,
            change: true,
            ..Spec::default()
        }),
    );
    let bf = write(dir.path(), "base.txt", &base.save("iptables-nft-save", &[]));
    let pf = write(dir.path(), "pr.txt", &pr.save("iptables-legacy-save", &[]));
    let o = kindred(&["diff", &bf, &pf, "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let changed = changed_services(&v);
    assert_eq!(changed.len(), 2, "services 0 and 100");
    for s in changed {
        assert_eq!(s["removed"].as_array().unwrap().len(), 1);
        assert_eq!(s["added"].as_array().unwrap().len(), 0);
        assert!(
            s["removed"][0]["rule"]
                .as_str()
                .unwrap()
                .contains("masquerade LOCAL traffic")
        );
    }
}

#[test]
#[ignore = "needs root, ip netns and iptables (CI runs it)"]
fn kube_proxy_restore_input_equals_what_iptables_saves() {
    // kube-proxy's own test expectation, as restore input, vs what the kernel gives back.
    let dir = tempfile::tempdir().unwrap();
    let ns = Netns::new("kp");
    let input = std::fs::read_to_string(fixture(
        "iptables/k8s-proxier_test-TestExternalTrafficPolicyLocal.txt",
    ))
    .unwrap();
    ns.restore("iptables-nft-restore", &input);
    let saved = ns.save("iptables-nft-save", &[]);
    assert!(
        saved.contains("--set-xmark 0x4000/0x4000"),
        "save rewrites --or-mark"
    );
    let (a, b) = (
        write(dir.path(), "in.txt", &input),
        write(dir.path(), "saved.txt", &saved),
    );
    let o = kindred(&["diff", &a, &b]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

/// Load an nftables ruleset into a namespace with `nft -f` and list it back.
fn nft_round_trip(tag: &str, ruleset: &str) -> String {
    let ns = Netns::new(tag);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("rules.nft");
    std::fs::write(&f, ruleset).unwrap();
    let o = Command::new("ip")
        .args(["netns", "exec", &ns.0, "nft", "-f", f.to_str().unwrap()])
        .output()
        .expect("nft (Debian's nftables)");
    assert!(
        o.status.success(),
        "nft -f: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    ns.save("nft", &["list", "table", "ip", "kube-proxy"])
}

#[test]
#[ignore = "needs root, ip netns and nft (CI runs it)"]
fn nftables_round_trip_same_behaviour_is_equal_and_changes_show() {
    let fixture = std::fs::read_to_string(fixture(
        "nftables/k3s-real-nft-list-table-ip-kube-proxy.txt",
    ))
    .unwrap();
    let fixture: String = fixture
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    // Another cluster: other chain hashes, cluster IP, NodePort and endpoint IP.
    let other = fixture
        .replace("P6J77WGM", "Q7K88XHN")
        .replace("VNXJG24O", "WOYKH35P")
        .replace("10.43.195.72", "10.43.7.7")
        .replace("tcp . 30000", "tcp . 31234")
        .replace("10.42.2.218", "10.42.2.250");
    assert_ne!(fixture, other);
    // A behaviour change: the external chain no longer marks for masquerade.
    let changed = other.replacen(
        "        chain external-Q7K88XHN-riset/hellopod-np-svc/tcp/ {\n                jump mark-for-masquerade\n",
        "        chain external-Q7K88XHN-riset/hellopod-np-svc/tcp/ {\n",
        1,
    );
    assert_ne!(changed, other);
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.nft", &nft_round_trip("nfa", &fixture));
    let b = write(dir.path(), "b.nft", &nft_round_trip("nfb", &other));
    let c = write(dir.path(), "c.nft", &nft_round_trip("nfc", &changed));
    let orig = write(dir.path(), "orig.nft", &fixture);

    let o = kindred(&["diff", &orig, &a]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "listing back changes nothing: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let o = kindred(&["diff", &a, &b, "--service", "riset/hellopod-np-svc"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let o = kindred(&["diff", &a, &b]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let o = kindred(&["diff", &a, &c, "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let changed = changed_services(&v);
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["service"], "riset/hellopod-np-svc:");
    assert_eq!(changed[0]["removed"].as_array().unwrap().len(), 1);
    assert_eq!(
        changed[0]["removed"][0]["rule"],
        "external-<hash>-riset/hellopod-np-svc/tcp/: jump mark-for-masquerade"
    );
    assert!(changed[0]["added"].as_array().unwrap().is_empty());
}

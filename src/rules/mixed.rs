//! Two dumps in different kube-proxy modes: one side iptables, the other nftables (a cluster
//! attached whose kube-proxy runs in the other mode). Nothing translates one mode's rules into
//! the other's, so each Service is compared as it is: its rules on each side, normalized in
//! their own mode, paired by Service; the comparison says the modes differ.

use std::collections::BTreeMap;

use serde::Serialize;

use super::diff::{Comparison, Options, ServiceDiff, diff_service, finish, set_shared, summarized};
use super::nft::{self, NftDump};
use super::normalize::{NormRule, normalize};
use super::parse::Dump;
use super::service::{SHARED, ServiceKey, services, shared_rules};

/// The kube-proxy mode of a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Iptables,
    Nftables,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Iptables => "iptables",
            Mode::Nftables => "nftables",
        })
    }
}

/// The modes of the two dumps compared, when they differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Modes {
    pub base: Mode,
    pub pr: Mode,
}

impl std::fmt::Display for Modes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the modes differ (base {}, PR {}): each Service's rules compared as they are",
            self.base, self.pr
        )
    }
}

/// One side's parsed dump, in its mode.
pub enum OneDump {
    Iptables(Dump),
    Nftables(NftDump),
}

impl OneDump {
    /// Parse a dump in whichever mode its text is written (every table of an nftables
    /// ruleset kept: a tracer follows packets through all of them).
    pub fn parse(text: String) -> Result<OneDump, super::parse::ParseError> {
        if nft::looks_like_nft(&text) {
            nft::parse_tables(text, true).map(OneDump::Nftables)
        } else {
            super::parse::parse(text).map(OneDump::Iptables)
        }
    }

    fn mode(&self) -> Mode {
        match self {
            OneDump::Iptables(_) => Mode::Iptables,
            OneDump::Nftables(_) => Mode::Nftables,
        }
    }
}

/// A side's Services (key -> how it is written, its normalized rules) and its shared rules.
type Grouped = (
    BTreeMap<ServiceKey, (String, Vec<NormRule>)>,
    Option<Vec<NormRule>>,
);

/// A side's rules grouped by Service and normalized in its own mode.
fn grouped(d: &OneDump, opts: &Options, lb_ips: &[String]) -> Grouped {
    let filter = opts.service.as_ref();
    match d {
        OneDump::Iptables(d) => {
            let svcs = services(d, filter)
                .into_iter()
                .map(|s| {
                    let rules = normalize(d, &s, &s.written, opts.raw);
                    (s.key.clone(), (s.written.clone(), rules))
                })
                .collect();
            let shared =
                (!opts.no_shared).then(|| normalize(d, &shared_rules(d), SHARED, opts.raw));
            (svcs, shared)
        }
        OneDump::Nftables(d) => {
            let svcs = nft::services(d, filter)
                .into_iter()
                .map(|(k, idx)| {
                    let rules = nft::normalize(d, &idx, opts.raw, lb_ips);
                    (k.clone(), (k.to_string(), rules))
                })
                .collect();
            let shared = (!opts.no_shared).then(|| nft::normalize_shared(d, opts.raw, lb_ips));
            (svcs, shared)
        }
    }
}

/// Compare two dumps of different modes, Service by Service, as they are.
pub fn compare_mixed(base: &OneDump, pr: &OneDump, opts: &Options) -> Comparison {
    let (b, p) = std::thread::scope(|sc| {
        let h = sc.spawn(|| grouped(base, opts, &opts.lb_ips.0));
        let p = grouped(pr, opts, &opts.lb_ips.1);
        (h.join().expect("grouping thread"), p)
    });
    let ((mut bs, bshared), (mut ps, pshared)) = (b, p);
    let keys: std::collections::BTreeSet<ServiceKey> =
        bs.keys().chain(ps.keys()).cloned().collect();
    let out: Vec<ServiceDiff> = keys
        .into_iter()
        .map(|k| {
            let (b, p) = (bs.remove(&k), ps.remove(&k));
            let display = b.as_ref().or(p.as_ref()).map(|(w, _)| w.clone());
            let (nb, np) = (
                b.as_ref().map_or(&[][..], |(_, r)| r),
                p.as_ref().map_or(&[][..], |(_, r)| r),
            );
            let d = diff_service(
                display.unwrap_or_default(),
                b.is_some(),
                p.is_some(),
                nb,
                np,
            );
            summarized(d, opts)
        })
        .collect();
    let mut c = finish(out, opts);
    if let (Some(nb), Some(np)) = (bshared, pshared)
        && !(nb.is_empty() && np.is_empty())
    {
        set_shared(
            &mut c,
            Some(diff_service(SHARED.to_string(), true, true, &nb, &np)),
        );
    }
    c.modes = Some(Modes {
        base: base.mode(),
        pr: pr.mode(),
    });
    c.equal = false;
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::compare_texts;

    fn fixture(rel: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        std::fs::read_to_string(p.join(rel)).unwrap()
    }

    /// An iptables dump against an nftables one: no error, each Service on the side that has
    /// it, never equal, the modes named (text and JSON).
    #[test]
    fn two_modes_compare_per_service_as_they_are() {
        let ipt = fixture("iptables/mauilion-blog-2019-master-cluster-KUBE-XLB.txt");
        let nft = fixture("nftables/k3s-real-nft-list-table-ip-kube-proxy.txt");
        let c = compare_texts(&ipt, &nft, &Options::default()).unwrap();
        assert_eq!(
            c.modes,
            Some(Modes {
                base: Mode::Iptables,
                pr: Mode::Nftables
            })
        );
        assert!(!c.equal);
        let svc = |name: &str| c.services.iter().find(|s| s.service == name).unwrap();
        let echo = svc("default/echo:");
        assert!(
            echo.in_base && !echo.in_pr && echo.removed.len() == 3,
            "{echo:?}"
        );
        let dns = svc("kube-system/kube-dns:dns-tcp");
        assert!(
            !dns.in_base && dns.in_pr && !dns.added.is_empty(),
            "{dns:?}"
        );
        let text = crate::rules::render::text(&c, false);
        assert!(
            text.contains("note: the modes differ (base iptables, PR nftables)"),
            "{text}"
        );
        let mut json = Vec::new();
        crate::rules::json::write(&mut json, &c).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["modes"]["base"], "iptables");
        // The other way round, with one Service only.
        let opts = Options {
            service: Some(crate::rules::ServiceFilter::parse("kube-system/kube-dns").unwrap()),
            ..Options::default()
        };
        let c = compare_texts(&nft, &ipt, &opts).unwrap();
        assert_eq!(
            c.modes.map(|m| (m.base, m.pr)),
            Some((Mode::Nftables, Mode::Iptables))
        );
        assert!(
            c.services
                .iter()
                .all(|s| s.service.starts_with("kube-system/kube-dns"))
        );
        assert!(!c.equal);
    }
}

//! Dev-only: write a generated pair of `iptables-save` dumps (the benchmark's) to two files, for
//! measuring whole commands: `cargo run --release --example synth_pair -- SERVICES DIR [--nft]`
//! (`--nft`: `nft list table ip kube-proxy` form). The PR side changes every eTP=Local
//! LoadBalancer Service (2,000 of 10,000).

#[path = "../tests/common/synth.rs"]
mod synth;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let services: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let nft = args.iter().any(|a| a == "--nft");
    let dir = std::path::PathBuf::from(args.get(2).map_or(".", |s| s.as_str()));
    for (name, seed, change) in [("base.txt", 1, false), ("pr.txt", 2, true)] {
        let spec = synth::Spec {
            services,
            seed,
            change,
            // Every eTP=Local LoadBalancer Service changed, as the 2019 fix changed them all.
            change_all: true,
            ..Default::default()
        };
        let text = if nft {
            synth::nft_dump(&spec)
        } else {
            synth::dump(&spec)
        };
        std::fs::write(dir.join(name), text).unwrap();
    }
}

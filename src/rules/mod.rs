//! The rule engine: parse kube-proxy's rule dumps, find a Service's rules, normalize away what
//! differs between any two clusters, and diff base against PR. No async, no UI.

pub mod diff;
pub mod group;
pub mod json;
pub mod mixed;
pub mod nft;
pub mod normalize;
pub mod packets;
pub mod parse;
pub mod render;
pub mod service;
pub mod tokens;
pub mod trace;

pub use diff::{Comparison, Options, TextError, compare, compare_texts, compare_texts_keep};
pub use parse::{Dump, ParseError, parse};
pub use service::ServiceFilter;

/// Whether a dump, before it is parsed, holds anything of kube-proxy's (a `KUBE-` chain, or its
/// nftables table): a node whose dump holds nothing is one where kube-proxy has not started.
/// After parsing, `diff::Parsed::has_kube_proxy_rules` says it for certain.
pub fn mentions_kube_proxy(text: &str) -> bool {
    let has = |n: &str| memchr::memmem::find(text.as_bytes(), n.as_bytes()).is_some();
    has("KUBE-") || has("kube-proxy")
}

//! The rule engine: parse kube-proxy's rule dumps, find a Service's rules, normalize away what
//! differs between any two clusters, and diff base against PR. No async, no UI.

pub mod diff;
pub mod nft;
pub mod normalize;
pub mod parse;
pub mod render;
pub mod service;
pub mod tokens;

pub use diff::{Comparison, Options, TextError, compare, compare_texts, compare_texts_keep};
pub use parse::{Dump, ParseError, parse};
pub use service::ServiceFilter;

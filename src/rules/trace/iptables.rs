//! The tracer over iptables rules (iptables-save, `iptables -S`, legacy or nft backend).

use super::{Packet, Trace};
use crate::rules::parse::Dump;

/// An iptables dump compiled for tracing.
pub struct Tracer<'a> {
    #[allow(dead_code)]
    dump: &'a Dump,
}

impl<'a> Tracer<'a> {
    pub fn new(dump: &'a Dump) -> Tracer<'a> {
        Tracer { dump }
    }

    pub fn trace(&self, _p: &Packet) -> Trace {
        Trace::unknown(Vec::new(), "the iptables tracer is not written yet")
    }
}

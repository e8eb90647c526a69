//! One file per pane.

pub mod build;
pub mod diff;
pub mod footer;
pub mod header;
pub mod held;
pub mod metrics;
pub mod overlay;
pub mod paths;
pub mod pods;
pub mod probes;

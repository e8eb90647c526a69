//! kindred: run a Kubernetes networking change side by side with its base.

pub mod cli;
pub mod logging;
pub mod rules;

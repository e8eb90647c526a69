//! kindred: run a Kubernetes networking change side by side with its base.

pub mod app;
pub mod backend;
pub mod check;
pub mod cli;
pub mod logging;
pub mod model;
pub mod rules;
pub mod scenario;
pub mod tui;
pub mod ui;

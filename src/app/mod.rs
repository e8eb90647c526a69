//! The dashboard's core: state, the one update function, the keymap, the diff data, and the
//! driver that runs effects for every front end.

pub mod bisect;
pub mod diffs;
pub mod driver;
pub mod held;
pub mod keymap;
pub mod metrics;
pub mod predict;
pub mod state;
pub mod timeline;
pub mod update;

pub use driver::Driver;
pub use state::State;
pub use update::{Effect, Msg, update};

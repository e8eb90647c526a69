//! The dashboard's core: state, the update function, the keymap.

pub mod keymap;
pub mod state;
pub mod update;

pub use state::{Pane, State};
pub use update::{Effect, Msg, update};

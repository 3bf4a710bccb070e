//! The `xinyi` commands, one module per command group; `main.rs` holds only the clap top level
//! and the dispatch to these modules.
//!
//! Shared pieces: [`ctx`] (flags, node, trust, submitting and verifying), [`args`] (flag and
//! file parsing), [`output`] (printing). Every check of what the node returns is in the
//! `xinyi_client` library (`proof`, `audit`); these modules only wire it to the command line.

pub use xinyi_client::fmt_time;

pub mod access_log;
pub mod anchor;
pub mod args;
pub mod audit;
pub mod checkpoint;
pub mod commitment;
pub mod consent;
pub mod ctx;
pub mod erase;
pub mod export;
pub mod grade;
pub mod info;
pub mod keygen;
pub mod output;
pub mod proof;
pub mod query;
pub mod record;
pub mod repair;
pub mod watch;
pub mod witness;

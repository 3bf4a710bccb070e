//! xinyi-ledger: everything an auditor must trust, and nothing else.
//!
//! Pure Rust with no async and no network: canonical encoding ([`codec`]), domain-separated
//! hashing ([`hash`]) and signatures ([`keys`]) with their key files ([`keyfile`]), firm
//! identifiers ([`uscc`]) and the keyed firm tags entries use instead ([`firmtag`]), the entry types
//! ([`entry`]), blocks and commit certificates ([`block`]), the RFC 9162 Merkle log
//! ([`merkle`]), C2SP checkpoints ([`note`]), the deterministic state machine ([`state`]),
//! block execution ([`chain`]), the sled store ([`store`]), audit bundles ([`bundle`]) and the
//! streaming verifier ([`verify`]). The node wires this to a network; the client wires it to a
//! command line; neither adds rules of its own.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Clippy's pedantic group, less these lints (each a deliberate choice, not a backlog):
#![warn(clippy::pedantic)]
#![allow(
    // Every fallible function returns a typed `thiserror` enum whose variants are documented
    // where they are defined; an `# Errors` section per function would repeat them.
    clippy::missing_errors_doc,
    // Getters and constructors of plain data: `#[must_use]` on each one would be noise, and
    // discarding a `Result` is already a warning.
    clippy::must_use_candidate,
    clippy::return_self_not_must_use,
    // Lengths and counts are bounded by the `MAX_*` decode limits (far below 2^32) before
    // they are cast; the casts are where the wire format fixes a width.
    clippy::cast_possible_truncation,
    // The Merkle and encoding code keeps the names of the formulas it implements
    // (RFC 9162's n, k, m; CBOR's major type and argument).
    clippy::many_single_char_names,
    // The state rules and the spec-vector driver are one match over the entry kinds each;
    // splitting them would scatter one rule table.
    clippy::too_many_lines,
    // Public signatures node, client and tests call: changing `&T` to `T` (or dropping an
    // unused `self`) for a few bytes would ripple through every caller for no behaviour.
    clippy::trivially_copy_pass_by_ref,
    clippy::needless_pass_by_value,
    clippy::unused_self
)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod anchor;
pub mod block;
pub mod bundle;
pub mod chain;
pub mod codec;
pub mod entry;
pub mod firmtag;
pub mod genesis;
pub mod hash;
pub mod keyfile;
pub mod keys;
pub mod merkle;
pub mod monitor;
pub mod note;
pub mod sample;
pub mod smt;
pub mod state;
pub mod store;
pub mod types;
pub mod uscc;
pub mod verify;

pub use block::{Block, BlockHeader, CommitCertificate, ValidatorSet};
pub use chain::{Chain, ChainError, ChainErrorKind, CommittedBlock};
pub use entry::{Entry, EntryBody, EntryKind};
pub use firmtag::{FirmKey, FirmKeyring, FirmTag};
pub use genesis::Genesis;
pub use hash::Digest;
pub use keys::{KeyPair, PublicKey, Signature};
pub use state::State;
pub use types::{Category, OrgId, Role, TimeMs};
pub use uscc::Uscc;

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
pub use firmtag::{FirmKey, FirmTag};
pub use genesis::Genesis;
pub use hash::Digest;
pub use keys::{KeyPair, PublicKey, Signature};
pub use state::State;
pub use types::{Category, OrgId, Role, TimeMs};
pub use uscc::Uscc;

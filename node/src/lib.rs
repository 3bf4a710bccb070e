//! xinyi-node: the daemon that turns the ledger library into a running service.
//!
//! This crate wires `xinyi-ledger` to a block producer ([`engine`]), the agency's off-ledger
//! credit data ([`datastore`]), a sample consortium for `--dev` ([`dev`]), configuration files
//! for real deployments ([`config`]), metrics ([`metrics`]) and the HTTP API ([`api`]). It adds
//! no ledger rules of its own: every decision about what may be committed is made by the ledger
//! crate's `Chain`/`State`. The BFT glue ([`consensus`]: Commonware simplex ordering ledger
//! blocks, app-level commit votes, catch-up) runs today in a deterministic simulation; the
//! libp2p transport that would let the daemon use it is not here yet, so a running node is a
//! single validator that certifies its own blocks (1-of-1 commit certificate).

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod anchor;
pub mod anchor_evm;
pub mod api;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod consensus;
pub mod datastore;
pub mod dev;
pub mod engine;
pub mod erasure;
pub mod failpoint;
pub mod firmkeys;
pub mod mempool;
pub mod metrics;
pub mod monitor;
pub mod node;
pub mod p2p;
pub mod sealed;
pub mod tls;
pub mod witness_client;

//! A local multi-node testnet on loopback: the `xinyi-testnet` binary's library.
//!
//! `up` creates a directory with keys (mode 0600), a genesis of the six sample organisations
//! (plus `agency-4`.. and `bank-3`.. for larger nets), one `xinyi-node` configuration per node
//! (`[p2p]` naming every other node, `[query]` pointing non-agency nodes at gz-credit,
//! `[sample]` on gz-credit), starts every node as a detached process, records everything in
//! `DIR/testnet.json`, waits for `/health` and registers the keyed sample firms. `status`,
//! `down`, `kill`, `start`, `scenario`, `chaos` and `rotate-key` work from that manifest. Nothing here is part of the
//! trust base: it only writes files a user could write and makes requests a user could make.

pub mod anchorchain;
pub mod chaos;
pub mod firmkey;
pub mod http;
pub mod layout;
pub mod manifest;
pub mod ops;
pub mod process;
pub mod rotate;
pub mod scenario;

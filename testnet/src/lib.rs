//! Local testnet tooling and benchmarks: the `xinyi-bench` binary and the load drivers it uses.
//! Not part of the trust base; nothing here is needed to run or verify a ledger.

pub mod cluster;
pub mod devnode;
pub mod monitor;
pub mod net;
pub mod noop;

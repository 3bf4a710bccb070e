//! Local testnet tooling and benchmarks.

//! The text format of an EVM anchor receipt inside an `anchor_receipt` entry
//! (`specs/anchoring.md` §4), and the checkpoint hash the anchor contract stores.
//!
//! An `anchor_receipt { size, root, chain, tx }` keeps its canonical encoding; for an EVM
//! anchor `chain` is `evm:<EIP-155 chain id>` and `tx` packs the contract address, transaction
//! hash, block number, block hash and log index as `/`-separated fields. This module only
//! formats and parses those strings (strictly: one spelling per receipt); it does not talk to
//! any chain and adds no ledger rule.

use crate::note::Checkpoint;
use sha2::{Digest as _, Sha256};

/// Prefix of the `chain` field of an EVM anchor receipt.
pub const EVM_PREFIX: &str = "evm:";

/// Where one checkpoint was anchored on an EVM chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvmReceipt {
    /// EIP-155 chain id of the EVM chain.
    pub chain_id: u64,
    /// Anchor contract address.
    pub contract: [u8; 20],
    /// Transaction hash.
    pub tx_hash: [u8; 32],
    /// Block number holding the transaction.
    pub block_number: u64,
    /// Hash of that block.
    pub block_hash: [u8; 32],
    /// Index of the `Anchored` event in that block's logs.
    pub log_index: u64,
}

/// Why a receipt string is not an EVM receipt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("anchor.bad_receipt: {0}")]
pub struct ReceiptFormatError(pub String);

fn bad(s: impl Into<String>) -> ReceiptFormatError {
    ReceiptFormatError(s.into())
}

fn parse_dec(what: &str, s: &str) -> Result<u64, ReceiptFormatError> {
    let ok =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !ok {
        return Err(bad(format!("{what} {s:?} is not a canonical decimal")));
    }
    s.parse()
        .map_err(|_| bad(format!("{what} {s:?} does not fit in 64 bits")))
}

fn parse_hex<const N: usize>(what: &str, s: &str) -> Result<[u8; N], ReceiptFormatError> {
    let h = s
        .strip_prefix("0x")
        .filter(|h| {
            h.len() == 2 * N
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
        .ok_or_else(|| {
            bad(format!(
                "{what} {s:?} is not 0x and {} lowercase hex digits",
                2 * N
            ))
        })?;
    let mut out = [0u8; N];
    hex::decode_to_slice(h, &mut out).map_err(|e| bad(format!("{what}: {e}")))?;
    Ok(out)
}

impl EvmReceipt {
    /// The receipt's `chain` field: `evm:<chain id>`.
    pub fn chain(&self) -> String {
        format!("{EVM_PREFIX}{}", self.chain_id)
    }

    /// The receipt's `tx` field: `0x<contract>/0x<tx hash>/<block number>/0x<block hash>/<log index>`.
    pub fn tx(&self) -> String {
        format!(
            "0x{}/0x{}/{}/0x{}/{}",
            hex::encode(self.contract),
            hex::encode(self.tx_hash),
            self.block_number,
            hex::encode(self.block_hash),
            self.log_index
        )
    }

    /// Whether a receipt's `chain` names an EVM chain.
    pub fn is_evm(chain: &str) -> bool {
        chain.starts_with(EVM_PREFIX)
    }

    /// Parses the `chain` and `tx` fields of an EVM anchor receipt.
    pub fn parse(chain: &str, tx: &str) -> Result<EvmReceipt, ReceiptFormatError> {
        let id = chain
            .strip_prefix(EVM_PREFIX)
            .ok_or_else(|| bad(format!("chain {chain:?} does not start with {EVM_PREFIX}")))?;
        let chain_id = parse_dec("chain id", id)?;
        let parts: Vec<&str> = tx.split('/').collect();
        let [contract, tx_hash, number, block_hash, log_index] = parts.as_slice() else {
            return Err(bad(format!(
                "tx {tx:?} does not have 5 '/'-separated fields"
            )));
        };
        Ok(EvmReceipt {
            chain_id,
            contract: parse_hex("contract", contract)?,
            tx_hash: parse_hex("tx hash", tx_hash)?,
            block_number: parse_dec("block number", number)?,
            block_hash: parse_hex("block hash", block_hash)?,
            log_index: parse_dec("log index", log_index)?,
        })
    }
}

/// The checkpoint hash an anchor stores: SHA-256 of the checkpoint text (origin, size, base64
/// root, no extension lines), so anyone holding the origin, size and root recomputes it.
pub fn checkpoint_hash(origin: &str, size: u64, root: &[u8; 32]) -> [u8; 32] {
    let cp = Checkpoint {
        origin: origin.to_string(),
        size,
        root: *root,
        extensions: vec![],
    };
    Sha256::digest(cp.to_text().as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_round_trip_and_strictness() {
        let r = EvmReceipt {
            chain_id: 1337,
            contract: [0xab; 20],
            tx_hash: [1; 32],
            block_number: 42,
            block_hash: [2; 32],
            log_index: 0,
        };
        assert!(r.chain().len() <= 64 && r.tx().len() <= 256);
        assert_eq!(EvmReceipt::parse(&r.chain(), &r.tx()), Ok(r));
        let max = EvmReceipt {
            chain_id: u64::MAX,
            block_number: u64::MAX,
            log_index: u64::MAX,
            ..r
        };
        assert!(max.chain().len() <= 64 && max.tx().len() <= 256);
        assert!(EvmReceipt::parse("evm:01337", &r.tx()).is_err());
        assert!(EvmReceipt::parse("file", &r.tx()).is_err());
        assert!(EvmReceipt::parse(&r.chain(), &r.tx().to_uppercase()).is_err());
        assert!(EvmReceipt::parse(&r.chain(), &format!("{}/1", r.tx())).is_err());
        assert!(EvmReceipt::parse(&r.chain(), &r.tx().replace("/42/", "/042/")).is_err());
    }

    #[test]
    fn checkpoint_hash_is_sha256_of_the_text() {
        let h = checkpoint_hash("xinyi/guangzhou", 3, &[0; 32]);
        let want: [u8; 32] =
            Sha256::digest(b"xinyi/guangzhou\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
                .into();
        assert_eq!(h, want);
    }
}

//! EVM anchoring: the node's `evm` anchor sink (`specs/anchoring.md`). It sends the latest
//! final (quorum-cosigned) checkpoint to the `XinyiAnchor` contract (`node/contracts/`) over
//! Ethereum JSON-RPC, waits for the configured confirmations and commits an `anchor_receipt`
//! entry naming the transaction, block and log; it also deploys the contract
//! (`xinyi-node anchor deploy`).
//!
//! The chain is the source of truth for what was anchored: every round reads the contract's
//! last anchor of this consortium and the anchoring account's pending nonce, so a restart, a
//! dropped transaction or a chain that was down needs no local bookkeeping, and no checkpoint is
//! sent while one of ours is in flight or is not larger than the last anchored one. The task
//! runs on its own; a chain that is down only delays anchoring (with backoff), never the ledger.
//! Transactions are legacy EIP-155 (accepted by every EVM chain, including FISCO BCOS and
//! ChainMaker's EVM); alloy builds and signs them, ureq carries the JSON-RPC.

use crate::engine::Engine;
use crate::metrics::Metrics;
use alloy_consensus::{SignableTransaction as _, TxEnvelope, TxLegacy};
use alloy_eips::eip2718::Encodable2718 as _;
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use alloy_signer::SignerSync as _;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{sol, SolCall as _, SolError as _, SolEvent as _, SolValue as _};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use xinyi_ledger::anchor::{checkpoint_hash, EvmReceipt};
use xinyi_ledger::{Digest, EntryKind};

sol! {
    /// The anchor contract's interface (node/contracts/XinyiAnchor.sol).
    contract XinyiAnchor {
        event Anchored(bytes32 indexed chainId, uint256 indexed index, uint64 size, bytes32 root, bytes32 checkpointHash, address sender);
        error NotOwner(address sender);
        error NotAnchorer(address sender);
        error SizeNotGrowing(uint64 last, uint64 size);
        function kind() external pure returns (bytes32);
        function anchor(bytes32 chainId, uint64 size, bytes32 root, bytes32 checkpointHash) external returns (uint256 index);
        function count(bytes32 chainId) external view returns (uint256);
        function latest(bytes32 chainId) external view returns (uint64 size, bytes32 root, bytes32 checkpointHash);
    }
}

/// The compiled contract (`node/contracts/XinyiAnchor.json`, from `tests/evm/compile.js`).
pub const ARTIFACT: &str = include_str!("../contracts/XinyiAnchor.json");

/// What `kind()` returns: `"xinyi-anchor/v1"`, right-padded with zeroes.
pub fn contract_kind() -> B256 {
    let mut k = [0u8; 32];
    k[..15].copy_from_slice(b"xinyi-anchor/v1");
    B256::from(k)
}

/// `[anchor.evm]` configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvmConfig {
    /// JSON-RPC URL of the EVM chain.
    pub rpc: String,
    /// Address of the anchor contract (`xinyi-node anchor deploy` prints it).
    pub contract: String,
    /// secp256k1 key file of the anchoring account (`xinyi-node anchor keygen`; mode 0600).
    pub key: PathBuf,
    /// Anchor when this many blocks were committed since the last anchor (0: by time only).
    #[serde(default)]
    pub every_blocks: u64,
    /// Anchor when this many milliseconds passed since the last anchor (and the log grew).
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Blocks on the EVM chain (the anchor's own included) before the receipt is recorded.
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
    /// How often the task looks at the chain, in milliseconds (also the first retry delay).
    #[serde(default = "default_poll")]
    pub poll_ms: u64,
    /// Where the transaction in flight is remembered across restarts (default
    /// `<data dir>/anchor-evm.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_file: Option<PathBuf>,
}

fn default_interval() -> u64 {
    60_000
}
fn default_confirmations() -> u64 {
    1
}
fn default_poll() -> u64 {
    1_000
}

/// Why an EVM operation failed; [`EvmError::code`] is stable.
#[derive(Debug, thiserror::Error)]
pub enum EvmError {
    /// The key file is missing, malformed or readable by others.
    #[error("anchor.key: {0}")]
    Key(String),
    /// A configuration value is malformed.
    #[error("anchor.config: {0}")]
    Config(String),
    /// The RPC endpoint did not answer.
    #[error("anchor.rpc_unreachable: {url}: {reason}")]
    Unreachable {
        /// RPC URL.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The RPC endpoint answered with an error or an unusable result.
    #[error("anchor.rpc_error: {method}: {message}")]
    Rpc {
        /// JSON-RPC method.
        method: String,
        /// The error, one line.
        message: String,
    },
    /// No code at the contract address.
    #[error(
        "anchor.no_code: no contract code at {0} on this chain (wrong address or wrong chain)"
    )]
    NoCode(String),
    /// The code at the address is not the anchor contract.
    #[error("anchor.wrong_contract: the contract at {0} is not a xinyi anchor contract (kind() differs)")]
    WrongContract(String),
    /// The account cannot pay for the transaction.
    #[error("anchor.unfunded: account {account} has {balance} wei, {detail}")]
    Unfunded {
        /// Account.
        account: String,
        /// Its balance.
        balance: U256,
        /// What the transaction needs.
        detail: String,
    },
    /// The contract does not accept anchors from this account.
    #[error("anchor.not_anchorer: the contract does not accept anchors from {0}")]
    NotAnchorer(String),
    /// The transaction would revert or reverted.
    #[error("anchor.reverted: {0}")]
    Reverted(String),
    /// The ledger refused or did not commit the receipt.
    #[error("anchor.receipt: {0}")]
    Receipt(String),
    /// The anchored root differs from the ledger's root at that size.
    #[error("anchor.root_mismatch: the chain's anchor of size {size} has a root that is not the ledger's")]
    RootMismatch {
        /// Log size.
        size: u64,
    },
}

impl EvmError {
    /// The stable code (the text before the first `:`).
    pub fn code(&self) -> String {
        self.to_string()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

/// Creates a secp256k1 key file (mode 0600, never overwrites): `0x` and 64 hex digits.
pub fn keygen(path: &Path) -> Result<Address, EvmError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let signer = PrivateKeySigner::random();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| EvmError::Key(format!("cannot create {}: {e}", path.display())))?;
    writeln!(f, "0x{}", hex::encode(signer.to_bytes()))
        .and_then(|()| f.sync_all())
        .map_err(|e| EvmError::Key(format!("cannot write {}: {e}", path.display())))?;
    Ok(signer.address())
}

/// Reads a secp256k1 key file: `0x` and 64 hex digits (a trailing newline allowed). Refuses a
/// file that its group or others may read or write.
pub fn read_key(path: &Path) -> Result<PrivateKeySigner, EvmError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path)
        .map_err(|e| EvmError::Key(format!("cannot read {}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(EvmError::Key(format!(
            "{} has mode {mode:03o}; an anchoring key must not be accessible to others (chmod 600 {})",
            path.display(),
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| EvmError::Key(format!("cannot read {}: {e}", path.display())))?;
    let t = text.trim();
    let h = t.strip_prefix("0x").unwrap_or(t);
    let mut b = [0u8; 32];
    hex::decode_to_slice(h, &mut b).map_err(|_| {
        EvmError::Key(format!(
            "{} does not hold a secp256k1 key (0x and 64 hex digits)",
            path.display()
        ))
    })?;
    PrivateKeySigner::from_bytes(&B256::from(b)).map_err(|e| {
        EvmError::Key(format!(
            "{}: not a valid secp256k1 key: {e}",
            path.display()
        ))
    })
}

/// Parses a `0x` address.
pub fn parse_address(what: &str, s: &str) -> Result<Address, EvmError> {
    s.trim()
        .parse::<Address>()
        .map_err(|_| EvmError::Config(format!("{what} {s:?} is not a 0x address of 40 hex digits")))
}

/// A blocking Ethereum JSON-RPC client (the few methods anchoring needs).
#[derive(Clone)]
pub struct Rpc {
    url: String,
    agent: ureq::Agent,
}

fn quantity(method: &str, v: &Value) -> Result<u128, EvmError> {
    v.as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .and_then(|h| u128::from_str_radix(h, 16).ok())
        .ok_or_else(|| EvmError::Rpc {
            method: method.into(),
            message: format!("expected a hex quantity, got {v}"),
        })
}

fn data(method: &str, v: &Value) -> Result<Vec<u8>, EvmError> {
    v.as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| EvmError::Rpc {
            method: method.into(),
            message: format!("expected hex data, got {v}"),
        })
}

fn b256(method: &str, v: &Value) -> Result<B256, EvmError> {
    let d = data(method, v)?;
    (d.len() == 32)
        .then(|| B256::from_slice(&d))
        .ok_or_else(|| EvmError::Rpc {
            method: method.into(),
            message: format!("expected 32 bytes, got {v}"),
        })
}

fn hex0x(b: &[u8]) -> String {
    format!("0x{}", hex::encode(b))
}

/// Maps a revert (in an `eth_call`/`eth_estimateGas` error) to a typed error.
fn revert_error(from: Address, err: &str) -> Option<EvmError> {
    let has = |sel: [u8; 4]| err.contains(&hex::encode(sel));
    if has(XinyiAnchor::NotAnchorer::SELECTOR) {
        return Some(EvmError::NotAnchorer(from.to_string()));
    }
    if has(XinyiAnchor::SizeNotGrowing::SELECTOR) {
        return Some(EvmError::Reverted(
            "the contract refuses a log size that does not grow (already anchored)".into(),
        ));
    }
    let lower = err.to_lowercase();
    if lower.contains("revert") {
        return Some(EvmError::Reverted(err.chars().take(300).collect()));
    }
    None
}

impl Rpc {
    /// A client for `url` (10 s timeout per call).
    pub fn new(url: &str) -> Rpc {
        Rpc {
            url: url.to_string(),
            agent: crate::tls::peer_agent_builder()
                .timeout(Duration::from_secs(10))
                .build(),
        }
    }

    /// The RPC URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One JSON-RPC call; the `result`.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, EvmError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let resp = match self.agent.post(&self.url).send_json(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                // Some nodes answer JSON-RPC errors with a 4xx/5xx status.
                match serde_json::from_str::<Value>(&text) {
                    Ok(v) if v.get("error").is_some() => return self.result(method, v),
                    _ => {
                        return Err(EvmError::Unreachable {
                            url: self.url.clone(),
                            reason: format!("HTTP {code}"),
                        })
                    }
                }
            }
            Err(e) => {
                return Err(EvmError::Unreachable {
                    url: self.url.clone(),
                    reason: e.to_string().replace('\n', " "),
                })
            }
        };
        let v: Value = resp.into_json().map_err(|e| EvmError::Rpc {
            method: method.into(),
            message: format!("answer is not JSON: {e}"),
        })?;
        self.result(method, v)
    }

    fn result(&self, method: &str, mut v: Value) -> Result<Value, EvmError> {
        if let Some(e) = v.get("error") {
            return Err(EvmError::Rpc {
                method: method.into(),
                message: e.to_string(),
            });
        }
        Ok(v.get_mut("result").map(Value::take).unwrap_or(Value::Null))
    }

    /// `eth_chainId`.
    pub fn chain_id(&self) -> Result<u64, EvmError> {
        let v = self.call("eth_chainId", json!([]))?;
        u64::try_from(quantity("eth_chainId", &v)?).map_err(|_| EvmError::Rpc {
            method: "eth_chainId".into(),
            message: "chain id does not fit in 64 bits".into(),
        })
    }

    /// `eth_blockNumber`.
    pub fn block_number(&self) -> Result<u64, EvmError> {
        let v = self.call("eth_blockNumber", json!([]))?;
        Ok(quantity("eth_blockNumber", &v)? as u64)
    }

    /// `eth_getCode(addr, latest)`.
    pub fn code(&self, addr: Address) -> Result<Vec<u8>, EvmError> {
        let v = self.call("eth_getCode", json!([addr.to_string(), "latest"]))?;
        data("eth_getCode", &v)
    }

    /// `eth_getBalance(addr, latest)`.
    pub fn balance(&self, addr: Address) -> Result<U256, EvmError> {
        let v = self.call("eth_getBalance", json!([addr.to_string(), "latest"]))?;
        v.as_str()
            .and_then(|s| s.parse::<U256>().ok())
            .ok_or_else(|| EvmError::Rpc {
                method: "eth_getBalance".into(),
                message: format!("expected a quantity, got {v}"),
            })
    }

    /// `eth_getTransactionCount(addr, tag)`.
    pub fn nonce(&self, addr: Address, tag: &str) -> Result<u64, EvmError> {
        let v = self.call("eth_getTransactionCount", json!([addr.to_string(), tag]))?;
        Ok(quantity("eth_getTransactionCount", &v)? as u64)
    }

    /// `eth_gasPrice`.
    pub fn gas_price(&self) -> Result<u128, EvmError> {
        let v = self.call("eth_gasPrice", json!([]))?;
        quantity("eth_gasPrice", &v)
    }

    /// `eth_call` of `input` on `to` at the latest block; reverts become typed errors.
    pub fn eth_call(&self, to: Address, input: &[u8]) -> Result<Vec<u8>, EvmError> {
        let v = self
            .call(
                "eth_call",
                json!([{"to": to.to_string(), "data": hex0x(input)}, "latest"]),
            )
            .map_err(|e| match &e {
                EvmError::Rpc { message, .. } => revert_error(Address::ZERO, message).unwrap_or(e),
                _ => e,
            })?;
        data("eth_call", &v)
    }

    /// `eth_estimateGas` of a transaction from `from`; reverts become typed errors.
    pub fn estimate_gas(&self, from: Address, to: TxKind, input: &[u8]) -> Result<u64, EvmError> {
        let mut tx = json!({"from": from.to_string(), "data": hex0x(input)});
        if let TxKind::Call(a) = to {
            tx["to"] = json!(a.to_string());
        }
        let v = self
            .call("eth_estimateGas", json!([tx]))
            .map_err(|e| match &e {
                EvmError::Rpc { message, .. }
                    if message.contains("insufficient funds")
                        || message.contains("enough funds") =>
                {
                    EvmError::Unfunded {
                        account: from.to_string(),
                        balance: self.balance(from).unwrap_or_default(),
                        detail: "the chain refused to estimate gas for lack of funds".into(),
                    }
                }
                EvmError::Rpc { message, .. } => revert_error(from, message).unwrap_or(e),
                _ => e,
            })?;
        Ok(quantity("eth_estimateGas", &v)? as u64)
    }

    /// `eth_sendRawTransaction`; the transaction hash.
    pub fn send_raw(&self, raw: &[u8]) -> Result<B256, EvmError> {
        let v = self.call("eth_sendRawTransaction", json!([hex0x(raw)]))?;
        b256("eth_sendRawTransaction", &v)
    }

    /// `eth_getTransactionReceipt` (None while pending).
    pub fn receipt(&self, hash: B256) -> Result<Option<Value>, EvmError> {
        let v = self.call("eth_getTransactionReceipt", json!([hash.to_string()]))?;
        Ok((!v.is_null()).then_some(v))
    }

    /// `eth_getLogs` of the contract's `Anchored` events of `consortium`, optionally only the
    /// one with `index`.
    pub fn anchored_logs(
        &self,
        contract: Address,
        consortium: B256,
        index: Option<u64>,
    ) -> Result<Vec<AnchoredLog>, EvmError> {
        let idx = index.map(|i| B256::from(U256::from(i)).to_string());
        let filter = json!({
            "address": contract.to_string(),
            "fromBlock": "0x0",
            "toBlock": "latest",
            "topics": [XinyiAnchor::Anchored::SIGNATURE_HASH.to_string(), consortium.to_string(), idx],
        });
        let v = self.call("eth_getLogs", json!([filter]))?;
        let logs = v.as_array().ok_or_else(|| EvmError::Rpc {
            method: "eth_getLogs".into(),
            message: "result is not an array".into(),
        })?;
        logs.iter()
            .filter(|l| l.get("removed").and_then(Value::as_bool) != Some(true))
            .map(AnchoredLog::from_json)
            .collect()
    }
}

/// One `Anchored` event as read from the chain.
#[derive(Debug, Clone)]
pub struct AnchoredLog {
    /// Index of the anchor in its consortium's sequence.
    pub index: u64,
    /// Log size.
    pub size: u64,
    /// Log root.
    pub root: B256,
    /// SHA-256 of the checkpoint text.
    pub checkpoint_hash: B256,
    /// Who sent it.
    pub sender: Address,
    /// Transaction hash.
    pub tx_hash: B256,
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: B256,
    /// Log index in the block.
    pub log_index: u64,
}

impl AnchoredLog {
    fn from_json(l: &Value) -> Result<AnchoredLog, EvmError> {
        const M: &str = "eth_getLogs";
        let topics: Vec<B256> = l
            .get("topics")
            .and_then(Value::as_array)
            .map(|t| t.iter().map(|x| b256(M, x)).collect::<Result<_, _>>())
            .transpose()?
            .unwrap_or_default();
        let d = data(M, l.get("data").unwrap_or(&Value::Null))?;
        let ev =
            XinyiAnchor::Anchored::decode_raw_log(topics.iter().copied(), &d).map_err(|e| {
                EvmError::Rpc {
                    method: M.into(),
                    message: format!("not an Anchored event: {e}"),
                }
            })?;
        let field = |k: &str| l.get(k).unwrap_or(&Value::Null);
        Ok(AnchoredLog {
            index: u64::try_from(ev.index).unwrap_or(u64::MAX),
            size: ev.size,
            root: ev.root,
            checkpoint_hash: ev.checkpointHash,
            sender: ev.sender,
            tx_hash: b256(M, field("transactionHash"))?,
            block_number: quantity(M, field("blockNumber"))? as u64,
            block_hash: b256(M, field("blockHash"))?,
            log_index: quantity(M, field("logIndex"))? as u64,
        })
    }
}

/// A signed transaction, not yet sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedTx {
    /// Its hash.
    pub hash: B256,
    /// Its nonce.
    pub nonce: u64,
    /// EIP-2718 bytes, hex.
    pub raw: String,
}

/// Builds and signs a legacy EIP-155 transaction (gas estimated, +20 %; balance checked).
pub fn sign_tx(
    rpc: &Rpc,
    key: &PrivateKeySigner,
    chain_id: u64,
    to: TxKind,
    input: Vec<u8>,
) -> Result<SignedTx, EvmError> {
    let from = key.address();
    let gas = rpc.estimate_gas(from, to, &input)?;
    let gas_limit = gas.saturating_add(gas / 5);
    let gas_price = rpc.gas_price()?;
    let needed = U256::from(gas_limit) * U256::from(gas_price);
    let balance = rpc.balance(from)?;
    if balance < needed {
        return Err(EvmError::Unfunded {
            account: from.to_string(),
            balance,
            detail: format!(
                "the transaction needs up to {needed} wei (gas {gas_limit} at {gas_price} wei)"
            ),
        });
    }
    let nonce = rpc.nonce(from, "pending")?;
    let tx = TxLegacy {
        chain_id: Some(chain_id),
        nonce,
        gas_price,
        gas_limit,
        to,
        value: U256::ZERO,
        input: Bytes::from(input),
    };
    let sig = key
        .sign_hash_sync(&tx.signature_hash())
        .map_err(|e| EvmError::Key(format!("signing failed: {e}")))?;
    let env: TxEnvelope = tx.into_signed(sig).into();
    Ok(SignedTx {
        hash: *env.tx_hash(),
        nonce,
        raw: hex::encode(env.encoded_2718()),
    })
}

/// Sends a signed transaction; "already known" counts as sent.
pub fn broadcast(rpc: &Rpc, from: Address, tx: &SignedTx) -> Result<B256, EvmError> {
    let raw = hex::decode(&tx.raw).map_err(|e| EvmError::Config(format!("raw tx: {e}")))?;
    match rpc.send_raw(&raw) {
        Ok(h) => Ok(h),
        Err(EvmError::Rpc { message, .. })
            if message.contains("already known") || message.contains("already imported") =>
        {
            Ok(tx.hash)
        }
        Err(EvmError::Rpc { message, .. })
            if message.contains("insufficient funds") || message.contains("enough funds") =>
        {
            Err(EvmError::Unfunded {
                account: from.to_string(),
                balance: rpc.balance(from).unwrap_or_default(),
                detail: "the chain refused the transaction for lack of funds".into(),
            })
        }
        Err(e) => Err(e),
    }
}

/// Signs and sends a legacy EIP-155 transaction; its hash.
pub fn send_tx(
    rpc: &Rpc,
    key: &PrivateKeySigner,
    chain_id: u64,
    to: TxKind,
    input: Vec<u8>,
) -> Result<B256, EvmError> {
    let tx = sign_tx(rpc, key, chain_id, to, input)?;
    broadcast(rpc, key.address(), &tx)
}

/// Polls for a transaction's receipt (at most `timeout`); fails on a reverted one.
pub fn wait_receipt(rpc: &Rpc, hash: B256, timeout: Duration) -> Result<Value, EvmError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(r) = rpc.receipt(hash)? {
            if r.get("status").and_then(Value::as_str) == Some("0x0") {
                return Err(EvmError::Reverted(format!("transaction {hash} reverted")));
            }
            return Ok(r);
        }
        if Instant::now() >= deadline {
            return Err(EvmError::Rpc {
                method: "eth_getTransactionReceipt".into(),
                message: format!("transaction {hash} not mined within {timeout:?}"),
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Checks that `contract` holds the anchor contract (code present, `kind()` matches).
pub fn check_contract(rpc: &Rpc, contract: Address) -> Result<(), EvmError> {
    if rpc.code(contract)?.is_empty() {
        return Err(EvmError::NoCode(contract.to_string()));
    }
    let out = rpc
        .eth_call(contract, &XinyiAnchor::kindCall {}.abi_encode())
        .map_err(|_| EvmError::WrongContract(contract.to_string()))?;
    match XinyiAnchor::kindCall::abi_decode_returns(&out) {
        Ok(k) if k == contract_kind() => Ok(()),
        _ => Err(EvmError::WrongContract(contract.to_string())),
    }
}

/// Deploys the contract from `key`'s account, accepting anchors from `allowed`; the address.
pub fn deploy(
    rpc: &Rpc,
    key: &PrivateKeySigner,
    allowed: &[Address],
) -> Result<(Address, B256), EvmError> {
    let art: Value = serde_json::from_str(ARTIFACT)
        .map_err(|e| EvmError::Config(format!("contract artifact: {e}")))?;
    let mut code = art
        .get("bytecode")
        .and_then(Value::as_str)
        .and_then(|s| s.strip_prefix("0x"))
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| EvmError::Config("contract artifact has no bytecode".into()))?;
    code.extend((allowed.to_vec(),).abi_encode_params());
    let chain_id = rpc.chain_id()?;
    let hash = send_tx(rpc, key, chain_id, TxKind::Create, code)?;
    let r = wait_receipt(rpc, hash, Duration::from_secs(120))?;
    let addr = r
        .get("contractAddress")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Address>().ok())
        .ok_or_else(|| EvmError::Rpc {
            method: "eth_getTransactionReceipt".into(),
            message: "the receipt has no contractAddress".into(),
        })?;
    check_contract(rpc, addr)?;
    Ok((addr, hash))
}

/// The consortium id the contract keys anchors by: the ledger's chain id (32 bytes).
pub fn consortium_id(chain_id: &Digest) -> B256 {
    B256::from(chain_id.0)
}

/// What one look at the chain found.
struct Observed {
    chain_id: u64,
    head: u64,
    last: Option<AnchoredLog>,
    pending: bool,
}

/// The anchoring task's state (all of it recomputable from the chain and the ledger).
struct Task {
    engine: Engine,
    cfg: EvmConfig,
    rpc: Rpc,
    key: PrivateKeySigner,
    contract: Address,
    consortium: B256,
    origin: String,
    contract_ok: bool,
    last_sent: Option<(Instant, u64)>,
    own_receipt_size: u64,
    state_file: PathBuf,
}

/// The anchor transaction in flight, as remembered in the state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct InFlight {
    size: u64,
    tx: SignedTx,
}

fn read_in_flight(path: &Path) -> Option<InFlight> {
    let b = std::fs::read(path).ok()?;
    serde_json::from_slice(&b).ok()
}

/// Writes (or with None removes) the state file, durably (temp file, fsync, rename).
fn write_in_flight(path: &Path, v: Option<&InFlight>) -> Result<(), EvmError> {
    let err = |e: std::io::Error| EvmError::Config(format!("state file {}: {e}", path.display()));
    match v {
        None => match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(e)),
            _ => Ok(()),
        },
        Some(v) => {
            use std::io::Write as _;
            let tmp = path.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp).map_err(err)?;
            f.write_all(&serde_json::to_vec(v).unwrap_or_default())
                .and_then(|()| f.sync_all())
                .map_err(err)?;
            std::fs::rename(&tmp, path).map_err(err)
        }
    }
}

/// What became of the remembered transaction.
enum Flight {
    /// Nothing in flight.
    None,
    /// Still in the pool (or just re-sent): wait.
    Waiting,
}

/// Checks the remembered transaction: mined, failed or superseded → forget it; in the pool →
/// wait; unknown to the chain (dropped, or the node stopped before sending) → send it again,
/// unless its nonce was used meanwhile.
fn check_in_flight(rpc: &Rpc, me: Address, path: &Path, anchored: u64) -> Result<Flight, EvmError> {
    let Some(f) = read_in_flight(path) else {
        return Ok(Flight::None);
    };
    if f.size <= anchored {
        write_in_flight(path, None)?;
        return Ok(Flight::None);
    }
    if let Some(r) = rpc.receipt(f.tx.hash)? {
        write_in_flight(path, None)?;
        if r.get("status").and_then(Value::as_str) == Some("0x0") {
            return Err(EvmError::Reverted(format!(
                "anchor tx {} of size {} reverted",
                f.tx.hash, f.size
            )));
        }
        return Ok(Flight::None);
    }
    let known = rpc.call("eth_getTransactionByHash", json!([f.tx.hash.to_string()]))?;
    if !known.is_null() {
        return Ok(Flight::Waiting);
    }
    if rpc.nonce(me, "latest")? > f.tx.nonce {
        write_in_flight(path, None)?;
        return Ok(Flight::None);
    }
    broadcast(rpc, me, &f.tx)?;
    tracing::info!("re-sent anchor tx {} of size {}", f.tx.hash, f.size);
    Ok(Flight::Waiting)
}

fn observe(
    rpc: &Rpc,
    contract: Address,
    consortium: B256,
    me: Address,
    contract_ok: bool,
) -> Result<Observed, EvmError> {
    let chain_id = rpc.chain_id()?;
    if !contract_ok {
        check_contract(rpc, contract)?;
    }
    let out = rpc.eth_call(
        contract,
        &XinyiAnchor::countCall {
            chainId: consortium,
        }
        .abi_encode(),
    )?;
    let count = XinyiAnchor::countCall::abi_decode_returns(&out)
        .map_err(|e| EvmError::Rpc {
            method: "eth_call count".into(),
            message: e.to_string(),
        })
        .map(|c| u64::try_from(c).unwrap_or(u64::MAX))?;
    let last = match count {
        0 => None,
        n => rpc
            .anchored_logs(contract, consortium, Some(n - 1))?
            .into_iter()
            .last(),
    };
    let head = rpc.block_number()?;
    let pending = rpc.nonce(me, "pending")? > rpc.nonce(me, "latest")?;
    Ok(Observed {
        chain_id,
        head,
        last,
        pending,
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EvmError> + Send + 'static,
) -> Result<T, EvmError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EvmError::Receipt(format!("worker failed: {e}")))?
}

/// One round: record a receipt for our last anchor, or send the next one, or wait.
async fn round(t: &mut Task) -> Result<(), EvmError> {
    let (rpc, contract, consortium, me, ok) = (
        t.rpc.clone(),
        t.contract,
        t.consortium,
        t.key.address(),
        t.contract_ok,
    );
    let obs = blocking(move || observe(&rpc, contract, consortium, me, ok)).await?;
    t.contract_ok = true;
    let metrics = t.engine.metrics().clone();
    let chain = format!("evm:{}", obs.chain_id);
    let anchored = obs.last.as_ref().map_or(0, |l| l.size);
    metrics.anchor_size.store(anchored, Ordering::Relaxed);
    let final_cp = crate::witness_client::final_checkpoint(&t.engine);
    if let Some((_, cp)) = &final_cp {
        metrics
            .anchor_lag
            .store(cp.size.saturating_sub(anchored), Ordering::Relaxed);
    }

    // 1. Our last anchor without a receipt on the ledger: record it once confirmed.
    if let Some(l) = obs.last.as_ref().filter(|l| l.sender == t.key.address()) {
        let (has_receipt, ledger_root) = {
            let core = t.engine.lock();
            let state = core.chain.state();
            (
                state.anchor_tx(l.size, &chain).is_some(),
                core.chain.log().root_at(l.size).ok(),
            )
        };
        if !has_receipt {
            if ledger_root != Some(l.root.0) {
                // Not ours to record (the ledger rules would refuse it); anchor verify reports it.
                Metrics::inc(&metrics.anchor_failures);
                tracing::error!("{}", EvmError::RootMismatch { size: l.size });
            } else if obs.head + 1 < l.block_number + t.cfg.confirmations.max(1) {
                return Ok(()); // wait for confirmations
            } else {
                let r = EvmReceipt {
                    chain_id: obs.chain_id,
                    contract: t.contract.0 .0,
                    tx_hash: l.tx_hash.0,
                    block_number: l.block_number,
                    block_hash: l.block_hash.0,
                    log_index: l.log_index,
                };
                let kind = EntryKind::AnchorReceipt {
                    size: l.size,
                    root: Digest(l.root.0),
                    chain: r.chain(),
                    tx: r.tx(),
                };
                let entry = t
                    .engine
                    .sign_own(kind)
                    .map_err(|e| EvmError::Receipt(e.to_string()))?;
                let c = t
                    .engine
                    .submit(entry)
                    .await
                    .map_err(|e| EvmError::Receipt(e.to_string()))?;
                t.own_receipt_size = c.position + 1;
                tracing::info!(
                    "anchored log size {} in tx {} (block {}); receipt at position {}",
                    l.size,
                    l.tx_hash,
                    l.block_number,
                    c.position
                );
                return Ok(());
            }
        }
    }

    // 2. One of our transactions is in flight: wait for it (re-sending it if the chain lost it).
    let (rpc, me, path) = (t.rpc.clone(), t.key.address(), t.state_file.clone());
    let flight = blocking(move || check_in_flight(&rpc, me, &path, anchored)).await?;
    if matches!(flight, Flight::Waiting) || obs.pending {
        return Ok(());
    }

    // 3. A new final checkpoint, due by blocks or time: send it.
    let Some((_, cp)) = final_cp else {
        return Ok(());
    };
    if cp.size == 0 || cp.size <= anchored || cp.size == t.own_receipt_size {
        return Ok(());
    }
    let height = metrics.height.load(Ordering::Relaxed);
    let due = match t.last_sent {
        None => true,
        Some((at, h)) => {
            at.elapsed() >= Duration::from_millis(t.cfg.interval_ms)
                || (t.cfg.every_blocks > 0 && height.saturating_sub(h) >= t.cfg.every_blocks)
        }
    };
    if !due {
        return Ok(());
    }
    let input = XinyiAnchor::anchorCall {
        chainId: t.consortium,
        size: cp.size,
        root: B256::from(cp.root),
        checkpointHash: B256::from(checkpoint_hash(&t.origin, cp.size, &cp.root)),
    }
    .abi_encode();
    let (rpc, key, to, id) = (t.rpc.clone(), t.key.clone(), t.contract, obs.chain_id);
    let (path, size) = (t.state_file.clone(), cp.size);
    // Remembered before it is sent: a restart finds it whether or not it reached the chain.
    let hash = blocking(move || {
        let tx = sign_tx(&rpc, &key, id, TxKind::Call(to), input)?;
        write_in_flight(
            &path,
            Some(&InFlight {
                size,
                tx: tx.clone(),
            }),
        )?;
        broadcast(&rpc, key.address(), &tx)
    })
    .await?;
    t.last_sent = Some((Instant::now(), height));
    tracing::info!("sent anchor of log size {} in tx {hash}", cp.size);
    Ok(())
}

/// Reads the key and starts the EVM anchoring task. Errors only for a bad key or address;
/// everything about the chain is retried in the task.
pub fn spawn(engine: Engine, cfg: EvmConfig) -> Result<(), EvmError> {
    let key = read_key(&cfg.key)?;
    let state_file = cfg
        .state_file
        .clone()
        .ok_or_else(|| EvmError::Config("[anchor.evm] has no state file".into()))?;
    let contract = parse_address("[anchor.evm] contract", &cfg.contract)?;
    let poll = Duration::from_millis(cfg.poll_ms.max(50));
    let mut t = Task {
        consortium: consortium_id(engine.chain_id()),
        origin: engine.genesis().name.clone(),
        rpc: Rpc::new(&cfg.rpc),
        engine,
        cfg,
        key,
        contract,
        contract_ok: false,
        last_sent: None,
        own_receipt_size: 0,
        state_file,
    };
    tracing::info!(
        "anchoring to contract {contract} at {} from {}",
        t.rpc.url(),
        t.key.address()
    );
    tokio::spawn(async move {
        let mut failures: u32 = 0;
        loop {
            let delay = poll
                .saturating_mul(1u32 << failures.min(6))
                .min(Duration::from_secs(60));
            tokio::time::sleep(delay).await;
            match round(&mut t).await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    Metrics::inc(&t.engine.metrics().anchor_failures);
                    tracing::warn!("{e}");
                }
            }
        }
    });
    Ok(())
}

/// `xinyi-node anchor ...`: keys, deployment and a low-level send.
#[derive(Debug, clap::Subcommand)]
pub enum AnchorCmd {
    /// Create a secp256k1 anchoring key file (mode 0600) and print its address.
    Keygen {
        /// Where to write it (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Deploy the anchor contract and print its address and an `[anchor.evm]` snippet.
    Deploy {
        /// JSON-RPC URL of the EVM chain.
        #[arg(long, value_name = "URL")]
        rpc: String,
        /// Key file of the deploying (funded) account; it becomes the contract's owner.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// An address allowed to anchor (repeatable; default: the deployer's).
        #[arg(long = "allow", value_name = "ADDR")]
        allow: Vec<String>,
    },
    /// Low level: send one anchor (size, root) for a consortium chain id, as given. The node
    /// does this itself; this is for operators and tests (the contract accepts it from any
    /// allowed key, which is why outsiders check anchors against the ledger).
    Send {
        /// JSON-RPC URL of the EVM chain.
        #[arg(long, value_name = "URL")]
        rpc: String,
        /// Key file of an allowed account.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Contract address.
        #[arg(long, value_name = "ADDR")]
        contract: String,
        /// Consortium chain id (64 hex digits, `xinyi status`).
        #[arg(long, value_name = "HEX")]
        chain_id: String,
        /// Checkpoint origin (for the checkpoint hash).
        #[arg(long, value_name = "NAME", default_value = "xinyi/guangzhou")]
        origin: String,
        /// Log size.
        #[arg(long)]
        size: u64,
        /// Log root (64 hex digits).
        #[arg(long, value_name = "HEX")]
        root: String,
    },
}

fn hex32(what: &str, s: &str) -> Result<[u8; 32], EvmError> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(s.trim().trim_start_matches("0x"), &mut b)
        .map_err(|_| EvmError::Config(format!("{what} {s:?} is not 64 hex digits")))?;
    Ok(b)
}

/// Runs an `anchor` subcommand (blocking); what to print on stdout.
pub fn run_cmd(cmd: AnchorCmd) -> Result<String, EvmError> {
    match cmd {
        AnchorCmd::Keygen { out } => {
            let a = keygen(&out)?;
            Ok(format!("{a}\n"))
        }
        AnchorCmd::Deploy { rpc, key, allow } => {
            let k = read_key(&key)?;
            let mut allowed = allow
                .iter()
                .map(|a| parse_address("--allow", a))
                .collect::<Result<Vec<_>, _>>()?;
            if allowed.is_empty() {
                allowed.push(k.address());
            }
            let r = Rpc::new(&rpc);
            let (addr, tx) = deploy(&r, &k, &allowed)?;
            let list: Vec<String> = allowed.iter().map(ToString::to_string).collect();
            Ok(format!(
                "{addr}\n# deployed in tx {tx} by {}; anchors accepted from {}\n[anchor.evm]\nrpc = \"{rpc}\"\ncontract = \"{addr}\"\nkey = \"PATH/TO/ANCHOR.key\"\ninterval_ms = 60000\nconfirmations = 1\n",
                k.address(),
                list.join(", ")
            ))
        }
        AnchorCmd::Send {
            rpc,
            key,
            contract,
            chain_id,
            origin,
            size,
            root,
        } => {
            let k = read_key(&key)?;
            let to = parse_address("--contract", &contract)?;
            let consortium = B256::from(hex32("--chain-id", &chain_id)?);
            let root = hex32("--root", &root)?;
            let r = Rpc::new(&rpc);
            check_contract(&r, to)?;
            let input = XinyiAnchor::anchorCall {
                chainId: consortium,
                size,
                root: B256::from(root),
                checkpointHash: B256::from(checkpoint_hash(&origin, size, &root)),
            }
            .abi_encode();
            let id = r.chain_id()?;
            let hash = send_tx(&r, &k, id, TxKind::Call(to), input)?;
            wait_receipt(&r, hash, Duration::from_secs(120))?;
            Ok(format!("{hash}\n"))
        }
    }
}

//! Checking a consortium's anchors on an EVM chain (`xinyi anchor verify`, `xinyi audit verify
//! --rpc`; `specs/anchoring.md` §5).
//!
//! Reads the `Anchored` events of the consortium from the `XinyiAnchor` contract itself
//! (`eth_getLogs`, `eth_call`), then checks each anchored (size, root) against the ledger: the
//! node's latest *final* checkpoint and an RFC 9162 consistency proof from the anchored size to
//! it. The first disagreement is an error with a stable code (`anchor.root_mismatch`, ...). It
//! also checks the ledger's `anchor_receipt` entries against the chain's transaction receipts.
//! It only reads the chain (no key, no transactions) and trusts neither the node nor the chain:
//! the node's answers are checked with proofs, the chain's with the ledger.

use crate::api::Api;
use crate::proof::{self, Trust};
use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{sol, SolCall as _, SolEvent as _};
use anyhow::{anyhow, bail, Context as _, Result};
use serde::Serialize;
use serde_json::{json, Value};
use std::time::Duration;
use xinyi_ledger::anchor::{checkpoint_hash, EvmReceipt};
use xinyi_ledger::note::Checkpoint;

sol! {
    /// The read side of node/contracts/XinyiAnchor.sol.
    contract XinyiAnchor {
        event Anchored(bytes32 indexed chainId, uint256 indexed index, uint64 size, bytes32 root, bytes32 checkpointHash, address sender);
        function kind() external pure returns (bytes32);
        function count(bytes32 chainId) external view returns (uint256);
    }
}

/// A read-only Ethereum JSON-RPC client.
pub struct Rpc {
    url: String,
    agent: ureq::Agent,
}

fn quantity(v: &Value) -> Option<u64> {
    v.as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    v.as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .and_then(|h| hex::decode(h).ok())
}

fn word(v: &Value) -> Option<B256> {
    bytes(v)
        .filter(|b| b.len() == 32)
        .map(|b| B256::from_slice(&b))
}

impl Rpc {
    /// A client for `url`.
    pub fn new(url: &str) -> Rpc {
        Rpc {
            url: url.to_string(),
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(5))
                .timeout(Duration::from_secs(60))
                .build(),
        }
    }

    /// One call; its `result`. Errors start with `anchor.rpc_unreachable` or `anchor.rpc_error`.
    pub fn call(&self, method: &str, params: Value) -> Result<Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let v: Value = match self.agent.post(&self.url).send_json(body) {
            Ok(r) => r
                .into_json()
                .map_err(|e| anyhow!("anchor.rpc_error: {method}: answer is not JSON: {e}"))?,
            Err(ureq::Error::Status(code, r)) => {
                serde_json::from_str(&r.into_string().unwrap_or_default())
                    .map_err(|_| anyhow!("anchor.rpc_unreachable: {}: HTTP {code}", self.url))?
            }
            Err(e) => bail!(
                "anchor.rpc_unreachable: {}: {}",
                self.url,
                e.to_string().replace('\n', " ")
            ),
        };
        if let Some(e) = v.get("error") {
            bail!("anchor.rpc_error: {method}: {e}");
        }
        Ok(v.get("result").cloned().unwrap_or(Value::Null))
    }

    fn eth_call(&self, to: Address, input: &[u8]) -> Result<Vec<u8>> {
        let v = self.call(
            "eth_call",
            json!([{"to": to.to_string(), "data": format!("0x{}", hex::encode(input))}, "latest"]),
        )?;
        bytes(&v).ok_or_else(|| anyhow!("anchor.rpc_error: eth_call: not hex data: {v}"))
    }

    /// `eth_chainId`.
    pub fn chain_id(&self) -> Result<u64> {
        let v = self.call("eth_chainId", json!([]))?;
        quantity(&v).ok_or_else(|| anyhow!("anchor.rpc_error: eth_chainId: {v}"))
    }
}

/// One anchor read from the chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChainAnchor {
    /// Position in the consortium's sequence.
    pub index: u64,
    /// Log size.
    pub size: u64,
    /// Log root, hex.
    pub root: String,
    /// Checkpoint hash, hex.
    pub checkpoint_hash: String,
    /// Sending account.
    pub sender: String,
    /// Transaction hash.
    pub tx: String,
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: String,
    /// Log index in the block.
    pub log_index: u64,
}

fn decode_log(l: &Value) -> Result<(ChainAnchor, [u8; 32], B256)> {
    let bad = || anyhow!("anchor.rpc_error: eth_getLogs: malformed log {l}");
    let topics: Vec<B256> = l
        .get("topics")
        .and_then(Value::as_array)
        .ok_or_else(bad)?
        .iter()
        .map(|t| word(t).ok_or_else(bad))
        .collect::<Result<_>>()?;
    let data = l.get("data").and_then(bytes).ok_or_else(bad)?;
    let ev = XinyiAnchor::Anchored::decode_raw_log(topics.iter().copied(), &data)
        .map_err(|e| anyhow!("anchor.rpc_error: eth_getLogs: not an Anchored event: {e}"))?;
    let f = |k: &str| l.get(k).cloned().unwrap_or(Value::Null);
    Ok((
        ChainAnchor {
            index: u64::try_from(ev.index).unwrap_or(u64::MAX),
            size: ev.size,
            root: hex::encode(ev.root),
            checkpoint_hash: hex::encode(ev.checkpointHash),
            sender: ev.sender.to_string(),
            tx: word(&f("transactionHash")).ok_or_else(bad)?.to_string(),
            block_number: quantity(&f("blockNumber")).ok_or_else(bad)?,
            block_hash: word(&f("blockHash")).ok_or_else(bad)?.to_string(),
            log_index: quantity(&f("logIndex")).ok_or_else(bad)?,
        },
        ev.root.0,
        ev.chainId,
    ))
}

/// Checks that `contract` is a xinyi anchor contract (`anchor.no_code`, `anchor.wrong_contract`).
pub fn check_contract(rpc: &Rpc, contract: Address) -> Result<()> {
    let code = rpc.call("eth_getCode", json!([contract.to_string(), "latest"]))?;
    if bytes(&code).is_none_or(|c| c.is_empty()) {
        bail!("anchor.no_code: no contract code at {contract} on the chain at {} (wrong address or wrong chain)", rpc.url);
    }
    let mut kind = [0u8; 32];
    kind[..15].copy_from_slice(b"xinyi-anchor/v1");
    let ok = rpc
        .eth_call(contract, &XinyiAnchor::kindCall {}.abi_encode())
        .ok()
        .and_then(|o| XinyiAnchor::kindCall::abi_decode_returns(&o).ok())
        .is_some_and(|k| k.0 == kind);
    if !ok {
        bail!("anchor.wrong_contract: the contract at {contract} is not a xinyi anchor contract");
    }
    Ok(())
}

/// Every anchor of consortium `chain_id` in `contract`, in order (checked contiguous and equal
/// in number to the contract's `count`).
pub fn read_anchors(rpc: &Rpc, contract: Address, chain_id: [u8; 32]) -> Result<Vec<ChainAnchor>> {
    check_contract(rpc, contract)?;
    let consortium = B256::from(chain_id);
    let filter = json!({
        "address": contract.to_string(),
        "fromBlock": "0x0",
        "toBlock": "latest",
        "topics": [XinyiAnchor::Anchored::SIGNATURE_HASH.to_string(), consortium.to_string()],
    });
    let logs = rpc.call("eth_getLogs", json!([filter]))?;
    let mut out = Vec::new();
    for l in logs.as_array().into_iter().flatten() {
        if l.get("removed").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        out.push(decode_log(l)?.0);
    }
    out.sort_by_key(|a| a.index);
    let n = rpc.eth_call(
        contract,
        &XinyiAnchor::countCall {
            chainId: consortium,
        }
        .abi_encode(),
    )?;
    let count = XinyiAnchor::countCall::abi_decode_returns(&n)
        .map_err(|e| anyhow!("anchor.rpc_error: count: {e}"))?;
    if count != U256::from(out.len()) {
        bail!(
            "anchor.events_missing: the contract counts {count} anchors of this chain but the node returned {} events",
            out.len()
        );
    }
    for (i, a) in out.iter().enumerate() {
        if a.index != i as u64 {
            bail!("anchor.events_missing: anchor events are not contiguous at index {i}");
        }
    }
    Ok(out)
}

/// The ledger as the checks see it: the node's final checkpoint and consistency proofs.
pub struct Ledger<'a> {
    /// The node.
    pub api: &'a Api,
    /// Validator keys and chain id from the trusted genesis.
    pub trust: &'a Trust,
}

impl Ledger<'_> {
    /// The node's checkpoint, verified final (quorum of validators).
    pub fn final_checkpoint(&self) -> Result<Checkpoint> {
        let note = self.api.get_text("/v1/checkpoint")?;
        let o = self.trust.open_any(&note)?;
        self.trust.check_final(&o)?;
        Ok(o.cp)
    }
}

/// What `anchor verify` found.
#[derive(Debug, Serialize)]
pub struct AnchorReport {
    /// EVM chain id.
    pub evm_chain_id: u64,
    /// Contract.
    pub contract: String,
    /// The final checkpoint size the anchors were checked against.
    pub checkpoint_size: u64,
    /// Every anchor, in order.
    pub anchors: Vec<ChainAnchor>,
}

impl AnchorReport {
    /// Human-readable text.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} anchors on evm:{} contract {} agree with the ledger (final checkpoint size {})\n",
            self.anchors.len(),
            self.evm_chain_id,
            self.contract,
            self.checkpoint_size
        );
        for a in &self.anchors {
            s += &format!(
                "  #{} size {} root {} block {} tx {}\n",
                a.index, a.size, a.root, a.block_number, a.tx
            );
        }
        s
    }
}

fn hex32(s: &str) -> Result<[u8; 32]> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(s, &mut b).context("hex")?;
    Ok(b)
}

/// Checks every anchor of the ledger's consortium in `contract` against the ledger; the first
/// disagreement is an error: `anchor.checkpoint_hash_mismatch` (the stored hash is not that of
/// the anchored checkpoint), `anchor.beyond_log` (an anchored size the ledger does not reach),
/// `anchor.root_mismatch` (the anchored root is not the ledger's at that size: a rewritten
/// history or a forged anchor).
pub fn verify(rpc: &Rpc, contract: Address, ledger: &Ledger<'_>) -> Result<AnchorReport> {
    let evm_chain_id = rpc.chain_id()?;
    let anchors = read_anchors(rpc, contract, ledger.trust.chain_id.0)?;
    let head = ledger.final_checkpoint()?;
    for a in &anchors {
        let root = hex32(&a.root)?;
        if a.size > head.size {
            bail!(
                "anchor.beyond_log: anchor #{} (tx {}) is of log size {} but the ledger's final checkpoint is of size {}: the ledger lost entries it had anchored",
                a.index, a.tx, a.size, head.size
            );
        }
        let old = Checkpoint {
            origin: head.origin.clone(),
            size: a.size,
            root,
            extensions: vec![],
        };
        let p = if a.size == head.size {
            vec![]
        } else {
            ledger.api.consistency_proof(a.size, head.size)?
        };
        if let Err(e) = proof::verify_consistency(&old, &head, &p) {
            bail!(
                "anchor.root_mismatch: anchor #{} (size {}, root {}, tx {}, block {}, sender {}) disagrees with the ledger's final checkpoint of size {}: {e:#}",
                a.index, a.size, a.root, a.tx, a.block_number, a.sender, head.size
            );
        }
        let want = checkpoint_hash(&ledger.trust.origin, a.size, &root);
        if hex::encode(want) != a.checkpoint_hash {
            bail!(
                "anchor.checkpoint_hash_mismatch: anchor #{} (size {}, tx {}) stores a checkpoint hash that is not SHA-256 of its checkpoint",
                a.index, a.size, a.tx
            );
        }
    }
    Ok(AnchorReport {
        evm_chain_id,
        contract: contract.to_string(),
        checkpoint_size: head.size,
        anchors,
    })
}

/// One ledger receipt as `audit verify --rpc` checks it.
#[derive(Debug, Clone)]
pub struct LedgerReceipt {
    /// Anchored log size.
    pub size: u64,
    /// Anchored root (checked against the log by the ledger rules).
    pub root: [u8; 32],
    /// The receipt's `chain`.
    pub chain: String,
    /// The receipt's `tx`.
    pub tx: String,
}

/// Checks EVM receipts against the chain at `rpc` (receipts of other chains are skipped);
/// how many were checked. Errors: `anchor.bad_receipt`, `anchor.receipt_not_on_chain`,
/// `anchor.receipt_mismatch`.
pub fn check_receipts(rpc: &Rpc, chain_id: [u8; 32], receipts: &[LedgerReceipt]) -> Result<usize> {
    let evm = rpc.chain_id()?;
    let mut n = 0;
    for r in receipts.iter().filter(|r| EvmReceipt::is_evm(&r.chain)) {
        let e = EvmReceipt::parse(&r.chain, &r.tx).map_err(|e| anyhow!("{e}"))?;
        if e.chain_id != evm {
            continue;
        }
        let tx = B256::from(e.tx_hash);
        let rc = rpc.call("eth_getTransactionReceipt", json!([tx.to_string()]))?;
        if rc.is_null() || rc.get("status").and_then(Value::as_str) == Some("0x0") {
            bail!("anchor.receipt_not_on_chain: the ledger's receipt for size {} names tx {tx}, which the chain does not have as a successful transaction", r.size);
        }
        let log = rc
            .get("logs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|l| quantity(l.get("logIndex").unwrap_or(&Value::Null)) == Some(e.log_index));
        let mismatch = |what: &str| {
            anyhow!(
                "anchor.receipt_mismatch: the ledger's receipt for size {} (tx {tx}) differs from the chain: {what}",
                r.size
            )
        };
        let log = log.ok_or_else(|| mismatch("no log at that index"))?;
        let addr = log
            .get("address")
            .and_then(Value::as_str)
            .and_then(|a| a.parse::<Address>().ok());
        if addr != Some(Address::from(e.contract)) {
            return Err(mismatch("the log is not from the receipt's contract"));
        }
        if quantity(rc.get("blockNumber").unwrap_or(&Value::Null)) != Some(e.block_number)
            || word(rc.get("blockHash").unwrap_or(&Value::Null)) != Some(B256::from(e.block_hash))
        {
            return Err(mismatch("block number or hash"));
        }
        let (a, root, consortium) =
            decode_log(log).map_err(|_| mismatch("not an Anchored event"))?;
        if consortium.0 != chain_id || a.size != r.size || root != r.root {
            return Err(mismatch("the event's chain id, size or root"));
        }
        n += 1;
    }
    Ok(n)
}

/// The contract addresses named by the EVM receipts of `receipts` on EVM chain `evm_chain`,
/// latest last, without repeats.
pub fn contracts_of(receipts: &[LedgerReceipt], evm_chain: u64) -> Vec<Address> {
    let mut out: Vec<Address> = Vec::new();
    for r in receipts {
        if let Ok(e) = EvmReceipt::parse(&r.chain, &r.tx) {
            let a = Address::from(e.contract);
            if e.chain_id == evm_chain && !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

/// Parses a `--contract` address.
pub fn parse_address(s: &str) -> Result<Address> {
    s.trim()
        .parse::<Address>()
        .map_err(|_| anyhow!("--contract {s:?} is not a 0x address of 40 hex digits"))
}

/// The anchor receipts an audit collected.
pub fn receipts_of(stats: &crate::report::AuditStats) -> Vec<LedgerReceipt> {
    stats
        .anchors
        .iter()
        .filter_map(|a| {
            Some(LedgerReceipt {
                size: a.size,
                root: hex32(&a.root).ok()?,
                chain: a.chain.clone(),
                tx: a.tx.clone(),
            })
        })
        .collect()
}

/// `xinyi anchor verify`: the anchors in `contract` (default: the contract of the ledger's
/// latest EVM receipt on this chain, from `receipts`) checked against the ledger, and the
/// ledger's receipts checked against the chain.
pub fn verify_cmd(
    api: &Api,
    trust: &Trust,
    rpc_url: &str,
    contract: Option<&str>,
    receipts: impl FnOnce() -> Result<Vec<LedgerReceipt>>,
) -> Result<(AnchorReport, usize)> {
    let rpc = Rpc::new(rpc_url);
    let evm = rpc.chain_id()?;
    let (contract, receipts) = match contract {
        Some(c) => (parse_address(c)?, None),
        None => {
            let r = receipts()?;
            let c = contracts_of(&r, evm).pop().ok_or_else(|| {
                anyhow!("anchor.no_receipts: the ledger has no anchor receipt on evm:{evm}; pass --contract ADDR")
            })?;
            (c, Some(r))
        }
    };
    let report = verify(&rpc, contract, &Ledger { api, trust })?;
    let checked = match receipts {
        Some(r) => check_receipts(&rpc, trust.chain_id.0, &r)?,
        None => 0,
    };
    Ok((report, checked))
}

/// `audit verify --rpc`: the audited ledger's EVM receipts checked against the chain; a line
/// for the report.
pub fn audit_check(
    rpc_url: &str,
    summary: &crate::audit::AuditSummary,
    stats: &crate::report::AuditStats,
) -> Result<String> {
    let rpc = Rpc::new(rpc_url);
    let evm = rpc.chain_id()?;
    let chain_id = summary.report.chain_id.0;
    let n = check_receipts(&rpc, chain_id, &receipts_of(stats))?;
    Ok(format!(
        "anchor receipts checked against evm:{evm} at {rpc_url}: {n} agree with the chain"
    ))
}

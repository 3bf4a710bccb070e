//! `DIR/testnet.json`: what `up` created and started, read by every other command.

use super::layout::NodeRole;
use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use xinyi_ledger::Role;

/// File name of the manifest inside the testnet directory.
pub const MANIFEST: &str = "testnet.json";

/// An organisation of the genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgEntry {
    /// Organisation id.
    pub id: String,
    /// Ledger role.
    pub role: Role,
    /// Voting power.
    pub power: u64,
    /// Key file (`DIR/keys/<id>.key`).
    pub key_file: PathBuf,
    /// Whether it runs a node, and which kind.
    pub node: Option<NodeRole>,
}

/// A keyed sample firm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmEntry {
    /// USCC.
    pub uscc: String,
    /// Key file (`DIR/keys/firm-<USCC>.key`).
    pub key_file: PathBuf,
}

/// A node process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// Organisation id.
    pub org: String,
    /// Validator or follower.
    pub role: NodeRole,
    /// Whether it has voting power.
    pub validator: bool,
    /// Whether it holds the agency data (answers forwarded queries).
    pub data_node: bool,
    /// API base URL.
    pub url: String,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// libp2p listen address.
    pub p2p: SocketAddr,
    /// The node's directory (`DIR/<org>`).
    pub dir: PathBuf,
    /// Its config file.
    pub config: PathBuf,
    /// Its stdout/stderr log.
    pub log: PathBuf,
    /// Process id of the last start (may be dead).
    pub pid: Option<u32>,
}

/// The manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Consortium name (checkpoint origin).
    pub name: String,
    /// Chain id (hex).
    pub chain_id: String,
    /// Absolute testnet directory.
    pub dir: PathBuf,
    /// Genesis file.
    pub genesis: PathBuf,
    /// Key directory.
    pub keys: PathBuf,
    /// First port; node k uses base+k (HTTP) and base+100+k (p2p).
    pub base_port: u16,
    /// Number of validators.
    pub validators: usize,
    /// Number of followers.
    pub followers: usize,
    /// The xinyi-node binary used.
    pub node_bin: PathBuf,
    /// Whether the keyed firms have been registered (and their penalties published).
    pub seeded: bool,
    /// Organisations.
    pub orgs: Vec<OrgEntry>,
    /// Keyed firms.
    pub firms: Vec<FirmEntry>,
    /// Nodes, validators first.
    pub nodes: Vec<NodeEntry>,
}

impl Manifest {
    /// `DIR/testnet.json`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(MANIFEST)
    }

    /// Whether `dir` holds a testnet.
    pub fn exists(dir: &Path) -> bool {
        Manifest::path(dir).exists()
    }

    /// Reads `DIR/testnet.json`.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let p = Manifest::path(dir);
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!(
                "{} is not a testnet directory (cannot read {}); create one with `xinyi-testnet up --validators N --dir {}`",
                dir.display(),
                p.display(),
                dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", p.display()))
    }

    /// Writes `DIR/testnet.json` atomically.
    pub fn save(&self) -> Result<()> {
        let p = Manifest::path(&self.dir);
        let tmp = p.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("writing {}", p.display()))?;
        Ok(())
    }

    /// The node of `org`.
    pub fn node(&self, org: &str) -> Result<&NodeEntry> {
        self.nodes.iter().find(|n| n.org == org).ok_or_else(|| {
            anyhow::anyhow!(
                "no node for {org:?} in this testnet (nodes: {})",
                self.nodes
                    .iter()
                    .map(|n| n.org.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    /// Mutable node of `org`.
    pub fn node_mut(&mut self, org: &str) -> Result<&mut NodeEntry> {
        self.node(org)?;
        self.nodes
            .iter_mut()
            .find(|n| n.org == org)
            .ok_or_else(|| anyhow::anyhow!("no node for {org:?}"))
    }

    /// The data node (gz-credit).
    pub fn data_node(&self) -> Option<&NodeEntry> {
        self.nodes.iter().find(|n| n.data_node)
    }

    /// Key file of an organisation.
    pub fn org_key(&self, org: &str) -> PathBuf {
        self.keys.join(format!("{org}.key"))
    }
}

//! Who runs what: the organisations of a testnet, which of them run a node, their ports and
//! their node configurations. Pure: nothing here touches the disk or the network.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use xinyi_ledger::sample::SAMPLE_ORGS;
use xinyi_ledger::Role;
use xinyi_node::config::{Config, P2pSection, PrivacySection, QuerySection, SampleSection};

/// The agency that holds the (synthetic) credit data and answers queries.
pub const DATA_ORG: &str = "gz-credit";
/// Sample firms generated into the data node's store.
pub const SAMPLE_FIRMS: u32 = 1_000;
/// Sample firms that get key files and are registered on the ledger.
pub const KEYED_FIRMS: u32 = 5;
/// Consortium name (checkpoint origin) of testnet chains.
pub const TESTNET_NAME: &str = "xinyi.testnet/guangzhou";
/// Largest number of validators or followers `up` accepts.
pub const MAX_NODES: usize = 50;

/// What a node does in the consortium.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// Power 1 in the genesis: votes on blocks.
    Validator,
    /// Power 0: follows the chain and serves its organisation's API.
    Follower,
}

impl NodeRole {
    /// `validator` / `follower`.
    pub fn name(self) -> &'static str {
        match self {
            NodeRole::Validator => "validator",
            NodeRole::Follower => "follower",
        }
    }
}

/// One organisation of the genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgPlan {
    /// Organisation id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Ledger role.
    pub role: Role,
    /// Voting power (1 for validators).
    pub power: u64,
    /// Whether the testnet runs a node for it.
    pub node: Option<NodeRole>,
}

/// One node of the testnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    /// Organisation id.
    pub org: String,
    /// Validator or follower.
    pub role: NodeRole,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// libp2p listen address.
    pub p2p: SocketAddr,
}

impl NodePlan {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Whether this node holds the agency data.
    pub fn is_data_node(&self) -> bool {
        self.org == DATA_ORG
    }
}

/// The whole layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Every organisation of the genesis, sorted by id.
    pub orgs: Vec<OrgPlan>,
    /// Nodes: validators first (gz-credit, credit-china, gsxt, agency-4..), then followers
    /// (bank-a, bank-b, bank-3..).
    pub nodes: Vec<NodePlan>,
}

fn sample_name(id: &str) -> Option<(&'static str, Role)> {
    SAMPLE_ORGS
        .iter()
        .find(|(i, ..)| *i == id)
        .map(|(_, n, r, _)| (*n, *r))
}

/// Validator org ids in order: gz-credit, credit-china, gsxt, agency-4, agency-5, ...
pub fn validator_ids(n: usize) -> Vec<String> {
    let mut v: Vec<String> = [DATA_ORG, "credit-china", "gsxt"]
        .iter()
        .take(n)
        .map(|s| s.to_string())
        .collect();
    for i in 4..=n {
        v.push(format!("agency-{i}"));
    }
    v
}

/// Follower org ids in order: bank-a, bank-b, bank-3, bank-4, ...
pub fn follower_ids(m: usize) -> Vec<String> {
    let mut v: Vec<String> = ["bank-a", "bank-b"]
        .iter()
        .take(m)
        .map(|s| s.to_string())
        .collect();
    for i in 3..=m {
        v.push(format!("bank-{i}"));
    }
    v
}

impl Plan {
    /// The layout for `validators` validators and `followers` followers; node `k` (1-based,
    /// validators first) gets HTTP port `base_port + k` and p2p port `base_port + 100 + k`.
    pub fn new(validators: usize, followers: usize, base_port: u16) -> Result<Plan> {
        if validators == 0 {
            bail!("--validators must be at least 1");
        }
        if validators > MAX_NODES || followers > MAX_NODES {
            bail!("at most {MAX_NODES} validators and {MAX_NODES} followers");
        }
        let total = validators + followers;
        if u32::from(base_port) + 100 + total as u32 > u32::from(u16::MAX) {
            bail!("--base-port {base_port} is too high for {total} nodes (needs base+100+{total} <= 65535)");
        }
        let mut nodes = Vec::new();
        for (i, org) in validator_ids(validators)
            .into_iter()
            .map(|o| (o, NodeRole::Validator))
            .chain(
                follower_ids(followers)
                    .into_iter()
                    .map(|o| (o, NodeRole::Follower)),
            )
            .enumerate()
        {
            let k = (i + 1) as u16;
            nodes.push(NodePlan {
                org: org.0,
                role: org.1,
                http: SocketAddr::from(([127, 0, 0, 1], base_port + k)),
                p2p: SocketAddr::from(([127, 0, 0, 1], base_port + 100 + k)),
            });
        }
        let mut orgs: BTreeMap<String, OrgPlan> = BTreeMap::new();
        for (id, name, role, _) in SAMPLE_ORGS {
            orgs.insert(
                id.to_string(),
                OrgPlan {
                    id: id.to_string(),
                    name: name.to_string(),
                    role,
                    power: 0,
                    node: None,
                },
            );
        }
        for n in &nodes {
            let (name, role) = match sample_name(&n.org) {
                Some(x) => (x.0.to_string(), x.1),
                None if n.role == NodeRole::Validator => {
                    (format!("Testnet agency {}", n.org), Role::Agency)
                }
                None => (format!("Testnet bank {}", n.org), Role::Bank),
            };
            orgs.insert(
                n.org.clone(),
                OrgPlan {
                    id: n.org.clone(),
                    name,
                    role,
                    power: u64::from(n.role == NodeRole::Validator),
                    node: Some(n.role),
                },
            );
        }
        Ok(Plan {
            orgs: orgs.into_values().collect(),
            nodes,
        })
    }

    /// The data node (gz-credit); always the first validator.
    pub fn data_node(&self) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.is_data_node())
    }

    /// The node's TOML configuration. Paths are relative to the node's directory
    /// (`DIR/<org>/`): data in `data/`, keys in `../keys/`, genesis `../genesis.json`. The
    /// required fields are parsed from TOML so that every other field keeps the node's default.
    pub fn config(&self, node: &NodePlan) -> Result<Config> {
        let base = format!(
            "data_dir = \"data\"\nhttp = \"{}\"\norg = \"{}\"\nkey_file = \"../keys/{}.key\"\ngenesis = \"../genesis.json\"\n",
            node.http, node.org, node.org
        );
        let mut c: Config = toml::from_str(&base)?;
        let peers = self
            .nodes
            .iter()
            .filter(|n| n.org != node.org)
            .map(|n| (n.org.clone(), n.p2p))
            .collect();
        c.p2p = Some(toml_default_p2p(node.p2p, peers));
        c.query = match self.data_node() {
            Some(d) if !node.is_data_node() => Some(QuerySection { data_node: d.url() }),
            _ => None,
        };
        c.sample = node.is_data_node().then_some(SampleSection {
            firms: SAMPLE_FIRMS,
        });
        // Every member holds the consortium firm key (written once under keys/).
        c.privacy = Some(PrivacySection {
            firm_key: "../keys/firm.key".into(),
        });
        Ok(c)
    }

    /// The configuration as the text of `DIR/<org>/xinyi.toml`.
    pub fn config_text(&self, node: &NodePlan) -> Result<String> {
        Ok(format!(
            "# xinyi-node configuration of {} ({}) in a local testnet, written by `xinyi-testnet up`.\n# Relative paths are relative to this file.\n{}",
            node.org,
            node.role.name(),
            toml::to_string_pretty(&self.config(node)?)?
        ))
    }
}

/// A `[p2p]` section with the node's defaults for everything but the addresses (parsed from
/// TOML so that the defaults stay the node's own).
fn toml_default_p2p(listen: SocketAddr, peers: BTreeMap<String, SocketAddr>) -> P2pSection {
    let parsed: Option<P2pSection> = toml::from_str(&format!("listen = \"{listen}\"")).ok();
    match parsed {
        Some(mut p) => {
            p.peers = peers;
            p
        }
        None => P2pSection {
            listen,
            peers,
            max_message_bytes: 16 * 1024 * 1024,
            peer_rate_limit_per_sec: 20_000,
            leader_timeout_ms: 1_000,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn four_validators_one_follower() {
        let p = Plan::new(4, 1, 7800).unwrap();
        let ids: Vec<(&str, NodeRole)> = p.nodes.iter().map(|n| (n.org.as_str(), n.role)).collect();
        assert_eq!(
            ids,
            vec![
                ("gz-credit", NodeRole::Validator),
                ("credit-china", NodeRole::Validator),
                ("gsxt", NodeRole::Validator),
                ("agency-4", NodeRole::Validator),
                ("bank-a", NodeRole::Follower),
            ]
        );
        assert_eq!(p.nodes[0].http.port(), 7801);
        assert_eq!(p.nodes[0].p2p.port(), 7901);
        assert_eq!(p.nodes[4].http.port(), 7805);
        assert_eq!(p.nodes[4].p2p.port(), 7905);
        let orgs: Vec<(&str, u64, Option<NodeRole>)> = p
            .orgs
            .iter()
            .map(|o| (o.id.as_str(), o.power, o.node))
            .collect();
        assert_eq!(
            orgs,
            vec![
                ("agency-4", 1, Some(NodeRole::Validator)),
                ("auditor", 0, None),
                ("bank-a", 0, Some(NodeRole::Follower)),
                ("bank-b", 0, None),
                ("credit-china", 1, Some(NodeRole::Validator)),
                ("gsxt", 1, Some(NodeRole::Validator)),
                ("gz-credit", 1, Some(NodeRole::Validator)),
            ]
        );
        assert_eq!(p.orgs[0].role, Role::Agency);
        assert_eq!(p.orgs[4].role, Role::CreditChina);
    }

    #[test]
    fn one_validator_three_followers() {
        let p = Plan::new(1, 3, 20000).unwrap();
        let ids: Vec<&str> = p.nodes.iter().map(|n| n.org.as_str()).collect();
        assert_eq!(ids, ["gz-credit", "bank-a", "bank-b", "bank-3"]);
        let cc = p.orgs.iter().find(|o| o.id == "credit-china").unwrap();
        assert_eq!((cc.power, cc.node), (0, None));
        let b3 = p.orgs.iter().find(|o| o.id == "bank-3").unwrap();
        assert_eq!(b3.role, Role::Bank);
        assert_eq!(p.orgs.len(), 7);
    }

    #[test]
    fn configs_name_every_other_node_and_the_data_node() {
        let p = Plan::new(3, 2, 7800).unwrap();
        let gz = p.config(&p.nodes[0]).unwrap();
        assert!(gz.sample.as_ref().is_some_and(|s| s.firms == SAMPLE_FIRMS));
        assert!(gz.query.is_none());
        let peers = &gz.p2p.as_ref().unwrap().peers;
        assert_eq!(peers.len(), 4);
        assert!(!peers.contains_key("gz-credit"));
        assert_eq!(peers["bank-b"].port(), 7905);
        let bank = p.config(&p.nodes[3]).unwrap();
        assert_eq!(bank.query.unwrap().data_node, "http://127.0.0.1:7801");
        assert!(bank.sample.is_none());
        // The text parses back as the node's own config type.
        let text = p.config_text(&p.nodes[3]).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back.org, "bank-a");
        assert_eq!(back.key_file, PathBuf::from("../keys/bank-a.key"));
        assert_eq!(back.p2p.unwrap().peers.len(), 4);
    }

    #[test]
    fn refuses_bad_sizes() {
        assert!(Plan::new(0, 1, 7800).is_err());
        assert!(Plan::new(3, 0, 65500).is_err());
        assert!(Plan::new(MAX_NODES + 1, 0, 7800).is_err());
    }
}

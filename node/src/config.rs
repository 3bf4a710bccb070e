//! Configuration of a real (non-dev) node: `xinyi-node init` writes it, `xinyi-node start`
//! reads it.
//!
//! A TOML file names the data directory, HTTP address, the node's organisation id, its key file
//! and the genesis file; environment variables (`XINYI_DATA`, `XINYI_HTTP`, `XINYI_ORG`,
//! `XINYI_KEY`, `XINYI_GENESIS`, `XINYI_RATE_LIMIT`, `XINYI_TLS_CERT`, `XINYI_TLS_KEY`)
//! override the file. Relative paths are resolved against the config file's directory.
//!
//! A `[p2p]` section turns the node into a member of a multi-node consortium (consensus over
//! libp2p; the node validates if the ledger gives its organisation voting power, and follows
//! otherwise). Without it the node runs a single-validator chain. `[query]` names the node that
//! holds the agency data (queries are forwarded there), `[sample]` fills this node's agency
//! data store with synthetic firms (testnets and demos). `[api]` turns on TLS for the HTTP API
//! (`tls_cert` and `tls_key`, both or neither) and names a CA for `https://` URLs of other nodes
//! (`tls_ca`); `specs/api.md` "Transport security". `[privacy] firm_key` names the consortium
//! firm key file (firm tags, `specs/privacy.md`); nodes serving firm-facing routes need it.

use crate::dev::write_secret;
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use xinyi_ledger::genesis::{GenesisOrg, Params};
use xinyi_ledger::types::Role;
use xinyi_ledger::{Genesis, KeyPair, OrgId};

/// The TOML configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory of the ledger database and agency data.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// This node's organisation id (must be the chain's validator).
    pub org: String,
    /// The organisation's key file.
    pub key_file: PathBuf,
    /// The genesis file.
    pub genesis: PathBuf,
    /// Signed requests per second allowed per signer.
    #[serde(default = "default_rate")]
    pub rate_limit_per_sec: u32,
    /// Mempool capacity.
    #[serde(default = "default_mempool")]
    pub mempool_capacity: usize,
    /// Request timeout in milliseconds.
    #[serde(default = "default_timeout")]
    pub request_timeout_ms: u64,
    /// Multi-node settings; absent: single-validator chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p2p: Option<P2pSection>,
    /// Where credit queries go when this node does not hold the agency data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<QuerySection>,
    /// Synthetic agency data for testnets and demos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<SampleSection>,
    /// External witnesses checkpoints are submitted to (`specs/witness.md`); default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness: Option<crate::witness_client::WitnessConfig>,
    /// Anchor sinks for final checkpoints (`specs/checkpoints.md` §6); default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<crate::anchor::AnchorConfig>,
    /// HTTP API transport settings (TLS); absent: plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiSection>,
    /// The consortium firm key (firm tags); absent: routes naming a firm by USCC answer 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacySection>,
    /// Post-loan monitoring (alert bounds, webhooks); absent: the defaults, no webhooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<crate::monitor::MonitorConfig>,
    /// Benchmark-only settings (`xinyi-bench cluster --app noop`); absent: the ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bench: Option<BenchSection>,
}

/// `[bench]`: benchmark-only settings, written by `xinyi-bench cluster --app noop`; not for a
/// production node. `app = "noop"` runs the validator with the no-op replica
/// (`consensus::noop`) in place of the ledger: the same Commonware engine and libp2p transport,
/// started by the same code, ordering opaque payloads without ledger work, and an HTTP API of
/// `/health` only. Needs `[p2p]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchSection {
    /// `"ledger"` (the node as usual) or `"noop"`.
    #[serde(default = "default_bench_app")]
    pub app: String,
    /// Body bytes of each no-op payload.
    #[serde(default = "default_noop_payload")]
    pub payload_bytes: usize,
}

/// What a validator runs behind the consensus engine ([`BenchSection::app`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchApp {
    /// The ledger (the default).
    Ledger,
    /// The no-op replica.
    Noop,
}

impl BenchSection {
    /// The application named by `app`; an error naming the accepted values otherwise.
    pub fn app(&self) -> anyhow::Result<BenchApp> {
        match self.app.as_str() {
            "ledger" => Ok(BenchApp::Ledger),
            "noop" => Ok(BenchApp::Noop),
            other => anyhow::bail!(
                "[bench] app = {other:?} is not an application: use \"ledger\" or \"noop\""
            ),
        }
    }
}

fn default_bench_app() -> String {
    "ledger".into()
}
fn default_noop_payload() -> usize {
    64 * 1024
}

/// `[api]`: transport security of the HTTP API (`specs/api.md` "Transport security").
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// PEM certificate chain (leaf first) the API serves over TLS; needs `tls_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the `tls_cert` leaf; needs `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// PEM file of CA certificates trusted, besides the usual public roots, for `https://`
    /// URLs of other nodes this node calls (`[query] data_node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
}

impl ApiSection {
    /// Checks that `tls_cert` and `tls_key` are given together.
    pub fn check(&self) -> anyhow::Result<()> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => anyhow::bail!(
                "[api] tls_cert is set but tls_key is not; set both (PEM files) or neither"
            ),
            (None, Some(_)) => anyhow::bail!(
                "[api] tls_key is set but tls_cert is not; set both (PEM files) or neither"
            ),
            _ => Ok(()),
        }
    }

    /// The server TLS configuration, if `tls_cert` and `tls_key` are set (reads and checks
    /// both files).
    pub fn server_tls(&self) -> anyhow::Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
        self.check()?;
        crate::tls::server_config_opt(self.tls_cert.as_deref(), self.tls_key.as_deref())
    }
}

/// `[privacy]`: the consortium firm key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySection {
    /// File holding the consortium firm key (64 hex digits, mode 0600), given to members out of
    /// band (`xinyi-node firm-key --out FILE`).
    pub firm_key: PathBuf,
}

/// `[p2p]`: the consortium network.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pSection {
    /// Listen address for libp2p (TCP).
    pub listen: SocketAddr,
    /// Known addresses of other members, by organisation id. Who may connect is decided by the
    /// ledger's membership, not by this list.
    #[serde(default)]
    pub peers: BTreeMap<String, SocketAddr>,
    /// Largest p2p message accepted, in bytes.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Messages per second accepted from one peer.
    #[serde(default = "default_peer_rate")]
    pub peer_rate_limit_per_sec: u32,
    /// Consensus leader timeout in milliseconds.
    #[serde(default = "default_leader_timeout")]
    pub leader_timeout_ms: u64,
}

/// `[query]`: cross-node query path.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySection {
    /// Base URL of the node holding the agency data, e.g. `http://127.0.0.1:7801`.
    pub data_node: String,
}

/// `[sample]`: synthetic agency data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleSection {
    /// Number of sample firms (`xinyi_ledger::sample::sample_firm(0..firms)`) whose data this
    /// node generates into its agency data store if the store is empty.
    pub firms: u32,
}

fn default_max_message() -> usize {
    16 * 1024 * 1024
}
fn default_peer_rate() -> u32 {
    20_000
}
fn default_leader_timeout() -> u64 {
    1_000
}

fn default_rate() -> u32 {
    20_000
}
fn default_mempool() -> usize {
    50_000
}
fn default_timeout() -> u64 {
    10_000
}

impl Config {
    /// Reads `path` and applies environment overrides.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let mut c: Config =
            toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        c.apply_env(|k| std::env::var(k).ok())?;
        for p in [&mut c.data_dir, &mut c.key_file, &mut c.genesis] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(api) = &mut c.api {
            for p in [&mut api.tls_cert, &mut api.tls_key, &mut api.tls_ca]
                .into_iter()
                .flatten()
            {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
            api.check()
                .with_context(|| format!("config {}", path.display()))?;
        }
        if let Some(p) = c.privacy.as_mut().map(|s| &mut s.firm_key) {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        OrgId::new(&c.org).with_context(|| "config field org")?;
        c.check_bench()
            .with_context(|| format!("config {}", path.display()))?;
        Ok(c)
    }

    /// The application behind the engine (`[bench] app`): checked at load.
    pub fn bench_app(&self) -> anyhow::Result<BenchApp> {
        self.bench
            .as_ref()
            .map_or(Ok(BenchApp::Ledger), |b| b.app())
    }

    fn check_bench(&self) -> anyhow::Result<()> {
        if self.bench_app()? == BenchApp::Noop && self.p2p.is_none() {
            anyhow::bail!("[bench] app = \"noop\" needs a [p2p] section (it runs validators only)");
        }
        Ok(())
    }

    /// Reads the consortium firm keys: `[privacy] firm_key` (epoch 0) and the files of later
    /// epochs beside it (`firm.key.1`, ..., `crate::firmkeys`), if configured.
    pub fn firm_keys(&self) -> anyhow::Result<Option<crate::firmkeys::FirmKeys>> {
        self.privacy
            .as_ref()
            .map(|p| crate::firmkeys::FirmKeys::load(&p.firm_key))
            .transpose()
    }

    /// Applies overrides from `env` (a lookup function, for tests).
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(v) = env("XINYI_DATA") {
            self.data_dir = v.into();
        }
        if let Some(v) = env("XINYI_HTTP") {
            self.http = v
                .parse()
                .with_context(|| format!("XINYI_HTTP={v} is not an address like 127.0.0.1:7878"))?;
        }
        if let Some(v) = env("XINYI_ORG") {
            self.org = v;
        }
        if let Some(v) = env("XINYI_KEY") {
            self.key_file = v.into();
        }
        if let Some(v) = env("XINYI_GENESIS") {
            self.genesis = v.into();
        }
        if let Some(v) = env("XINYI_RATE_LIMIT") {
            self.rate_limit_per_sec = v
                .parse()
                .with_context(|| format!("XINYI_RATE_LIMIT={v} is not a number"))?;
        }
        if let Some(v) = env("XINYI_TLS_CERT") {
            self.api.get_or_insert_with(Default::default).tls_cert = Some(v.into());
        }
        if let Some(v) = env("XINYI_TLS_KEY") {
            self.api.get_or_insert_with(Default::default).tls_key = Some(v.into());
        }
        Ok(())
    }
}

/// What `init` created.
#[derive(Debug)]
pub struct InitOutput {
    /// Config file.
    pub config: PathBuf,
    /// Key file.
    pub key: PathBuf,
    /// Genesis file.
    pub genesis: PathBuf,
    /// Public key.
    pub public_key: String,
    /// The consortium firm key file (new, or the one given).
    pub firm_key: PathBuf,
}

/// Creates a key, a one-validator genesis, a consortium firm key (unless `firm_key` names an
/// existing one) and a config in `dir`. Refuses to overwrite a key.
pub fn init(
    dir: &Path,
    org: &str,
    name: &str,
    http: SocketAddr,
    firm_key: Option<&Path>,
) -> anyhow::Result<InitOutput> {
    let org_id = OrgId::new(org)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key_path = dir.join(format!("{org}.key"));
    let config_path = dir.join("xinyi.toml");
    let genesis_path = dir.join("genesis.json");
    for p in [&key_path, &config_path, &genesis_path] {
        if p.exists() {
            anyhow::bail!("{} already exists; refusing to overwrite it", p.display());
        }
    }
    let firm_key_path = match firm_key {
        Some(p) => {
            crate::dev::read_firm_key(p)?;
            std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
        }
        None => {
            let p = dir.join("firm.key");
            crate::dev::write_firm_key(&p, &xinyi_ledger::FirmKey::generate())?;
            PathBuf::from("firm.key")
        }
    };
    let key = KeyPair::generate();
    write_secret(&key_path, &key.to_file_text())?;
    let genesis = Genesis {
        name: name.to_string(),
        time: crate::clock::system_ms(),
        orgs: vec![GenesisOrg {
            id: org_id,
            name: format!("{org} (validator agency)"),
            role: Role::Agency,
            key: key.public(),
            power: 1,
        }],
        params: Params::default(),
    };
    genesis.validate().context("genesis")?;
    std::fs::write(&genesis_path, genesis.to_json())?;
    let cfg = Config {
        data_dir: PathBuf::from("data"),
        http,
        org: org.to_string(),
        key_file: PathBuf::from(format!("{org}.key")),
        genesis: PathBuf::from("genesis.json"),
        rate_limit_per_sec: default_rate(),
        mempool_capacity: default_mempool(),
        request_timeout_ms: default_timeout(),
        p2p: None,
        query: None,
        sample: None,
        witness: None,
        anchor: None,
        api: None,
        monitor: None,
        bench: None,
        privacy: Some(PrivacySection {
            firm_key: firm_key_path.clone(),
        }),
    };
    let text = format!(
        "# xinyi-node configuration (written by `xinyi-node init`).\n# Relative paths are relative to this file. Environment variables XINYI_DATA, XINYI_HTTP,\n# XINYI_ORG, XINYI_KEY, XINYI_GENESIS and XINYI_RATE_LIMIT override these values.\n{}",
        toml::to_string_pretty(&cfg)?
    );
    std::fs::write(&config_path, text)?;
    Ok(InitOutput {
        config: config_path,
        key: key_path,
        genesis: genesis_path,
        public_key: key.public().to_hex(),
        firm_key: if firm_key_path.is_relative() {
            dir.join(firm_key_path)
        } else {
            firm_key_path
        },
    })
}

/// One organisation of a consortium genesis, as given on the command line:
/// `ID:ROLE:PUBLIC_KEY_HEX:POWER[:DISPLAY NAME]`.
pub fn parse_genesis_org(spec: &str) -> anyhow::Result<GenesisOrg> {
    let mut parts = spec.splitn(5, ':');
    let (Some(id), Some(role), Some(key), Some(power)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        anyhow::bail!(
            "--org {spec:?}: expected ID:ROLE:PUBLIC_KEY_HEX:POWER[:NAME], e.g. \
             gz-credit:agency:3b6a…:1:Guangzhou credit agency"
        );
    };
    let role: Role = serde_json::from_value(serde_json::Value::String(role.to_string()))
        .map_err(|_| {
            anyhow::anyhow!(
                "--org {spec:?}: role {role:?} is not one of agency, bank, credit_china, gsxt, auditor"
            )
        })?;
    let key = xinyi_ledger::PublicKey::from_hex(key)
        .map_err(|e| anyhow::anyhow!("--org {spec:?}: public key: {e}"))?;
    let power: u64 = power
        .parse()
        .map_err(|_| anyhow::anyhow!("--org {spec:?}: power {power:?} is not a number"))?;
    Ok(GenesisOrg {
        id: OrgId::new(id).with_context(|| format!("--org {spec:?}"))?,
        name: parts.next().unwrap_or(id).to_string(),
        role,
        key,
        power,
    })
}

/// Writes a consortium genesis for `orgs` (validated) to `out`; refuses to overwrite.
pub fn write_genesis(name: &str, orgs: Vec<GenesisOrg>, out: &Path) -> anyhow::Result<Genesis> {
    if out.exists() {
        anyhow::bail!("{} already exists; refusing to overwrite it", out.display());
    }
    let mut orgs = orgs;
    orgs.sort_by(|a, b| a.id.cmp(&b.id));
    let genesis = Genesis {
        name: name.to_string(),
        time: crate::clock::system_ms(),
        orgs,
        params: Params::default(),
    };
    genesis.validate().context("genesis")?;
    std::fs::write(out, genesis.to_json()).with_context(|| format!("writing {}", out.display()))?;
    Ok(genesis)
}

/// What `xinyi-node init` needs for a consortium member.
#[derive(Debug, Clone)]
pub struct MemberInit {
    /// Organisation id.
    pub org: String,
    /// Existing key file.
    pub key_file: PathBuf,
    /// Shared genesis file.
    pub genesis_file: PathBuf,
    /// HTTP listen address.
    pub http: SocketAddr,
    /// The `[p2p]` section.
    pub p2p: P2pSection,
    /// The `[query] data_node`, if any.
    pub data_node: Option<String>,
    /// The `[sample] firms`, if any.
    pub sample_firms: Option<u32>,
    /// The consortium firm key file (`[privacy] firm_key`), if any.
    pub firm_key: Option<PathBuf>,
}

/// Writes `dir/xinyi.toml` for a consortium member: existing key and genesis, `[p2p]`,
/// `[query]` and `[sample]` as given. Refuses to overwrite.
pub fn init_member(dir: &Path, m: MemberInit) -> anyhow::Result<PathBuf> {
    let MemberInit {
        org,
        key_file,
        genesis_file,
        http,
        p2p,
        data_node,
        sample_firms,
        firm_key,
    } = m;
    if let Some(p) = &firm_key {
        crate::dev::read_firm_key(p)?;
    }
    let (org, key_file, genesis_file) = (org.as_str(), key_file.as_path(), genesis_file.as_path());
    let org_id = OrgId::new(org)?;
    let genesis = Genesis::from_json(
        &std::fs::read(genesis_file)
            .with_context(|| format!("reading genesis {}", genesis_file.display()))?,
    )
    .with_context(|| format!("genesis {}", genesis_file.display()))?;
    let key = crate::dev::read_key(key_file)?;
    let member = genesis
        .orgs
        .iter()
        .find(|o| o.id == org_id)
        .ok_or_else(|| {
            anyhow::anyhow!("{org} is not an organisation of {}", genesis_file.display())
        })?;
    if member.key != key.public() {
        anyhow::bail!(
            "{} holds key {}, but the genesis gives {org} the key {}",
            key_file.display(),
            key.public(),
            member.key
        );
    }
    for p in p2p.peers.keys() {
        OrgId::new(p).with_context(|| format!("--peer {p}"))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let config_path = dir.join("xinyi.toml");
    if config_path.exists() {
        anyhow::bail!(
            "{} already exists; refusing to overwrite it",
            config_path.display()
        );
    }
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let cfg = Config {
        data_dir: PathBuf::from("data"),
        http,
        org: org.to_string(),
        key_file: abs(key_file),
        genesis: abs(genesis_file),
        rate_limit_per_sec: default_rate(),
        mempool_capacity: default_mempool(),
        request_timeout_ms: default_timeout(),
        p2p: Some(p2p),
        query: data_node.map(|d| QuerySection { data_node: d }),
        sample: sample_firms.map(|firms| SampleSection { firms }),
        witness: None,
        anchor: None,
        api: None,
        privacy: firm_key.map(|p| PrivacySection { firm_key: abs(&p) }),
        monitor: None,
        bench: None,
    };
    let text = format!(
        "# xinyi-node configuration of consortium member {org} (written by `xinyi-node init`).\n\
         # Relative paths are relative to this file.\n{}",
        toml::to_string_pretty(&cfg)?
    );
    std::fs::write(&config_path, text)?;
    Ok(config_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "data_dir = \"data\"\nhttp = \"127.0.0.1:7801\"\norg = \"gz-credit\"\nkey_file = \"k.key\"\ngenesis = \"g.json\"\n";
    const P2P: &str = "[p2p]\nlisten = \"127.0.0.1:7901\"\n";

    fn load(text: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("xinyi.toml");
        std::fs::write(&path, text)?;
        Config::load(&path)
    }

    #[test]
    fn the_bench_app_is_the_ledger_unless_noop_is_asked_for() {
        assert_eq!(load(BASE).unwrap().bench_app().unwrap(), BenchApp::Ledger);
        let c = load(&format!(
            "{BASE}{P2P}[bench]\napp = \"noop\"\npayload_bytes = 5000\n"
        ))
        .unwrap();
        assert_eq!(c.bench_app().unwrap(), BenchApp::Noop);
        assert_eq!(c.bench.unwrap().payload_bytes, 5000);
        let c = load(&format!("{BASE}{P2P}[bench]\n")).unwrap();
        assert_eq!(c.bench_app().unwrap(), BenchApp::Ledger);
    }

    #[test]
    fn an_unknown_bench_app_or_a_noop_without_p2p_is_refused_at_load() {
        let e = load(&format!("{BASE}{P2P}[bench]\napp = \"nop\"\n")).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("app = \"nop\"") && msg.contains("\"ledger\" or \"noop\""),
            "{msg}"
        );
        let e = load(&format!("{BASE}[bench]\napp = \"noop\"\n")).unwrap_err();
        assert!(format!("{e:#}").contains("needs a [p2p] section"), "{e:#}");
    }
}

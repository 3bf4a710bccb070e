//! The `xinyi-node` binary: command line, logging, and the process edge (one readable error
//! line and a non-zero exit code on failure). Everything else lives in the library.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use xinyi_node::api::ApiConfig;
use xinyi_node::config::{self, Config};
use xinyi_node::engine::EngineConfig;
use xinyi_node::node::{serve_config, serve_with, Node};

#[derive(Parser)]
#[command(
    name = "xinyi-node",
    version,
    about = "xinyi (信易) ledger node: consents, authorized credit queries, access logs and credit repair",
    long_about = "xinyi (信易) ledger node.\n\n\
Runs a permissioned ledger of firms' consents for banks to query their credit data, the queries \
themselves (logged before any data is released), and credit repairs.\n\n\
Quick start:  xinyi-node --dev\n\
  creates a sample consortium (agency gz-credit, registries credit-china and gsxt, banks bank-a \
and bank-b, an auditor, 1,000 sample firms) in ./xinyi-dev-data and serves the API on \
http://127.0.0.1:7878. Restarting with the same --data resumes it.\n\n\
Alone:        xinyi-node init --dir DIR   then   xinyi-node start --config DIR/xinyi.toml\n\
Consortium:   each member `xinyi-node keygen --out KEY`; one `xinyi-node genesis --org ... --out \
genesis.json` with every member's public key; each member `xinyi-node init --dir DIR --org ID \
--key KEY --genesis genesis.json --p2p ADDR --peer ORG=ADDR...` then `start`. Members with \
voting power validate (BFT consensus over libp2p); the others follow. See README.",
    after_help = "Environment: RUST_LOG sets the log filter (default info; \
xinyi_node=debug logs every request and block). `start` reads XINYI_DATA, XINYI_HTTP, XINYI_ORG, \
XINYI_KEY, XINYI_GENESIS, XINYI_RATE_LIMIT, XINYI_TLS_CERT, XINYI_TLS_KEY over its config file; \
--dev reads XINYI_DATA, XINYI_HTTP, XINYI_RATE_LIMIT, XINYI_TLS_CERT and XINYI_TLS_KEY for its \
options."
)]
struct Cli {
    /// Run a self-contained dev node with a sample consortium and sample data.
    #[arg(long)]
    dev: bool,
    /// Dev mode: data directory (created on first start, resumed afterwards).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "./xinyi-dev-data",
        env = "XINYI_DATA"
    )]
    data: PathBuf,
    /// Dev mode: HTTP listen address.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:7878",
        env = "XINYI_HTTP"
    )]
    http: SocketAddr,
    /// Dev mode: signed requests per second allowed per signer (0 = unlimited).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 20_000,
        env = "XINYI_RATE_LIMIT"
    )]
    rate_limit: u32,
    /// Dev mode: submit checkpoints to this witness (tlog-witness submission prefix; repeatable).
    #[arg(long = "witness", value_name = "URL")]
    witness_urls: Vec<String>,
    /// Dev mode: verifier key of the witness at the same position in --witness (repeatable).
    #[arg(long = "witness-vkey", value_name = "VKEY")]
    witness_vkeys: Vec<String>,
    /// Dev mode: anchor final checkpoints to this append-only JSON-lines file.
    #[arg(long, value_name = "FILE")]
    anchor_file: Option<PathBuf>,
    /// Dev mode: anchor final checkpoints by POSTing them to this URL.
    #[arg(long, value_name = "URL")]
    anchor_url: Option<String>,
    /// Dev mode: anchoring interval in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    anchor_interval_ms: u64,
    /// Dev mode: anchor to an EVM chain at this JSON-RPC URL (with --anchor-contract and
    /// --anchor-key; `specs/anchoring.md`).
    #[arg(long, value_name = "URL", requires_all = ["anchor_contract", "anchor_key"])]
    anchor_rpc: Option<String>,
    /// Dev mode: the anchor contract's address (`xinyi-node anchor deploy`).
    #[arg(long, value_name = "ADDR", requires = "anchor_rpc")]
    anchor_contract: Option<String>,
    /// Dev mode: the anchoring account's secp256k1 key file (mode 0600).
    #[arg(long, value_name = "FILE", requires = "anchor_rpc")]
    anchor_key: Option<PathBuf>,
    /// Dev mode: EVM confirmations before the receipt is recorded.
    #[arg(long, value_name = "N", default_value_t = 1)]
    anchor_confirmations: u64,
    /// Dev mode: also anchor every N committed blocks (0: by --anchor-interval-ms only).
    #[arg(long, value_name = "N", default_value_t = 0)]
    anchor_every_blocks: u64,
    /// Dev mode: how often the EVM anchoring task looks at the chain, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1_000)]
    anchor_poll_ms: u64,
    /// Dev mode: serve the API over TLS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "FILE", env = "XINYI_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Dev mode: the PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", env = "XINYI_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Dev mode: POST each alert released to BANK to this webhook, BANK=URL (repeatable).
    #[arg(long = "webhook", value_name = "BANK=URL")]
    webhooks: Vec<String>,
    /// Dev mode: alerts per second per bank (0 = unlimited).
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    alert_rate: u32,
    /// Dev mode: unacknowledged alerts a bank may have before new ones are not produced.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    alert_backlog: u64,
    /// Dev mode: longest delay between webhook retries, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    webhook_max_backoff_ms: u64,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create an organisation key (mode 0600), a one-validator genesis and a TOML config in DIR.
    Init {
        /// Directory to create the files in.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Organisation id of this node (a-z, 0-9, '-').
        #[arg(long, value_name = "ID", default_value = "gz-credit")]
        org: String,
        /// Consortium name (the checkpoint origin; no spaces).
        #[arg(long, value_name = "NAME", default_value = "xinyi/guangzhou")]
        name: String,
        /// HTTP listen address written into the config.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7878")]
        http: SocketAddr,
        /// Consortium member: the existing key file (from `keygen`); with --genesis and --p2p.
        #[arg(long, value_name = "FILE", requires_all = ["genesis", "p2p"])]
        key: Option<PathBuf>,
        /// Consortium member: the shared genesis file (from `genesis`).
        #[arg(long, value_name = "FILE", requires = "key")]
        genesis: Option<PathBuf>,
        /// Consortium member: libp2p listen address.
        #[arg(long, value_name = "ADDR", requires = "key")]
        p2p: Option<SocketAddr>,
        /// Consortium member: another member's p2p address, ORG=ADDR (repeatable).
        #[arg(long = "peer", value_name = "ORG=ADDR", requires = "key")]
        peers: Vec<String>,
        /// Consortium member without the agency data: the data node's URL for queries.
        #[arg(long, value_name = "URL", requires = "key")]
        data_node: Option<String>,
        /// Consortium member holding agency data: fill its store with N synthetic sample firms
        /// (demos and tests).
        #[arg(long, value_name = "N", requires = "key")]
        sample_firms: Option<u32>,
        /// The consortium firm key file (from `firm-key`), written into the config as
        /// `[privacy] firm_key`. Alone: a new one is created in DIR unless given.
        #[arg(long, value_name = "FILE")]
        firm_key: Option<PathBuf>,
    },
    /// Create the consortium firm key (32 random bytes, hex, mode 0600). Firms appear on the
    /// ledger under tags keyed by it; give the file to member nodes out of band, never publish it.
    FirmKey {
        /// Where to write the key (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Create an organisation key file (mode 0600) and print its public key.
    Keygen {
        /// Where to write the key (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write a consortium genesis from every member's public key.
    Genesis {
        /// Consortium name (the checkpoint origin; no spaces).
        #[arg(long, value_name = "NAME", default_value = "xinyi/guangzhou")]
        name: String,
        /// A member: ID:ROLE:PUBLIC_KEY_HEX:POWER[:DISPLAY NAME] (role agency, bank,
        /// credit_china, gsxt or auditor; power > 0 makes it a validator). Repeat per member.
        #[arg(long = "org", value_name = "SPEC", required = true)]
        orgs: Vec<String>,
        /// Output file (never overwritten).
        #[arg(long, value_name = "FILE", default_value = "genesis.json")]
        out: PathBuf,
    },
    /// EVM anchoring: anchoring keys, contract deployment (`specs/anchoring.md`).
    #[command(subcommand)]
    Anchor(xinyi_node::anchor_evm::AnchorCmd),
    /// Start a node from a config file written by `init` (with [p2p]: a consortium member).
    Start {
        /// The TOML config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("xinyi-node: error: {e:#}");
        std::process::exit(1);
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sled=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Some(Cmd::Anchor(c)) => {
            print!("{}", xinyi_node::anchor_evm::run_cmd(c)?);
            Ok(())
        }
        Some(Cmd::Keygen { out }) => {
            if out.exists() {
                anyhow::bail!("{} already exists; refusing to overwrite it", out.display());
            }
            let key = xinyi_ledger::KeyPair::generate();
            xinyi_node::dev::write_secret(&out, &key.to_file_text())?;
            println!("{}", key.public().to_hex());
            eprintln!(
                "wrote {} (mode 0600; keep it secret); its public key is printed above",
                out.display()
            );
            Ok(())
        }
        Some(Cmd::FirmKey { out }) => {
            xinyi_node::dev::write_firm_key(&out, &xinyi_ledger::FirmKey::generate())?;
            eprintln!(
                "wrote {} (mode 0600): the consortium firm key; give it to member nodes out of band \
                 ([privacy] firm_key, `init --firm-key`), never publish it",
                out.display()
            );
            Ok(())
        }
        Some(Cmd::Genesis { name, orgs, out }) => {
            let orgs = orgs
                .iter()
                .map(|o| config::parse_genesis_org(o))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let g = config::write_genesis(&name, orgs, &out)?;
            println!(
                "wrote {}: consortium {name:?}, chain id {}, {} organisations, {} validators",
                out.display(),
                g.chain_id().map(|d| d.to_hex()).unwrap_or_default(),
                g.orgs.len(),
                g.orgs.iter().filter(|o| o.power > 0).count()
            );
            Ok(())
        }
        Some(Cmd::Init {
            dir,
            org,
            http,
            key: Some(key),
            genesis: Some(genesis),
            p2p: Some(listen),
            peers,
            data_node,
            sample_firms,
            firm_key,
            ..
        }) => {
            let mut p = std::collections::BTreeMap::new();
            for spec in &peers {
                let (o, a) = spec
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--peer {spec:?}: expected ORG=ADDR"))?;
                let a: SocketAddr = a.parse().map_err(|_| {
                    anyhow::anyhow!("--peer {spec:?}: {a:?} is not an address like 10.0.0.2:9100")
                })?;
                p.insert(o.to_string(), a);
            }
            let path = config::init_member(
                &dir,
                config::MemberInit {
                    org,
                    key_file: key,
                    genesis_file: genesis,
                    http,
                    p2p: config::P2pSection {
                        listen,
                        peers: p,
                        max_message_bytes: 16 * 1024 * 1024,
                        peer_rate_limit_per_sec: 20_000,
                        leader_timeout_ms: 1_000,
                    },
                    data_node,
                    sample_firms,
                    firm_key,
                },
            )?;
            println!(
                "wrote {}\nStart it:  xinyi-node start --config {}\nCheck it:  curl http://{http}/health",
                path.display(),
                path.display()
            );
            Ok(())
        }
        Some(Cmd::Init {
            dir,
            org,
            name,
            http,
            key: None,
            firm_key,
            ..
        }) => {
            let out = config::init(&dir, &org, &name, http, firm_key.as_deref())?;
            println!(
                "Created:\n  key      {} (mode 0600; keep it secret)\n  firm key {} (consortium secret)\n  genesis  {}\n  config   {}\n\nPublic key of {org}: {}\n\nNext:\n  1. Review {} (consortium {name:?}, {org} is its only validator).\n  2. Start the node:  xinyi-node start --config {}\n  3. Check it:        curl http://{http}/health\n\nThis node runs alone; for a consortium add a [p2p] section (see README, `xinyi-testnet up`).",
                out.key.display(),
                out.firm_key.display(),
                out.genesis.display(),
                out.config.display(),
                out.public_key,
                out.genesis.display(),
                out.config.display(),
            );
            Ok(())
        }
        Some(Cmd::Init { .. }) => {
            anyhow::bail!("a consortium member needs --key, --genesis and --p2p together")
        }
        Some(Cmd::Start { config }) => {
            init_logging();
            let cfg = Config::load(&config)?;
            let api = cfg.api.clone().unwrap_or_default();
            if let Some(ca) = &api.tls_ca {
                xinyi_node::tls::set_peer_ca(ca)?;
            }
            if cfg.p2p.is_some() {
                return xinyi_node::cluster::run(cfg);
            }
            let tls = api.server_tls()?;
            let rt = runtime()?;
            rt.block_on(async move {
                let node = Node::open_config(&cfg)?;
                serve_config(&cfg, node.router(), tls).await
            })
        }
        None if cli.dev => {
            init_logging();
            let tls = match (&cli.tls_cert, &cli.tls_key) {
                (Some(_), None) => anyhow::bail!(
                    "--tls-cert is set but --tls-key is not; give both (PEM files) or neither"
                ),
                (None, Some(_)) => anyhow::bail!(
                    "--tls-key is set but --tls-cert is not; give both (PEM files) or neither"
                ),
                (c, k) => xinyi_node::tls::server_config_opt(c.as_deref(), k.as_deref())?,
            };
            let rt = runtime()?;
            let data = cli.data.clone();
            rt.block_on(async move {
                let (node, setup) = tokio::task::spawn_blocking(move || {
                    Node::open_dev(
                        &data,
                        ApiConfig {
                            dev: true,
                            rate_limit_per_sec: cli.rate_limit,
                            request_timeout: Duration::from_secs(10),
                            data_node: None,
                            net: None,
                            firm_keys: None,
                        },
                        EngineConfig::default(),
                    )
                })
                .await
                .context("starting the dev node")??;
                let listener = tokio::net::TcpListener::bind(cli.http)
                    .await
                    .with_context(|| format!("listening on {}", cli.http))?;
                let scheme = if tls.is_some() { "https" } else { "http" };
                let url = format!("{scheme}://{}", listener.local_addr()?);
                if setup.created {
                    tracing::info!(
                        "created a new dev consortium in {}",
                        setup.paths.root.display()
                    );
                } else {
                    tracing::info!(
                        "resumed the dev consortium in {}",
                        setup.paths.root.display()
                    );
                }
                node.start_firm_key_sync();
                node.start_audit_services(
                    xinyi_node::witness_client::WitnessConfig {
                        urls: cli.witness_urls,
                        vkeys: cli.witness_vkeys,
                        interval_ms: 500,
                    },
                    xinyi_node::anchor::AnchorConfig {
                        file: cli.anchor_file,
                        url: cli.anchor_url,
                        interval_ms: cli.anchor_interval_ms,
                        evm: cli.anchor_rpc.map(|rpc| xinyi_node::anchor_evm::EvmConfig {
                            rpc,
                            contract: cli.anchor_contract.unwrap_or_default(),
                            key: cli.anchor_key.unwrap_or_default(),
                            every_blocks: cli.anchor_every_blocks,
                            interval_ms: cli.anchor_interval_ms,
                            confirmations: cli.anchor_confirmations,
                            poll_ms: cli.anchor_poll_ms,
                            state_file: None,
                        }),
                    }
                    .with_data_dir(&cli.data),
                )?;
                let mut webhooks = std::collections::BTreeMap::new();
                for w in &cli.webhooks {
                    let (bank, url) = w
                        .split_once('=')
                        .ok_or_else(|| anyhow::anyhow!("--webhook {w:?}: expected BANK=URL"))?;
                    webhooks.insert(bank.to_string(), url.to_string());
                }
                node.start_data_services(
                    &setup.paths.root.join("monitor"),
                    setup.node_key.clone(),
                    xinyi_node::monitor::MonitorConfig {
                        webhooks,
                        rate_per_sec: cli.alert_rate,
                        backlog_cap: cli.alert_backlog,
                        webhook_max_backoff_ms: cli.webhook_max_backoff_ms,
                        ..Default::default()
                    },
                )?;
                print!("{}", xinyi_node::dev::quick_start(&setup, &url));
                serve_with(listener, node.router(), tls).await
            })
        }
        None => anyhow::bail!(
            "nothing to do: run `xinyi-node --dev` for a dev node, or `xinyi-node init --dir DIR` \
             then `xinyi-node start --config DIR/xinyi.toml` (see --help)"
        ),
    }
}

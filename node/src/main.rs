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
use xinyi_node::node::{serve, Node};

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
Deployment:   xinyi-node init --dir DIR   then   xinyi-node start --config DIR/xinyi.toml\n\n\
This version runs single-validator chains only: the node certifies its own blocks (1-of-1 commit \
certificates). Multi-node BFT networking comes in a later release.",
    after_help = "Environment: RUST_LOG sets the log filter (default info; \
xinyi_node=debug logs every request and block). `start` reads XINYI_DATA, XINYI_HTTP, XINYI_ORG, \
XINYI_KEY, XINYI_GENESIS, XINYI_RATE_LIMIT over its config file; --dev reads XINYI_DATA, \
XINYI_HTTP and XINYI_RATE_LIMIT for its options."
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
    },
    /// Start a node from a config file written by `init` (single validator only for now).
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
        Some(Cmd::Init {
            dir,
            org,
            name,
            http,
        }) => {
            let out = config::init(&dir, &org, &name, http)?;
            println!(
                "Created:\n  key      {} (mode 0600; keep it secret)\n  genesis  {}\n  config   {}\n\nPublic key of {org}: {}\n\nNext:\n  1. Review {} (consortium {name:?}, {org} is its only validator).\n  2. Start the node:  xinyi-node start --config {}\n  3. Check it:        curl http://{http}/health\n\nThis node runs alone; for a consortium add a [p2p] section (see README, `xinyi-testnet up`).",
                out.key.display(),
                out.genesis.display(),
                out.config.display(),
                out.public_key,
                out.genesis.display(),
                out.config.display(),
            );
            Ok(())
        }
        Some(Cmd::Start { config }) => {
            init_logging();
            let cfg = Config::load(&config)?;
            if cfg.p2p.is_some() {
                return xinyi_node::cluster::run(cfg);
            }
            let rt = runtime()?;
            rt.block_on(async move {
                let node = Node::open_config(&cfg)?;
                let listener = tokio::net::TcpListener::bind(cfg.http)
                    .await
                    .with_context(|| format!("listening on {}", cfg.http))?;
                tracing::info!(
                    "xinyi node {} serving on http://{}",
                    cfg.org,
                    listener.local_addr()?
                );
                serve(listener, node.router()).await
            })
        }
        None if cli.dev => {
            init_logging();
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
                        },
                        EngineConfig::default(),
                    )
                })
                .await
                .context("starting the dev node")??;
                let listener = tokio::net::TcpListener::bind(cli.http)
                    .await
                    .with_context(|| format!("listening on {}", cli.http))?;
                let url = format!("http://{}", listener.local_addr()?);
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
                    },
                );
                print!("{}", xinyi_node::dev::quick_start(&setup, &url));
                serve(listener, node.router()).await
            })
        }
        None => anyhow::bail!(
            "nothing to do: run `xinyi-node --dev` for a dev node, or `xinyi-node init --dir DIR` \
             then `xinyi-node start --config DIR/xinyi.toml` (see --help)"
        ),
    }
}

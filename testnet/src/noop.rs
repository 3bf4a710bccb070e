//! The no-op peer of the `cluster` benchmark (`xinyi-bench cluster --app noop|both`): a local
//! testnet of real `xinyi-node` validator processes whose config says `[bench] app = "noop"`,
//! so each runs the same Commonware engine over the same libp2p transport as a ledger
//! validator, started by the same code, with the no-op replica (`xinyi_node::consensus::noop`)
//! behind it: every leader proposes a payload of opaque bytes at once, nobody executes or
//! stores anything.
//!
//! What it is: the testnet (keys, genesis and configs as `xinyi-testnet up` writes them, then
//! the `[bench]` section added), the processes, and one measurement: finalized payloads and
//! bytes per validator (from each node's `/health`) and CPU per process (`/proc`) over a step.
//! What it is not: a load generator (the proposers make their own payloads, as fast as the
//! engine asks for them) or a ledger (no entries, nothing to query). Nothing here asserts
//! timing.

use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::cluster::{free_base_port, proc_figures, sibling};
use crate::net::manifest::Manifest;
use crate::net::{ops, process};

/// A running no-op testnet; stops its processes on drop.
pub struct NoopNet {
    /// Its manifest (validators only).
    pub manifest: Manifest,
    /// Body bytes of each payload.
    pub payload_bytes: usize,
    children: Vec<(String, Child)>,
    agent: ureq::Agent,
    _tmp: tempfile::TempDir,
}

impl Drop for NoopNet {
    fn drop(&mut self) {
        let _ = ops::stop_all(&self.manifest, Duration::from_secs(5));
        for (_, c) in &mut self.children {
            let _ = c.wait();
        }
    }
}

/// One validator's counters at one moment.
#[derive(Debug, Clone, Default)]
struct Counters {
    payloads: u64,
    bytes: u64,
    cpu: Option<Duration>,
}

/// One no-op validator over a step.
#[derive(Debug, Clone)]
pub struct NoopNode {
    /// Organisation.
    pub org: String,
    /// Payloads it counted as finalized during the step.
    pub payloads: u64,
    /// Their body bytes.
    pub bytes: u64,
    /// CPU over the step as % of one core.
    pub cpu_percent: Option<f64>,
    /// RSS at the end.
    pub rss_bytes: Option<u64>,
}

/// Result of one no-op step.
#[derive(Debug, Clone)]
pub struct NoopStep {
    /// Wall seconds measured over.
    pub wall: f64,
    /// Body bytes of each payload.
    pub payload_bytes: usize,
    /// Per validator.
    pub nodes: Vec<NoopNode>,
    /// The benchmark process's own CPU over the step (% of one core); it only polls `/health`.
    pub own_cpu_percent: Option<f64>,
}

impl NoopStep {
    /// Payloads every validator finalized during the step (the lowest count).
    pub fn payloads(&self) -> u64 {
        self.nodes.iter().map(|n| n.payloads).min().unwrap_or(0)
    }

    /// Body bytes every validator finalized (the lowest count).
    pub fn bytes(&self) -> u64 {
        self.nodes.iter().map(|n| n.bytes).min().unwrap_or(0)
    }
}

impl NoopNet {
    /// Creates a testnet of `validators` no-op validators in a temporary directory, starts
    /// them and waits until every one has finalized a payload.
    pub fn start(validators: usize, payload_bytes: usize, verbose: bool) -> Result<NoopNet> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("noop");
        let opts = ops::UpOptions {
            dir: dir.clone(),
            validators: Some(validators),
            followers: Some(0),
            base_port: Some(free_base_port(validators)?),
            node_bin: sibling("xinyi-node")?,
            self_exe: sibling("xinyi-testnet")?,
            timeout: Duration::from_secs(120),
            verbose,
            anchor_chain: false,
        };
        let mut m = ops::create(&opts, &dir)?;
        m.node_bin = opts.node_bin.clone();
        for n in &m.nodes {
            set_noop(&n.config, payload_bytes)?;
        }
        let mut children = Vec::new();
        for i in 0..m.nodes.len() {
            let n = m.nodes[i].clone();
            let child = process::spawn_node(&m.node_bin, &n.config, &n.log)?;
            if verbose {
                eprintln!(
                    "  started no-op {:<13} pid {:<7} {}",
                    n.org,
                    child.id(),
                    n.url
                );
            }
            m.nodes[i].pid = Some(child.id());
            children.push((n.org, child));
        }
        m.save()?;
        let mut net = NoopNet {
            manifest: m,
            payload_bytes,
            children,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(5))
                .build(),
            _tmp: tmp,
        };
        ops::wait_all_healthy(
            &net.manifest,
            &mut net.children,
            Instant::now() + opts.timeout,
        )?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let c = net.counters()?;
            if c.iter().all(|c| c.payloads > 0) {
                break;
            }
            if Instant::now() > deadline {
                let n = &net.manifest.nodes[0];
                bail!(
                    "the no-op validators finalized no payload within 60 s; {}: {}",
                    n.log.display(),
                    process::last_log_line(&n.log)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if verbose {
            eprintln!("  every no-op validator finalizes payloads");
        }
        Ok(net)
    }

    fn counters(&self) -> Result<Vec<Counters>> {
        self.manifest
            .nodes
            .iter()
            .map(|n| {
                let v: serde_json::Value = self
                    .agent
                    .get(&format!("{}/health", n.url))
                    .call()
                    .with_context(|| format!("{}/health", n.url))?
                    .into_json()?;
                let stats = &v["noop"]["stats"];
                let field = |k: &str| {
                    stats[k]
                        .as_u64()
                        .ok_or_else(|| anyhow!("{}: /health without noop.stats.{k}: {v}", n.org))
                };
                Ok(Counters {
                    payloads: field("finalized_payloads")?,
                    bytes: field("finalized_bytes")?,
                    cpu: n.pid.and_then(|p| proc_figures(p).0),
                })
            })
            .collect()
    }

    /// Measures finalized payloads and CPU over `duration`.
    pub fn measure(&self, duration: Duration) -> Result<NoopStep> {
        let own0 = proc_figures(std::process::id()).0;
        let before = self.counters()?;
        let t0 = Instant::now();
        std::thread::sleep(duration);
        let after = self.counters()?;
        let wall = t0.elapsed().as_secs_f64();
        let own1 = proc_figures(std::process::id()).0;
        let pct = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(x), Some(y)) => Some(100.0 * y.saturating_sub(x).as_secs_f64() / wall),
            _ => None,
        };
        let nodes = self
            .manifest
            .nodes
            .iter()
            .zip(before.iter().zip(&after))
            .map(|(n, (b, a))| NoopNode {
                org: n.org.clone(),
                payloads: a.payloads.saturating_sub(b.payloads),
                bytes: a.bytes.saturating_sub(b.bytes),
                cpu_percent: pct(b.cpu, a.cpu),
                rss_bytes: n.pid.and_then(|p| proc_figures(p).1),
            })
            .collect();
        Ok(NoopStep {
            wall,
            payload_bytes: self.payload_bytes,
            nodes,
            own_cpu_percent: pct(own0, own1),
        })
    }
}

/// Adds `[bench] app = "noop"` with `payload_bytes` to a node's config file.
fn set_noop(config: &PathBuf, payload_bytes: usize) -> Result<()> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let mut c: xinyi_node::config::Config =
        toml::from_str(&text).with_context(|| format!("parsing {}", config.display()))?;
    c.bench = Some(xinyi_node::config::BenchSection {
        app: "noop".into(),
        payload_bytes,
    });
    std::fs::write(
        config,
        format!(
            "# A validator of the benchmark's no-op peer (xinyi-bench cluster --app noop).\n{}",
            toml::to_string_pretty(&c)?
        ),
    )
    .with_context(|| format!("writing {}", config.display()))
}

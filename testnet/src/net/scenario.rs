//! `scenario`: the dev-node acceptance scenario across the testnet's nodes, driven through the
//! real `xinyi` client binary (the commands a user would type).
//!
//! 1. a firm grants bank-a a consent through credit-china's node;
//! 2. bank-a queries through its own (follower) node, which forwards to gz-credit; gz-credit
//!    releases the data only once the query record is final, and the client verifies the
//!    response digest, inclusion proof and checkpoint;
//! 3. the firm reads (and verifies) its access log from another node;
//! 4. an auditor exports the bundle from gsxt's node and verifies it offline from the genesis.

use super::http;
use super::manifest::{Manifest, NodeEntry};
use anyhow::{anyhow, bail, Context as _, Result};
use serde::Serialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One step's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// What was done.
    pub name: String,
    /// Passed?
    pub ok: bool,
    /// Wall time in ms.
    pub ms: u64,
    /// What was seen (ids, heights) or the error.
    pub detail: String,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({} ms){}",
            if self.ok { "✓" } else { "✗" },
            self.name,
            self.ms,
            if self.detail.is_empty() {
                String::new()
            } else {
                format!("\n    {}", self.detail)
            }
        )
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every step passed.
    pub ok: bool,
    /// Steps in order (stops at the first failure).
    pub steps: Vec<Step>,
}

/// Runs the `xinyi` client with a time limit.
struct Client {
    bin: PathBuf,
    genesis: PathBuf,
    keys: PathBuf,
    work: PathBuf,
    timeout: Duration,
    runs: std::cell::Cell<u32>,
}

impl Client {
    /// `xinyi --node URL --genesis G [--key KEYS/<key>.key] ARGS` → stdout, or the error line.
    fn run(&self, node: &str, key: Option<&str>, args: &[&str]) -> Result<String> {
        let i = self.runs.get() + 1;
        self.runs.set(i);
        let (out_p, err_p) = (
            self.work.join(format!("client-{i}.out")),
            self.work.join(format!("client-{i}.err")),
        );
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--node")
            .arg(node)
            .arg("--genesis")
            .arg(&self.genesis)
            .env_remove("XINYI_KEY")
            .env_remove("XINYI_NODE")
            .env_remove("XINYI_GENESIS")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_p)?)
            .stderr(std::fs::File::create(&err_p)?);
        if let Some(k) = key {
            cmd.arg("--key").arg(self.keys.join(format!("{k}.key")));
        }
        cmd.args(args);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("running {}", self.bin.display()))?;
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "`xinyi {}` did not finish within {:?}",
                    args.join(" "),
                    self.timeout
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = std::fs::read_to_string(&out_p).unwrap_or_default();
        let err = std::fs::read_to_string(&err_p).unwrap_or_default();
        if !status.success() {
            bail!(
                "`xinyi {}` failed ({status}): {}",
                args.join(" "),
                err.lines().next().unwrap_or("(no message)")
            );
        }
        Ok(out)
    }

    fn json(&self, node: &str, key: Option<&str>, args: &[&str]) -> Result<Value> {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.run(node, key, &a)?;
        serde_json::from_str(&out)
            .map_err(|e| anyhow!("`xinyi {}` printed no JSON ({e})", args.join(" ")))
    }
}

fn wait_height(url: &str, org: &str, h: u64, deadline: Instant) -> Result<u64> {
    let agent = http::agent_short();
    let mut last = None;
    loop {
        match http::health(&agent, url) {
            Ok(x) if x.height >= h => return Ok(x.height),
            Ok(x) => last = Some(x.height),
            Err(_) => {}
        }
        if Instant::now() > deadline {
            bail!(
                "{org} did not reach height {h} in time (last seen {})",
                last.map(|x| x.to_string())
                    .unwrap_or_else(|| "no answer".into())
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn u(v: &Value, path: &[&str]) -> Option<u64> {
    let mut x = v;
    for p in path {
        x = x.get(p)?;
    }
    x.as_u64()
}

fn st(v: &Value, path: &[&str]) -> Option<String> {
    let mut x = v;
    for p in path {
        x = x.get(p)?;
    }
    x.as_str().map(str::to_string)
}

/// The nodes each step uses.
struct Cast<'a> {
    grant: &'a NodeEntry,
    query: &'a NodeEntry,
    data: &'a NodeEntry,
    log: &'a NodeEntry,
    export: &'a NodeEntry,
}

fn cast(m: &Manifest) -> Result<Cast<'_>> {
    let data = m
        .data_node()
        .ok_or_else(|| anyhow!("this testnet has no data node (gz-credit)"))?;
    let by = |o: &str| m.nodes.iter().find(|n| n.org == o);
    let grant = by("credit-china")
        .or_else(|| m.nodes.iter().find(|n| n.validator && !n.data_node))
        .unwrap_or(data);
    let query = by("bank-a")
        .or_else(|| m.nodes.iter().find(|n| !n.data_node && n.org != grant.org))
        .unwrap_or(grant);
    let export = by("gsxt")
        .or_else(|| {
            m.nodes
                .iter()
                .find(|n| !n.data_node && n.org != grant.org && n.org != query.org)
        })
        .unwrap_or(data);
    let used = [grant.org.as_str(), query.org.as_str(), data.org.as_str()];
    let log = m
        .nodes
        .iter()
        .find(|n| !used.contains(&n.org.as_str()) && n.org != export.org)
        .or_else(|| m.nodes.iter().find(|n| !used.contains(&n.org.as_str())))
        .unwrap_or(data);
    Ok(Cast {
        grant,
        query,
        data,
        log,
        export,
    })
}

/// Runs the scenario; `progress` sees each step as it finishes.
pub fn run(
    dir: &Path,
    client_bin: &Path,
    timeout: Duration,
    mut progress: impl FnMut(&Step),
) -> Result<Report> {
    let m = Manifest::load(dir)?;
    let c = cast(&m)?;
    let firm = m
        .firms
        .first()
        .ok_or_else(|| anyhow!("the manifest lists no keyed firms"))?
        .uscc
        .clone();
    let firm_key = format!("firm-{firm}");
    let work = m.dir.join("scenario").join(format!(
        "run-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let client = Client {
        bin: client_bin.to_path_buf(),
        genesis: m.genesis.clone(),
        keys: m.keys.clone(),
        work: work.clone(),
        timeout,
        runs: std::cell::Cell::new(0),
    };
    let mut steps: Vec<Step> = Vec::new();
    let mut step = |name: String, f: &mut dyn FnMut() -> Result<String>| -> bool {
        let t = Instant::now();
        let r = f();
        let s = Step {
            name,
            ok: r.is_ok(),
            ms: t.elapsed().as_millis() as u64,
            detail: match r {
                Ok(d) => d,
                Err(e) => format!("{e:#}"),
            },
        };
        progress(&s);
        let ok = s.ok;
        steps.push(s);
        ok
    };
    let deadline = || Instant::now() + timeout;

    let mut consent = String::new();
    let mut consent_height = 0u64;
    let mut record_pos = 0u64;
    let mut record_height = 0u64;
    let bundle = work.join("chain.bundle");
    let pass = step(
        format!(
            "{} nodes up on chain {}",
            m.nodes.len(),
            super::ops::short(Some(&m.chain_id))
        ),
        &mut || {
            let agent = http::agent_short();
            for n in &m.nodes {
                let h = http::health(&agent, &n.url)
                    .with_context(|| format!("{} does not answer", n.org))?;
                if h.status != "ok" {
                    bail!("{} reports status {:?}", n.org, h.status);
                }
                if !h.chain_id.is_empty() && h.chain_id != m.chain_id {
                    bail!("{} serves chain {}", n.org, h.chain_id);
                }
            }
            Ok(String::new())
        },
    ) && step(
        format!("firm {firm} grants bank-a a consent via {}", c.grant.org),
        &mut || {
            let g = client.json(
                &c.grant.url,
                Some(&firm_key),
                &[
                    "consent",
                    "grant",
                    "--firm",
                    &firm,
                    "--bank",
                    "bank-a",
                    "--categories",
                    "registration,tax",
                    "--uses",
                    "2",
                    "--days",
                    "30",
                    "--purpose",
                    "testnet scenario",
                ],
            )?;
            consent = st(&g, &["id"]).ok_or_else(|| anyhow!("no consent id in {g}"))?;
            consent_height = u(&g, &["height"]).ok_or_else(|| anyhow!("no height in {g}"))?;
            let size = u(&g, &["verified", "checkpoint_size"]).unwrap_or(0);
            Ok(format!(
                "consent {} in block {consent_height}, inclusion verified in checkpoint of size {size}",
                super::ops::short(Some(&consent))
            ))
        },
    ) && step(
        format!("the consent reaches {} and {}", c.query.org, c.data.org),
        &mut || {
            wait_height(&c.query.url, &c.query.org, consent_height, deadline())?;
            wait_height(&c.data.url, &c.data.org, consent_height, deadline())?;
            Ok(String::new())
        },
    ) && step(
        format!(
            "bank-a queries via {} ({} holds the data): data released with a verified proof",
            c.query.org, c.data.org
        ),
        &mut || {
            let q = client.json(
                &c.query.url,
                Some("bank-a"),
                &[
                    "query",
                    "--consent",
                    &consent,
                    "--firm",
                    &firm,
                    "--categories",
                    "tax",
                ],
            )?;
            if q.get("verified").and_then(|v| v.get("response_digest")) != Some(&Value::Bool(true))
            {
                bail!("the client did not verify the response digest: {q}");
            }
            if q.get("data").and_then(|d| d.get("tax")).is_none() {
                bail!("no tax data in the answer: {q}");
            }
            record_pos =
                u(&q, &["record", "position"]).ok_or_else(|| anyhow!("no record position"))?;
            record_height =
                u(&q, &["record", "height"]).ok_or_else(|| anyhow!("no record height"))?;
            Ok(format!(
                "query record at log position {record_pos} in block {record_height}, checkpoint size {}",
                u(&q, &["verified", "checkpoint_size"]).unwrap_or(0)
            ))
        },
    ) && step(
        format!(
            "the firm reads its access log from {} (each item verified)",
            c.log.org
        ),
        &mut || {
            wait_height(&c.log.url, &c.log.org, record_height, deadline())?;
            let l = client.json(
                &c.log.url,
                Some(&firm_key),
                &["access-log", "--firm", &firm, "--verify"],
            )?;
            let items = l
                .get("entries")
                .and_then(Value::as_array)
                .ok_or_else(|| anyhow!("no entries in {l}"))?;
            let found = items.iter().any(|e| {
                u(e, &["position"]) == Some(record_pos)
                    && st(e, &["kind"]).as_deref() == Some("query_served")
                    && st(e, &["bank"]).as_deref() == Some("bank-a")
                    && st(e, &["consent"]).as_deref() == Some(consent.as_str())
            });
            if !found {
                bail!("the query record at position {record_pos} is not in the access log: {l}");
            }
            Ok(format!(
                "{} entries, {} verified",
                items.len(),
                u(&l, &["verified", "entries"]).unwrap_or(0)
            ))
        },
    ) && step(
        format!("an auditor exports the bundle from {}", c.export.org),
        &mut || {
            wait_height(&c.export.url, &c.export.org, record_height, deadline())?;
            let path = bundle.to_string_lossy().to_string();
            // Exports are for auditors and validators (role-gated reads, specs/privacy.md §4).
            client.run(&c.export.url, Some("auditor"), &["export", "--out", &path])?;
            let n = std::fs::metadata(&bundle).map(|x| x.len()).unwrap_or(0);
            Ok(format!("{} ({n} bytes)", bundle.display()))
        },
    ) && step(
        "audit verify: the bundle checks out offline against genesis.json".into(),
        &mut || {
            let path = bundle.to_string_lossy().to_string();
            let genesis = m.genesis.to_string_lossy().to_string();
            let r = client.json(
                &c.export.url,
                None,
                &["audit", "verify", "--bundle", &path, "--genesis", &genesis],
            )?;
            if st(&r, &["result"]).as_deref() != Some("ok") {
                bail!("audit result is not ok: {r}");
            }
            let blocks = u(&r, &["blocks"]).unwrap_or(0);
            if blocks < record_height {
                bail!("the bundle has {blocks} blocks, fewer than the query record's block {record_height}");
            }
            Ok(format!(
                "{blocks} blocks, log size {}, state root {}",
                u(&r, &["log_size"]).unwrap_or(0),
                super::ops::short(st(&r, &["state_root"]).as_deref())
            ))
        },
    );
    Ok(Report { ok: pass, steps })
}

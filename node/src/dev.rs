//! Dev mode: a complete sample consortium in one directory, created at first start.
//!
//! `prepare` generates RANDOM keys for the six sample organisations (gz-credit, the agency and
//! single validator; credit-china and gsxt, the registries; bank-a and bank-b; auditor) and for a
//! few sample firms, and the consortium firm key (`dev-keys/firm.key`, for the firm tags entries
//! carry), writes them under `DIR/dev-keys/` (mode 0600) and writes `DIR/genesis.json`
//! last, so an interrupted first start is simply redone. `seed` fills the agency's off-ledger
//! data (≥ 1,000 firms) and commits the first block: firm registrations and published penalty
//! digests. A second start with the same directory loads everything and regenerates nothing.
//! Dev keys are for development only; a real deployment uses `xinyi-node init`.

use crate::datastore::AgencyData;
use crate::engine::{Engine, SubmitError};
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use xinyi_ledger::entry::CreditRecord;
use xinyi_ledger::genesis::{GenesisOrg, Params};
use xinyi_ledger::sample::{sample_firm, SAMPLE_ORGS};
use xinyi_ledger::{EntryKind, FirmKey, Genesis, KeyPair, OrgId, Uscc};

/// Consortium name (the checkpoint origin) of dev chains.
pub const DEV_NAME: &str = "xinyi.dev/guangzhou";
/// The validator agency that holds the data.
pub const AGENCY: &str = "gz-credit";
/// Number of sample firms with synthetic data.
pub const SAMPLE_FIRMS: u32 = 1_000;
/// Number of sample firms that get key files (and two repairable minor penalties each).
pub const KEYED_FIRMS: u32 = 5;
/// Firms whose penalties are published on the ledger at first start.
pub const PUBLISHED_FIRMS: u32 = 100;

/// Files of a dev directory.
#[derive(Debug, Clone)]
pub struct DevPaths {
    /// The directory.
    pub root: PathBuf,
    /// genesis.json
    pub genesis: PathBuf,
    /// dev-keys/
    pub keys: PathBuf,
    /// ledger/ (sled)
    pub ledger: PathBuf,
    /// agency-data/ (sled, off-ledger)
    pub agency: PathBuf,
    /// dev-clock (persisted clock offset)
    pub clock: PathBuf,
}

impl DevPaths {
    /// Paths under `root`.
    pub fn new(root: &Path) -> DevPaths {
        DevPaths {
            root: root.to_path_buf(),
            genesis: root.join("genesis.json"),
            keys: root.join("dev-keys"),
            ledger: root.join("ledger"),
            agency: root.join("agency-data"),
            clock: root.join("dev-clock"),
        }
    }

    /// Key file of an organisation.
    pub fn org_key(&self, org: &str) -> PathBuf {
        self.keys.join(format!("{org}.key"))
    }

    /// The consortium firm key (firm tags, `specs/privacy.md`).
    pub fn firm_tag_key(&self) -> PathBuf {
        self.keys.join("firm.key")
    }

    /// Key file of a firm.
    pub fn firm_key(&self, firm: &Uscc) -> PathBuf {
        self.keys.join(format!("firm-{}.key", firm.as_str()))
    }
}

/// A prepared dev directory.
#[derive(Debug, Clone)]
pub struct DevSetup {
    /// Paths.
    pub paths: DevPaths,
    /// Genesis document.
    pub genesis: Genesis,
    /// The validator agency's key.
    pub node_key: KeyPair,
    /// Keyed sample firms and their keys.
    pub firms: Vec<(Uscc, KeyPair)>,
    /// The consortium firm key.
    pub firm_key: FirmKey,
    /// Whether this call created the consortium.
    pub created: bool,
}

/// Writes `text` to `path` with mode 0600 (atomically: temp file, then rename).
pub fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            o.mode(0o600);
        }
        let mut f = o
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        // Encrypted when XINYI_KEY_PASSPHRASE is set (xinyi_ledger::keyfile).
        let text = xinyi_ledger::keyfile::seal_text(text)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Reads a key file.
pub fn read_key(path: &Path) -> anyhow::Result<KeyPair> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading key file {}", path.display()))?;
    let text = xinyi_ledger::keyfile::open_text(&text)
        .with_context(|| format!("key file {}", path.display()))?;
    KeyPair::from_file_text(&text).with_context(|| format!("key file {}", path.display()))
}

/// Writes a consortium firm key file (hex, mode 0600); refuses to overwrite.
pub fn write_firm_key(path: &Path, key: &FirmKey) -> anyhow::Result<()> {
    if path.exists() {
        anyhow::bail!(
            "{} already exists; refusing to overwrite it",
            path.display()
        );
    }
    write_secret(path, &key.to_hex())
}

/// Reads a consortium firm key file (64 hex digits; passphrase-sealed like key files).
pub fn read_firm_key(path: &Path) -> anyhow::Result<FirmKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading firm key file {}", path.display()))?;
    let text = xinyi_ledger::keyfile::open_text(&text)
        .with_context(|| format!("firm key file {}", path.display()))?;
    FirmKey::from_hex(&text).with_context(|| format!("firm key file {}", path.display()))
}

/// The keyed sample firms.
pub fn keyed_firms() -> anyhow::Result<Vec<Uscc>> {
    (0..KEYED_FIRMS)
        .map(|i| sample_firm(i).map_err(|e| anyhow::anyhow!("sample firm {i}: {e}")))
        .collect()
}

/// Creates the consortium in `dir` unless it exists, and loads it.
pub fn prepare(dir: &Path) -> anyhow::Result<DevSetup> {
    let paths = DevPaths::new(dir);
    let mut created = false;
    if !paths.genesis.exists() {
        std::fs::create_dir_all(&paths.keys)
            .with_context(|| format!("creating {}", paths.keys.display()))?;
        let mut orgs = Vec::new();
        for (id, name, role, validator) in SAMPLE_ORGS {
            let k = KeyPair::generate();
            write_secret(&paths.org_key(id), &k.to_file_text())?;
            orgs.push(GenesisOrg {
                id: OrgId::new(id)?,
                name: name.to_string(),
                role,
                key: k.public(),
                power: u64::from(validator),
            });
        }
        orgs.sort_by(|a, b| a.id.cmp(&b.id));
        for f in keyed_firms()? {
            write_secret(&paths.firm_key(&f), &KeyPair::generate().to_file_text())?;
        }
        write_secret(&paths.firm_tag_key(), &FirmKey::generate().to_hex())?;
        let genesis = Genesis {
            name: DEV_NAME.into(),
            time: crate::clock::system_ms().saturating_sub(1000),
            orgs,
            params: Params::default(),
        };
        genesis.validate()?;
        let tmp = paths.genesis.with_extension("tmp");
        std::fs::write(&tmp, genesis.to_json())?;
        std::fs::rename(&tmp, &paths.genesis)?;
        created = true;
    }
    let genesis = Genesis::from_json(
        &std::fs::read(&paths.genesis)
            .with_context(|| format!("reading {}", paths.genesis.display()))?,
    )
    .with_context(|| format!("{}", paths.genesis.display()))?;
    let node_key = read_key(&paths.org_key(AGENCY))?;
    let mut firms = Vec::new();
    for f in keyed_firms()? {
        firms.push((f, read_key(&paths.firm_key(&f))?));
    }
    let firm_key = read_firm_key(&paths.firm_tag_key())?;
    Ok(DevSetup {
        paths,
        genesis,
        node_key,
        firms,
        firm_key,
        created,
    })
}

/// Fills the agency data (if incomplete) and commits the first block (if the chain is empty).
pub fn seed(setup: &DevSetup, engine: &Engine, data: &AgencyData) -> anyhow::Result<()> {
    let all: Vec<Uscc> = (0..SAMPLE_FIRMS)
        .map(|i| sample_firm(i).map_err(|e| anyhow::anyhow!("sample firm {i}: {e}")))
        .collect::<anyhow::Result<_>>()?;
    if !data.is_complete()? {
        data.generate_sample(&all, KEYED_FIRMS as usize)?;
    }
    if engine.lock().chain.height() > 0 {
        return Ok(());
    }
    let mut entries = Vec::new();
    for (f, k) in &setup.firms {
        entries.push(engine.sign_own(EntryKind::FirmRegistered {
            firm: setup.firm_key.tag(f),
            key: k.public(),
        })?);
    }
    for f in all.iter().take(PUBLISHED_FIRMS as usize) {
        for p in data.penalties(f)? {
            entries.push(
                engine.sign_own(EntryKind::CreditRecordPublished(CreditRecord {
                    record: p.id,
                    firm: setup.firm_key.tag(&p.firm),
                    category: p.category,
                    severity: p.severity,
                    min_publicity_days: p.min_publicity_days,
                }))?,
            );
        }
    }
    let results = engine.commit_now(entries);
    let bad: Vec<&SubmitError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if let Some(e) = bad.first() {
        anyhow::bail!(
            "seeding the dev ledger: {} entries refused, first: {e}",
            bad.len()
        );
    }
    Ok(())
}

/// The quick-start text printed at start-up.
pub fn quick_start(setup: &DevSetup, url: &str) -> String {
    let p = &setup.paths;
    let (firm, firm_key) = match setup.firms.first() {
        Some((f, _)) => (f.as_str().to_string(), p.firm_key(f)),
        None => ("<USCC>".into(), p.keys.join("firm-<USCC>.key")),
    };
    let mut orgs = BTreeMap::new();
    for (id, ..) in SAMPLE_ORGS {
        orgs.insert(id, p.org_key(id));
    }
    let mut s = String::new();
    s.push_str(&format!(
        "\nxinyi dev node — {DEV_NAME} (single validator {AGENCY})\n  API:       {url}\n  data dir:  {}\n  genesis:   {}\n  dev keys:  {}\n",
        p.root.display(),
        p.genesis.display(),
        p.keys.display()
    ));
    for (id, path) in &orgs {
        s.push_str(&format!("    {id:<13}{}\n", path.display()));
    }
    for (f, _) in &setup.firms {
        s.push_str(&format!("    firm         {}\n", p.firm_key(f).display()));
    }
    s.push_str(&format!(
        "\nTry:\n  xinyi --node {url} --key {fk} consent grant --firm {firm} --bank bank-a --categories registration,tax --uses 2 --days 30\n  xinyi --node {url} --key {bk} query --consent <CONSENT-ID> --categories tax\n  xinyi --node {url} --key {fk} access-log --firm {firm}\n\n",
        fk = firm_key.display(),
        bk = p.org_key("bank-a").display(),
    ));
    s
}

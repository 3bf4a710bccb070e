//! The agency's off-ledger credit data: one sled database of its own, never replicated.
//!
//! Values are JSON documents per (firm, category), stored sealed under a data key of their own
//! (`crate::sealed`, scope `d/<USCC>/<category>`); erasing a firm's category destroys that key
//! and leaves a tombstone naming the `data_erased` entry ([`AgencyData::erase`]), so neither the
//! store's files nor a backup of them can give the data back. Penalty/list items carry an `id`, the salted
//! digest that identifies the record on the ledger (`CreditRecordPublished`) and in query
//! records. In `--dev` mode [`AgencyData::generate_sample`] fills it with synthetic firms. This
//! module only stores and reads data; whether a bank may read it is decided on the ledger.
//!
//! The data is the agency's own and keyed by USCC; the ledger names firms by keyed tag, so with
//! the consortium firm keys ([`AgencyData::set_firm_keys`], every firm-key epoch) the store keeps an
//! in-memory index from tag to USCC to find the firm a query request names.

use crate::firmkeys::FirmKeys;
use crate::sealed::{Keyring, Unsealed, SEALED};
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use xinyi_ledger::hash::{self, Digest};
use xinyi_ledger::types::Severity;
use xinyi_ledger::{Category, FirmTag, Uscc};

const COMPLETE: &[u8] = b"meta/complete";

/// The agency's data store.
#[derive(Clone)]
pub struct AgencyData {
    db: sled::Db,
    tags: Arc<RwLock<TagIndex>>,
    keys: Arc<Keyring>,
    /// Serialises erasure passes (`crate::erasure`).
    pub(crate) erase_lock: Arc<Mutex<()>>,
}

/// What the agency can release for a query.
#[derive(Debug)]
pub enum Release {
    /// `{category: value}` and the sorted ids of the records in it.
    Data(Value, Vec<Digest>),
    /// Some requested categories were erased: each with the id of its `data_erased` entry.
    Erased(Vec<(Category, Digest)>),
}

/// The firm keys and the tags of the firms held, in every firm-key epoch held.
#[derive(Default)]
struct TagIndex {
    keys: Option<FirmKeys>,
    firms: HashMap<FirmTag, Uscc>,
}

impl TagIndex {
    fn add(&mut self, firm: &Uscc) {
        if let Some(k) = &self.keys {
            for (_, t) in k.tags(firm) {
                self.firms.insert(t, *firm);
            }
        }
    }
}

/// A penalty record the agency publishes on the ledger (digest only).
#[derive(Debug, Clone)]
pub struct Publishable {
    /// Firm.
    pub firm: Uscc,
    /// Record id.
    pub id: Digest,
    /// Category.
    pub category: Category,
    /// Severity.
    pub severity: Severity,
    /// Minimum publicity days.
    pub min_publicity_days: u16,
}

/// The store key of a firm's category, also the scope of its data key.
fn scope(firm: &Uscc, c: Category) -> String {
    format!("d/{}/{}", firm.as_str(), c.name())
}

fn dkey(firm: &Uscc, c: Category) -> Vec<u8> {
    scope(firm, c).into_bytes()
}

/// The tombstone of an erased category: the `data_erased` entry id (32 bytes).
fn ekey(firm: &Uscc, c: Category) -> Vec<u8> {
    format!("e/{}/{}", firm.as_str(), c.name()).into_bytes()
}

/// The scope of a firm's stored alerts (by tag: the monitor names firms by tag).
pub fn alert_scope(tag: &FirmTag) -> String {
    format!("a/{tag}")
}

/// The data key file of the store in `dir`: `<dir>.keys`, beside it, so a copy of the store's
/// directory does not carry its keys.
pub fn keyring_path(dir: &Path) -> std::path::PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".keys");
    dir.with_file_name(name)
}

/// Canonical JSON bytes: compact, object keys sorted (serde_json's default map is ordered).
pub fn canonical_json(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

impl AgencyData {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<AgencyData> {
        let db = sled::open(dir)
            .map_err(|e| anyhow::anyhow!("opening agency data in {}: {e}", dir.display()))?;
        let keys = Arc::new(Keyring::open(&keyring_path(dir))?);
        let data = AgencyData {
            db,
            tags: Arc::default(),
            keys,
            erase_lock: Arc::default(),
        };
        data.seal_plain_values()?;
        Ok(data)
    }

    /// Seals values written by a version that stored them in the clear (one batch).
    fn seal_plain_values(&self) -> anyhow::Result<()> {
        let mut plain = Vec::new();
        for kv in self.db.scan_prefix(b"d/") {
            let (k, v) = kv?;
            if v.first() != Some(&SEALED) {
                plain.push((String::from_utf8_lossy(&k).into_owned(), v));
            }
        }
        if plain.is_empty() {
            return Ok(());
        }
        let scopes: Vec<String> = plain.iter().map(|(s, _)| s.clone()).collect();
        self.keys.ensure(&scopes)?;
        let mut batch = sled::Batch::default();
        for (s, v) in &plain {
            batch.insert(s.as_bytes(), self.keys.seal(s, v)?);
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        tracing::info!(
            "sealed {} agency data values stored in the clear",
            plain.len()
        );
        Ok(())
    }

    /// The data keys.
    pub fn keyring(&self) -> &Keyring {
        &self.keys
    }

    /// Seals `plain` under `scope` (the monitor's stored alerts).
    pub fn seal(&self, scope: &str, plain: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.keys.seal(scope, plain)
    }

    /// Opens a value sealed under `scope`.
    pub fn unseal(&self, scope: &str, sealed: &[u8]) -> anyhow::Result<Unsealed> {
        self.keys.unseal(scope, sealed)
    }

    /// Sets the consortium firm keys and indexes the tags (of every epoch held) of every firm
    /// held; called again when a firm-key rotation adds an epoch (`crate::firmkeys`).
    pub fn set_firm_keys(&self, keys: FirmKeys) -> anyhow::Result<()> {
        let mut idx = TagIndex {
            keys: Some(keys),
            firms: HashMap::new(),
        };
        // Firms with data, and firms whose data was erased (so a query names the erasure).
        for kv in self.db.scan_prefix(b"d/").chain(self.db.scan_prefix(b"e/")) {
            let (k, _) = kv?;
            let Some(u) = k
                .get(2..)
                .and_then(|r| r.split(|b| *b == b'/').next())
                .and_then(|u| std::str::from_utf8(u).ok())
                .and_then(|u| Uscc::parse(u).ok())
            else {
                continue;
            };
            idx.add(&u);
        }
        *self.tags.write().unwrap_or_else(|e| e.into_inner()) = idx;
        Ok(())
    }

    /// The firm with tag `tag`, if this store holds data on it (and knows the firm key).
    pub fn firm_by_tag(&self, tag: &FirmTag) -> Option<Uscc> {
        self.tags
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .firms
            .get(tag)
            .copied()
    }

    /// Whether the store knows the firm key (can find firms by tag).
    pub fn knows_tags(&self) -> bool {
        self.tags
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys
            .is_some()
    }

    /// Whether the store holds any firm's data.
    pub fn holds_data(&self) -> anyhow::Result<bool> {
        Ok(self.db.scan_prefix(b"d/").next().transpose()?.is_some())
    }

    /// Whether a sample dataset was completely generated.
    pub fn is_complete(&self) -> anyhow::Result<bool> {
        Ok(self.db.get(COMPLETE)?.is_some())
    }

    /// The data of one firm in one category (`null` if the agency holds none or erased it).
    pub fn get(&self, firm: &Uscc, c: Category) -> anyhow::Result<Value> {
        let s = scope(firm, c);
        match self.db.get(s.as_bytes())? {
            None => Ok(Value::Null),
            Some(v) => match self.keys.unseal(&s, &v)? {
                Unsealed::Plain(p) => Ok(serde_json::from_slice(&p)?),
                Unsealed::Erased => Ok(Value::Null),
            },
        }
    }

    /// The id of the `data_erased` entry that erased `firm`'s category `c`, if it is erased (and
    /// nothing was stored since).
    pub fn erased(&self, firm: &Uscc, c: Category) -> anyhow::Result<Option<Digest>> {
        Ok(self
            .db
            .get(ekey(firm, c))?
            .and_then(|v| Digest::from_slice(&v).ok()))
    }

    /// Erases `firm`'s data in `cats` for the `data_erased` entry `entry` at log position
    /// `position`: the data keys first (with the firm's stored alerts' key, which mixes
    /// categories), then the ciphertext, then the tombstones. Idempotent.
    pub fn erase(
        &self,
        firm: &Uscc,
        tag: &FirmTag,
        cats: &[Category],
        entry: &Digest,
        position: u64,
    ) -> anyhow::Result<()> {
        let mut scopes: Vec<String> = cats.iter().map(|c| scope(firm, *c)).collect();
        scopes.push(alert_scope(tag));
        self.keys.destroy(&scopes, position.saturating_add(1))?;
        let mut batch = sled::Batch::default();
        for c in cats {
            batch.remove(dkey(firm, *c));
            batch.insert(ekey(firm, *c), entry.as_bytes().to_vec());
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Records that erasures below log position `through` are applied (none concerned this
    /// store's data).
    pub fn erased_through(&self, through: u64) -> anyhow::Result<()> {
        if through > self.keys.erased_through() {
            self.keys.destroy(&[], through)?;
        }
        Ok(())
    }

    /// Stores one firm's data in one category (sealed under a fresh key if it was erased).
    pub fn put(&self, firm: &Uscc, c: Category, v: &Value) -> anyhow::Result<()> {
        let s = scope(firm, c);
        let sealed = self.keys.seal(&s, &canonical_json(v))?;
        let mut batch = sled::Batch::default();
        batch.insert(s.as_bytes(), sealed);
        batch.remove(ekey(firm, c));
        self.db.apply_batch(batch)?;
        self.tags
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add(firm);
        Ok(())
    }

    /// The released data for a query: `{category: value}` and the sorted ids of records in it
    /// (at most `max_ids`), or the requested categories that were erased.
    pub fn release(
        &self,
        firm: &Uscc,
        cats: &[Category],
        max_ids: usize,
    ) -> anyhow::Result<Release> {
        let mut erased = Vec::new();
        for &c in cats {
            if let Some(id) = self.erased(firm, c)? {
                erased.push((c, id));
            }
        }
        if !erased.is_empty() {
            return Ok(Release::Erased(erased));
        }
        let mut data = serde_json::Map::new();
        let mut ids = Vec::new();
        for &c in cats {
            let v = self.get(firm, c)?;
            if let Value::Array(items) = &v {
                for it in items {
                    if let Some(id) = it.get("id").and_then(Value::as_str) {
                        if let Ok(d) = Digest::from_hex(id) {
                            ids.push(d);
                        }
                    }
                }
            }
            data.insert(c.name().to_string(), v);
        }
        ids.sort();
        ids.dedup();
        ids.truncate(max_ids);
        Ok(Release::Data(Value::Object(data), ids))
    }

    /// Penalty records of `firm` (for publishing on the ledger).
    pub fn penalties(&self, firm: &Uscc) -> anyhow::Result<Vec<Publishable>> {
        let mut out = Vec::new();
        if let Value::Array(items) = self.get(firm, Category::Penalties)? {
            for it in items {
                let id = it.get("id").and_then(Value::as_str).unwrap_or_default();
                let Ok(id) = Digest::from_hex(id) else {
                    continue;
                };
                let severity = match it.get("severity").and_then(Value::as_str) {
                    Some("minor") => Severity::Minor,
                    Some("general") => Severity::General,
                    _ => Severity::Serious,
                };
                let days = it
                    .get("min_publicity_days")
                    .and_then(Value::as_u64)
                    .unwrap_or(1095) as u16;
                out.push(Publishable {
                    firm: *firm,
                    id,
                    category: Category::Penalties,
                    severity,
                    min_publicity_days: days,
                });
            }
        }
        Ok(out)
    }

    /// Fills the store with `firms` synthetic firms; firms in `repairable` get two minor
    /// penalties with a 0-day publicity period, so repairs can be requested at once.
    pub fn generate_sample(&self, firms: &[Uscc], repairable: usize) -> anyhow::Result<()> {
        self.db.remove(COMPLETE)?;
        let mut rng = rand::thread_rng();
        let scopes: Vec<String> = firms
            .iter()
            .flat_map(|f| Category::ALL.map(|c| scope(f, c)))
            .collect();
        self.keys.ensure(&scopes)?;
        let mut batch = sled::Batch::default();
        for (i, f) in firms.iter().enumerate() {
            let firm_data = sample_firm_data(&mut rng, f, i < repairable);
            for (c, v) in firm_data {
                batch.insert(
                    dkey(f, c),
                    self.keys.seal(&scope(f, c), &canonical_json(&v))?,
                );
            }
        }
        self.db.apply_batch(batch)?;
        {
            let mut idx = self.tags.write().unwrap_or_else(|e| e.into_inner());
            for f in firms {
                idx.add(f);
            }
        }
        self.db.insert(COMPLETE, b"1".to_vec())?;
        self.db.flush()?;
        Ok(())
    }

    /// Flushes to disk.
    pub fn flush(&self) -> anyhow::Result<()> {
        self.db.flush()?;
        Ok(())
    }
}

/// Gives an item its record id: the salted digest of its canonical JSON (without the id).
fn with_id(salt: [u8; 32], mut item: Value) -> Value {
    let id = hash::salted(&salt, &canonical_json(&item));
    if let Value::Object(m) = &mut item {
        m.insert("id".into(), Value::String(id.to_hex()));
    }
    item
}

fn date(rng: &mut impl Rng, from_year: u32, to_year: u32) -> String {
    format!(
        "{}-{:02}-{:02}",
        rng.gen_range(from_year..=to_year),
        rng.gen_range(1..=12),
        rng.gen_range(1..=28)
    )
}

fn sample_firm_data(rng: &mut impl Rng, firm: &Uscc, repairable: bool) -> Vec<(Category, Value)> {
    const PREFIX: [&str; 12] = [
        "珠江", "羊城", "天河", "越秀", "白云", "黄埔", "南沙", "番禺", "花城", "岭南", "穗港",
        "广信",
    ];
    const TRADE: [&str; 10] = [
        "科技", "贸易", "餐饮", "物流", "建材", "电子", "医药", "食品", "纺织", "咨询",
    ];
    const SURNAMES: [&str; 10] = ["陈", "李", "黄", "张", "梁", "林", "刘", "吴", "何", "郭"];
    const AUTHORITIES: [&str; 5] = [
        "广州市市场监督管理局",
        "广州市生态环境局",
        "国家税务总局广州市税务局",
        "广州市应急管理局",
        "广州市交通运输局",
    ];
    let pick = |rng: &mut dyn rand::RngCore, xs: &[&'static str]| -> &'static str {
        xs.choose(rng).copied().unwrap_or("")
    };
    let name = format!(
        "广州{}{}{}有限公司",
        pick(rng, &PREFIX),
        pick(rng, &TRADE),
        rng.gen_range(1..100)
    );
    let mut out = Vec::new();
    out.push((
        Category::Registration,
        json!({
            "name": name,
            "uscc": firm.as_str(),
            "legal_representative": format!("{}{}", pick(rng, &SURNAMES), pick(rng, &["伟", "芳", "强", "敏", "军", "丽"])),
            "registered_capital_cny": rng.gen_range(10u64..5000) * 10_000,
            "established": date(rng, 1995, 2024),
            "division_code": firm.division_code(),
            "status": if rng.gen_bool(0.95) { "active" } else { "deregistered" },
        }),
    ));
    let licences: Vec<Value> = (0..rng.gen_range(0..3))
        .map(|_| {
            with_id(rng.gen(),
                json!({
                    "licence": pick(rng, &["食品经营许可证", "道路运输经营许可证", "排污许可证", "药品经营许可证"]),
                    "authority": pick(rng, &AUTHORITIES),
                    "valid_until": date(rng, 2026, 2031),
                }),
            )
        })
        .collect();
    out.push((Category::Licences, Value::Array(licences)));
    let mut penalties: Vec<Value> = Vec::new();
    let n_pen = if repairable {
        2
    } else if rng.gen_bool(0.3) {
        rng.gen_range(1..3)
    } else {
        0
    };
    for k in 0..n_pen {
        let (sev, days) = if repairable {
            ("minor", 0u16)
        } else {
            match rng.gen_range(0..10) {
                0..=5 => ("minor", rng.gen_range(0..=90)),
                6..=8 => ("general", rng.gen_range(90..=365)),
                _ => ("serious", rng.gen_range(365..=1095)),
            }
        };
        penalties.push(with_id(rng.gen(),
            json!({
                "decision_no": format!("穗罚字〔2026〕{}号", rng.gen_range(100..99999) + k),
                "authority": pick(rng, &AUTHORITIES),
                "date": date(rng, 2023, 2026),
                "reason": pick(rng, &["未按规定公示年度报告", "超标排放", "未取得许可从事经营", "虚开发票", "安全生产隐患未整改"]),
                "fine_cny": rng.gen_range(1u64..200) * 1000,
                "severity": sev,
                "min_publicity_days": days,
            }),
        ));
    }
    out.push((Category::Penalties, Value::Array(penalties)));
    let abnormal: Vec<Value> = if rng.gen_bool(0.1) {
        vec![with_id(
            rng.gen(),
            json!({"reason": "通过登记的住所无法联系", "listed_on": date(rng, 2022, 2026), "removed_on": Value::Null}),
        )]
    } else {
        vec![]
    };
    out.push((Category::AbnormalList, Value::Array(abnormal)));
    let dishonest: Vec<Value> = if rng.gen_bool(0.02) {
        vec![with_id(
            rng.gen(),
            json!({"list": "严重违法失信名单", "authority": pick(rng, &AUTHORITIES), "listed_on": date(rng, 2022, 2026)}),
        )]
    } else {
        vec![]
    };
    out.push((Category::DishonestList, Value::Array(dishonest)));
    let judgments: Vec<Value> = (0..if rng.gen_bool(0.15) { rng.gen_range(1..3) } else { 0 })
        .map(|_| {
            with_id(rng.gen(),
                json!({
                    "case_no": format!("(2025)粤0106民初{}号", rng.gen_range(1000..99999)),
                    "court": pick(rng, &["广州市天河区人民法院", "广州市越秀区人民法院", "广州市中级人民法院"]),
                    "role": pick(rng, &["defendant", "plaintiff"]),
                    "amount_cny": rng.gen_range(1u64..500) * 1000,
                    "status": pick(rng, &["closed", "enforcing", "settled"]),
                }),
            )
        })
        .collect();
    out.push((Category::Judgments, Value::Array(judgments)));
    out.push((
        Category::Tax,
        json!({
            "credit_rating": pick(rng, &["A", "A", "B", "B", "M", "C", "D"]),
            "arrears_cny": if rng.gen_bool(0.1) { rng.gen_range(1u64..100) * 1000 } else { 0 },
            "annual_tax_paid_cny": rng.gen_range(1u64..2000) * 1000,
            "last_filing_month": format!("2026-{:02}", rng.gen_range(1..=10)),
        }),
    ));
    let employees = rng.gen_range(1u64..800);
    out.push((
        Category::SocialInsurance,
        json!({
            "insured_employees": employees,
            "arrears_months": if rng.gen_bool(0.1) { rng.gen_range(1..6) } else { 0 },
            "last_paid_month": format!("2026-{:02}", rng.gen_range(8..=10)),
        }),
    ));
    out.push((
        Category::HousingFund,
        json!({
            "contributing_employees": employees.saturating_sub(rng.gen_range(0..employees.max(1))),
            "arrears_months": if rng.gen_bool(0.08) { rng.gen_range(1..4) } else { 0 },
        }),
    ));
    out.push((
        Category::Utilities,
        json!({
            "water_arrears_cny": if rng.gen_bool(0.05) { rng.gen_range(100u64..5000) } else { 0 },
            "electricity_arrears_cny": if rng.gen_bool(0.05) { rng.gen_range(100u64..20000) } else { 0 },
            "gas_arrears_cny": if rng.gen_bool(0.03) { rng.gen_range(100u64..3000) } else { 0 },
            "late_payments_12m": rng.gen_range(0..4),
        }),
    ));
    out
}

//! Post-loan monitoring on the agency node: turns committed triggers about monitored firms into
//! alerts, logs them on the ledger (`alerts_delivered`) and releases them only after that entry
//! is committed, to the bank's pull stream and its optional webhook.
//!
//! The scanner follows the committed log. For each trigger entry the state recorded (a credit
//! record, grade, broken commitment or repair step about a firm with a monitoring consent) it
//! asks the ledger rule `State::check_alert` for every monitoring consent of that firm, builds
//! the alert content from the entry and the agency's data, and writes it as *pending* to its own
//! sled database (content, salt, digest) before submitting one batch entry per (bank, firm).
//! Only when the batch is committed does an alert get a sequence number in the bank's stream —
//! the stream and the webhooks never see a pending alert. A restart re-reads the pending alerts:
//! those the ledger shows delivered are released, the others submitted again; the scan resumes
//! from its persisted cursor and the ledger refuses a second delivery of the same alert id.
//!
//! Bounds: per bank a backlog cap (released alerts not yet acknowledged by the bank's `after`
//! cursor or its webhook) and an alert rate (token bucket); an alert over either bound is not
//! produced at all (neither logged nor released) and counted, and the bank's stream reports how
//! many it missed. Webhooks run as separate tasks reading the persisted stream, so a slow or
//! dead receiver delays only its own deliveries. Not here: the HTTP routes (`api::alerts`), the
//! rules (`xinyi_ledger::state`).

use crate::datastore::{alert_scope, canonical_json, AgencyData};
use crate::engine::{Engine, SubmitError};
use crate::metrics::Metrics;
use crate::sealed::Unsealed;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xinyi_ledger::hash::{self, Digest};
use xinyi_ledger::monitor::{alert_id, Alert, AlertBatch, MonitorCategory, MAX_ALERTS};
use xinyi_ledger::state::{trigger_category, StateError};
use xinyi_ledger::{Entry, EntryKind, FirmTag, KeyPair, OrgId};

/// Monitoring settings (`[monitor]` in the config; `--webhook` in dev mode).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Released alerts a bank may leave unacknowledged; beyond it new alerts are not produced.
    pub backlog_cap: u64,
    /// Alerts per second per bank (token bucket of one second's worth); 0 = unlimited.
    pub rate_per_sec: u32,
    /// Webhook URL per bank (signed HTTP POST of each alert).
    pub webhooks: BTreeMap<String, String>,
    /// Attempts per alert before a webhook gives up on it (it stays in the pull stream).
    pub webhook_max_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub webhook_backoff_ms: u64,
    /// Longest retry delay.
    pub webhook_max_backoff_ms: u64,
    /// Timeout of one webhook POST.
    pub webhook_timeout_ms: u64,
    /// How often the scanner looks for newly committed blocks.
    pub poll_ms: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            backlog_cap: 10_000,
            rate_per_sec: 1_000,
            webhooks: BTreeMap::new(),
            webhook_max_attempts: 50,
            webhook_backoff_ms: 100,
            webhook_max_backoff_ms: 5_000,
            webhook_timeout_ms: 5_000,
            poll_ms: 20,
        }
    }
}

/// An alert the monitor holds: pending until its batch commits, then released with its entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredAlert {
    /// Sequence number in the bank's stream (0 while pending).
    pub seq: u64,
    /// Alert id (webhook idempotency key).
    pub id: Digest,
    /// The bank.
    pub bank: OrgId,
    /// The firm's tag.
    pub tag: FirmTag,
    /// The consent.
    pub consent: Digest,
    /// Category.
    pub category: MonitorCategory,
    /// Trigger entry id and position.
    pub trigger: Digest,
    /// Trigger position.
    pub trigger_position: u64,
    /// What the bank is sent.
    pub content: Value,
    /// Salt of the content digest (hex).
    pub salt: String,
    /// `salted(salt, canonical JSON of content)`.
    pub content_digest: Digest,
    /// The `alerts_delivered` entry (released alerts).
    pub entry: Option<EntryRef>,
    /// Node time of the release (ms).
    pub released_at: u64,
}

/// Where an alert was logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryRef {
    /// Entry id.
    pub id: Digest,
    /// Log position.
    pub position: u64,
    /// Block height.
    pub height: u64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The agency's monitor: its store, settings and the stream notifier.
pub struct Monitor {
    db: sled::Db,
    engine: Engine,
    data: AgencyData,
    cfg: MonitorConfig,
    key: KeyPair,
    released: tokio::sync::watch::Sender<u64>,
    buckets: Mutex<BTreeMap<OrgId, Bucket>>,
    /// Serialises releases: sequence numbers are assigned and written one release at a time
    /// (batches commit concurrently).
    release_lock: Mutex<()>,
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn read_u64(v: Option<sled::IVec>) -> u64 {
    v.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_be_bytes)
}

fn stream_key(bank: &OrgId, seq: u64) -> Vec<u8> {
    let mut k = bank.as_str().as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&be(seq));
    k
}

type Res<T> = anyhow::Result<T>;

/// Prefix of a stored alert's sealed content.
const SEALED_CONTENT: &str = "sealed:";

impl Monitor {
    /// Opens the monitor's store in `dir`.
    pub fn open(
        dir: &Path,
        engine: Engine,
        data: AgencyData,
        key: KeyPair,
        cfg: MonitorConfig,
    ) -> Res<Arc<Monitor>> {
        let db = sled::open(dir)
            .map_err(|e| anyhow::anyhow!("opening the monitor store {}: {e}", dir.display()))?;
        for bank in cfg.webhooks.keys() {
            OrgId::new(bank).map_err(|e| anyhow::anyhow!("[monitor] webhooks: {e}"))?;
        }
        let (released, _) = tokio::sync::watch::channel(0);
        Ok(Arc::new(Monitor {
            db,
            engine,
            data,
            cfg,
            key,
            released,
            buckets: Mutex::default(),
            release_lock: Mutex::default(),
        }))
    }

    /// Starts the scanner and one task per webhook. Must run inside a tokio runtime.
    pub fn spawn(self: &Arc<Self>) {
        let m = self.clone();
        tokio::spawn(async move { m.scan_loop().await });
        for (bank, url) in &self.cfg.webhooks {
            let Ok(bank) = OrgId::new(bank) else { continue };
            let m = self.clone();
            let url = url.clone();
            tokio::spawn(async move { m.webhook_loop(bank, url).await });
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A receiver notified whenever alerts are released.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.released.subscribe()
    }

    fn tree(&self, name: &str) -> Res<sled::Tree> {
        Ok(self.db.open_tree(name)?)
    }

    /// Last sequence number released to `bank`.
    pub fn last_seq(&self, bank: &OrgId) -> Res<u64> {
        Ok(read_u64(self.tree("seq")?.get(bank.as_str())?))
    }

    /// Alerts not produced for `bank` because of its backlog cap or rate limit.
    pub fn dropped(&self, bank: &OrgId) -> Res<u64> {
        Ok(read_u64(self.tree("dropped")?.get(bank.as_str())?))
    }

    /// Released alerts of `bank` after sequence `after`, at most `limit`; records `after` as
    /// the bank's acknowledgement.
    pub fn alerts_after(&self, bank: &OrgId, after: u64, limit: usize) -> Res<Vec<StoredAlert>> {
        let acks = self.tree("acks")?;
        let k = format!("pull/{bank}");
        if after > read_u64(acks.get(&k)?) {
            acks.insert(k, &be(after))?;
        }
        let t = self.tree("alerts")?;
        let mut out = Vec::new();
        for kv in t.range(stream_key(bank, after.saturating_add(1))..stream_key(bank, u64::MAX)) {
            let (_, v) = kv?;
            out.push(self.decode_alert(&v)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Released alerts not yet acknowledged by `bank` (pull cursor or webhook).
    fn backlog(&self, bank: &OrgId) -> Res<u64> {
        let acks = self.tree("acks")?;
        let ack = read_u64(acks.get(format!("pull/{bank}"))?)
            .max(read_u64(acks.get(format!("hook/{bank}"))?));
        Ok(self.last_seq(bank)?.saturating_sub(ack))
    }

    fn count_dropped(&self, bank: &OrgId) -> Res<()> {
        let t = self.tree("dropped")?;
        let n = read_u64(t.get(bank.as_str())?) + 1;
        t.insert(bank.as_str(), &be(n))?;
        Ok(())
    }

    /// Takes one alert token for `bank`.
    fn take_token(&self, bank: &OrgId) -> bool {
        let rate = self.cfg.rate_per_sec;
        if rate == 0 {
            return true;
        }
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let bucket = b.entry(bank.clone()).or_insert(Bucket {
            tokens: f64::from(rate),
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * f64::from(rate);
        bucket.tokens = (bucket.tokens + refill).min(f64::from(rate));
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn metrics(&self) -> &Metrics {
        self.engine.metrics()
    }

    async fn scan_loop(self: Arc<Self>) {
        let poll = Duration::from_millis(self.cfg.poll_ms.max(1));
        loop {
            match self.clone().scan_once().await {
                Ok(true) => continue,
                Ok(false) => tokio::time::sleep(poll).await,
                Err(e) => {
                    tracing::warn!("monitor: {e:#}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// One round: recover pending alerts, scan newly committed entries, submit, release.
    /// Returns whether it did any work.
    async fn scan_once(self: Arc<Self>) -> Res<bool> {
        let m = self.clone();
        let (work, end) = tokio::task::spawn_blocking(move || m.collect()).await??;
        let busy = !work.is_empty() || end.is_some();
        let mut batches: BTreeMap<(OrgId, FirmTag), Vec<StoredAlert>> = BTreeMap::new();
        for a in work {
            batches.entry((a.bank.clone(), a.tag)).or_default().push(a);
        }
        let mut jobs = Vec::new();
        for ((bank, tag), mut alerts) in batches {
            alerts.sort_by_key(|a| a.id);
            for chunk in alerts.chunks(MAX_ALERTS) {
                jobs.push(self.submit(bank.clone(), tag, chunk.to_vec()));
            }
        }
        let results = futures::future::join_all(jobs).await;
        let mut retry = false;
        for r in results {
            retry |= r?;
        }
        if let Some(end) = end {
            if !retry {
                self.tree("meta")?.insert("cursor", &be(end))?;
            }
        }
        Ok(busy && !retry)
    }

    /// Submits one batch; on commit releases its alerts. A refusal of the batch is retried
    /// alert by alert (one revoked consent must not hold back the others). Returns true if the
    /// batch must be retried later (node busy).
    async fn submit(
        self: &Arc<Self>,
        bank: OrgId,
        tag: FirmTag,
        alerts: Vec<StoredAlert>,
    ) -> Res<bool> {
        let kind = EntryKind::AlertsDelivered(AlertBatch {
            bank: bank.clone(),
            firm: tag,
            alerts: alerts
                .iter()
                .map(|a| Alert {
                    alert: a.id,
                    consent: a.consent,
                    trigger: a.trigger,
                    position: a.trigger_position,
                    category: a.category,
                    content: a.content_digest,
                })
                .collect(),
        });
        let entry = self.engine.sign_own(kind)?;
        match self.engine.enqueue(entry).await {
            Ok(c) => {
                let r = EntryRef {
                    id: c.id,
                    position: c.position,
                    height: c.height,
                };
                let m = self.clone();
                tokio::task::spawn_blocking(move || m.release(alerts, r)).await??;
                Ok(false)
            }
            Err(SubmitError::Dropped(StateError::AlertNotAuthorized(reason))) => {
                if alerts.len() == 1 {
                    tracing::info!(
                        "monitor: alert {} to {bank} refused by the ledger ({})",
                        alerts[0].id,
                        reason.code()
                    );
                    Metrics::inc(&self.metrics().alerts_refused);
                    self.tree("pending")?.remove(alerts[0].id.as_bytes())?;
                    return Ok(false);
                }
                let mut retry = false;
                for a in alerts {
                    retry |= Box::pin(self.submit(bank.clone(), tag, vec![a])).await?;
                }
                Ok(retry)
            }
            Err(SubmitError::MempoolFull) | Err(SubmitError::Unavailable(_)) => Ok(true),
            Err(e) => {
                tracing::warn!("monitor: a batch for {bank} was not committed: {e}");
                Ok(true)
            }
        }
    }

    /// Gives committed alerts their sequence numbers in the bank's stream (blocking).
    fn release(&self, alerts: Vec<StoredAlert>, entry: EntryRef) -> Res<()> {
        let _one_at_a_time = self.release_lock.lock().unwrap_or_else(|e| e.into_inner());
        let seq_t = self.tree("seq")?;
        let stream = self.tree("alerts")?;
        let pending = self.tree("pending")?;
        let now = self.engine.now();
        for mut a in alerts {
            let seq = read_u64(seq_t.get(a.bank.as_str())?) + 1;
            a.seq = seq;
            a.entry = Some(entry.clone());
            a.released_at = now;
            stream.insert(stream_key(&a.bank, seq), self.encode_alert(&a)?)?;
            seq_t.insert(a.bank.as_str(), &be(seq))?;
            pending.remove(a.id.as_bytes())?;
            self.metrics()
                .alerts_delivered
                .fetch_add(1, Ordering::Relaxed);
        }
        self.db.flush()?;
        self.released.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Blocking part of a round: pending alerts to resubmit (releasing those already on the
    /// ledger), then new alerts from the entries committed since the cursor. Returns the
    /// alerts to submit and the new cursor.
    fn collect(&self) -> Res<(Vec<StoredAlert>, Option<u64>)> {
        let pending = self.tree("pending")?;
        let mut work: Vec<StoredAlert> = Vec::new();
        let mut pending_ids = std::collections::BTreeSet::new();
        for kv in pending.iter() {
            let (_, v) = kv?;
            let a = self.decode_alert(&v)?;
            pending_ids.insert(a.id);
            let delivered = self.engine.lock().chain.state().alert_delivery(&a.id);
            match delivered {
                Some(eid) => {
                    // Committed before a restart: release it now.
                    let store = self.engine.store();
                    if let Some(pos) = store.position_of(&eid)? {
                        let height = store.height_of_position(pos)?.unwrap_or(0);
                        self.release(
                            vec![a],
                            EntryRef {
                                id: eid,
                                position: pos,
                                height,
                            },
                        )?;
                    }
                }
                None => work.push(a),
            }
        }
        let cursor = read_u64(self.tree("meta")?.get("cursor")?);
        let durable = self.engine.lock().durable_size;
        if cursor >= durable {
            return Ok((work, None));
        }
        let end = durable.min(cursor + 2_048);
        let store = self.engine.store().clone();
        let now = self.engine.now();
        let mut fresh = Vec::new();
        for pos in cursor..end {
            let Some(bytes) = store.entry(pos)? else {
                continue;
            };
            let e = Entry::decode(&bytes)?;
            if trigger_category(&e.body.kind).is_none() {
                continue;
            }
            let candidates = {
                let core = self.engine.lock();
                let st = core.chain.state();
                let Some(t) = st.trigger(&e.id)? else {
                    continue;
                };
                let mut out = Vec::new();
                for cid in st.monitoring_consents(&t.firm) {
                    let Some(c) = st.consent(&cid)? else { continue };
                    let a = Alert {
                        alert: alert_id(&cid, &e.id),
                        consent: cid,
                        trigger: e.id,
                        position: pos,
                        category: t.category,
                        content: Digest([0; 32]),
                    };
                    if pending_ids.contains(&a.alert) {
                        continue;
                    }
                    if st.check_alert(&c.consent.bank, &t.firm, &a, now).is_ok() {
                        out.push((c.consent.bank.clone(), t, a));
                    }
                }
                out
            };
            for (bank, t, a) in candidates {
                if self.backlog(&bank)? >= self.cfg.backlog_cap {
                    Metrics::inc(&self.metrics().alerts_backlog_full);
                    self.count_dropped(&bank)?;
                    continue;
                }
                if !self.take_token(&bank) {
                    Metrics::inc(&self.metrics().alerts_rate_limited);
                    self.count_dropped(&bank)?;
                    continue;
                }
                let content = self.content(&e, pos, &bank, &t.firm, &a)?;
                let salt: [u8; 32] = rand::random();
                let digest = hash::salted(&salt, &canonical_json(&content));
                let s = StoredAlert {
                    seq: 0,
                    id: a.alert,
                    bank,
                    tag: t.firm,
                    consent: a.consent,
                    category: a.category,
                    trigger: a.trigger,
                    trigger_position: pos,
                    content,
                    salt: hex::encode(salt),
                    content_digest: digest,
                    entry: None,
                    released_at: 0,
                };
                pending.insert(s.id.as_bytes(), self.encode_alert(&s)?)?;
                fresh.push(s);
            }
        }
        if !fresh.is_empty() {
            pending.flush()?;
        }
        work.extend(fresh);
        Ok((work, Some(end)))
    }

    /// The stored form of an alert: its JSON with the content sealed under the firm's alert key
    /// (`"content": "sealed:<base64>"`), so erasing the firm's data erases its stored alerts.
    fn encode_alert(&self, a: &StoredAlert) -> Res<Vec<u8>> {
        use base64::Engine as _;
        let sealed = self
            .data
            .seal(&alert_scope(&a.tag), &serde_json::to_vec(&a.content)?)?;
        let mut stored = a.clone();
        stored.content = Value::String(format!(
            "{SEALED_CONTENT}{}",
            base64::engine::general_purpose::STANDARD.encode(sealed)
        ));
        Ok(serde_json::to_vec(&stored)?)
    }

    /// An alert as stored; once the firm's data is erased its content reads
    /// `{"erased": true, "code": "data.erased"}`.
    fn decode_alert(&self, v: &[u8]) -> Res<StoredAlert> {
        use base64::Engine as _;
        let mut a: StoredAlert = serde_json::from_slice(v)?;
        let sealed = match &a.content {
            Value::String(t) => t.strip_prefix(SEALED_CONTENT).map(str::to_owned),
            _ => None,
        };
        if let Some(b) = sealed {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b)?;
            a.content = match self.data.unseal(&alert_scope(&a.tag), &bytes)? {
                Unsealed::Plain(p) => serde_json::from_slice(&p)?,
                Unsealed::Erased => json!({"erased": true, "code": "data.erased"}),
            };
        }
        Ok(a)
    }

    /// The alert content: what changed, from the trigger entry and the agency's own data.
    fn content(&self, e: &Entry, pos: u64, bank: &OrgId, firm: &FirmTag, a: &Alert) -> Res<Value> {
        let store = self.engine.store();
        let height = store.height_of_position(pos)?.unwrap_or(0);
        let time = store.header(height)?.map_or(0, |h| h.time);
        let uscc = self.data.firm_by_tag(firm);
        let details = match &e.body.kind {
            EntryKind::CreditRecordPublished(r) => {
                let item = match &uscc {
                    Some(u) => match self.data.get(u, r.category)? {
                        Value::Array(items) => items
                            .into_iter()
                            .find(|i| {
                                i.get("id").and_then(Value::as_str) == Some(&r.record.to_hex())
                            })
                            .unwrap_or(Value::Null),
                        _ => Value::Null,
                    },
                    None => Value::Null,
                };
                json!({"record": r.record, "category": r.category, "severity": r.severity,
                       "min_publicity_days": r.min_publicity_days, "data": item})
            }
            EntryKind::GradeAssigned { domain, grade, .. } => {
                json!({"domain": domain, "grade": grade})
            }
            EntryKind::CommitmentBroken {
                commitment,
                finding,
            } => json!({"commitment": commitment, "finding": finding}),
            EntryKind::RepairRequested { record, .. } => {
                json!({"step": "requested", "repair": e.id, "record": record})
            }
            EntryKind::RepairDecided {
                repair,
                approved,
                reason,
            } => {
                json!({"step": "decided", "repair": repair, "approved": approved, "reason": reason})
            }
            EntryKind::RepairApplied { repair } => {
                let by = match &e.body.author {
                    xinyi_ledger::entry::Author::Org(o) => o.to_string(),
                    xinyi_ledger::entry::Author::Firm(_) => String::new(),
                };
                json!({"step": "applied", "repair": repair, "registry": by})
            }
            _ => Value::Null,
        };
        Ok(json!({
            "alert": a.alert,
            "bank": bank,
            "firm": uscc.map(|u| u.to_string()),
            "tag": firm,
            "consent": a.consent,
            "category": a.category,
            "trigger": {"id": e.id, "position": pos, "kind": e.body.kind.name(),
                        "height": height, "time": time},
            "details": details,
        }))
    }

    /// The JSON a bank receives for a released alert: the alert, its content and salt, and its
    /// log entry with an inclusion proof in the latest final checkpoint that covers it (else in
    /// the current one).
    pub fn answer(&self, a: &StoredAlert) -> Res<Value> {
        use base64::Engine as _;
        let entry = a
            .entry
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("alert {} is not released", a.id))?;
        let bytes = self
            .engine
            .store()
            .entry(entry.position)?
            .ok_or_else(|| anyhow::anyhow!("entry {} is not stored", entry.position))?;
        let (proof, checkpoint) = {
            let core = self.engine.lock();
            let (size, checkpoint) = core.read_checkpoint(entry.position);
            let proof = core.chain.log().inclusion_proof(entry.position, size)?;
            (proof, checkpoint)
        };
        Ok(json!({
            "seq": a.seq,
            "id": a.id,
            "bank": a.bank,
            "tag": a.tag,
            "consent": a.consent,
            "category": a.category,
            "trigger": {"id": a.trigger, "position": a.trigger_position},
            "content": a.content,
            "salt": a.salt,
            "content_digest": a.content_digest,
            "released_at": a.released_at,
            "entry": {
                "id": entry.id,
                "position": entry.position,
                "height": entry.height,
                "entry": base64::engine::general_purpose::STANDARD.encode(&bytes),
                "inclusion_proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
                "checkpoint": checkpoint,
            },
        }))
    }

    /// The signature header of a webhook body: `<org>;<hex ed25519 signature>` over
    /// `"xinyi/v1/sig/webhook" ‖ 0x00 ‖ chain id ‖ body`.
    pub fn webhook_signature(&self, body: &[u8]) -> String {
        use ed25519_dalek::Signer as _;
        let mut msg = b"xinyi/v1/sig/webhook\0".to_vec();
        msg.extend_from_slice(self.engine.chain_id().as_bytes());
        msg.extend_from_slice(body);
        let sig = self.key.signing_key().sign(&msg);
        format!("{};{}", self.engine.org(), hex::encode(sig.to_bytes()))
    }

    async fn webhook_loop(self: Arc<Self>, bank: OrgId, url: String) {
        let mut rx = self.subscribe();
        let mut attempts: u32 = 0;
        loop {
            let m = self.clone();
            let b = bank.clone();
            let next = tokio::task::spawn_blocking(move || -> Res<Option<(StoredAlert, Value)>> {
                let ack = read_u64(m.tree("acks")?.get(format!("hook/{b}"))?);
                let t = m.tree("alerts")?;
                let Some(kv) = t
                    .range(stream_key(&b, ack.saturating_add(1))..stream_key(&b, u64::MAX))
                    .next()
                else {
                    return Ok(None);
                };
                let (_, v) = kv?;
                let a = m.decode_alert(&v)?;
                let body = m.answer(&a)?;
                Ok(Some((a, body)))
            })
            .await;
            let next = match next {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    tracing::warn!("monitor webhook {bank}: {e:#}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(_) => return,
            };
            let Some((a, body)) = next else {
                let _ = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
                continue;
            };
            let text = body.to_string();
            let sig = self.webhook_signature(text.as_bytes());
            let timeout = Duration::from_millis(self.cfg.webhook_timeout_ms.max(1));
            let (u, id) = (url.clone(), a.id.to_hex());
            Metrics::inc(&self.metrics().webhook_attempts);
            let ok = tokio::task::spawn_blocking(move || {
                crate::tls::peer_agent_builder()
                    .timeout(timeout)
                    .build()
                    .post(&u)
                    .set("content-type", "application/json")
                    .set("idempotency-key", &id)
                    .set("x-xinyi-signature", &sig)
                    .send_string(&text)
                    .is_ok()
            })
            .await
            .unwrap_or(false);
            let give_up = !ok && attempts + 1 >= self.cfg.webhook_max_attempts.max(1);
            if ok || give_up {
                if ok {
                    Metrics::inc(&self.metrics().webhook_delivered);
                } else {
                    tracing::warn!("monitor webhook {bank}: giving up on alert {} after {} attempts (it stays in the pull stream)", a.id, attempts + 1);
                    Metrics::inc(&self.metrics().webhook_gave_up);
                }
                attempts = 0;
                let m = self.clone();
                let k = format!("hook/{bank}");
                let seq = a.seq;
                let _ = tokio::task::spawn_blocking(move || -> Res<()> {
                    let acks = m.tree("acks")?;
                    acks.insert(k, &be(seq))?;
                    acks.flush()?;
                    Ok(())
                })
                .await;
            } else {
                Metrics::inc(&self.metrics().webhook_failures);
                let delay = self
                    .cfg
                    .webhook_backoff_ms
                    .saturating_mul(1u64 << attempts.min(20))
                    .min(self.cfg.webhook_max_backoff_ms);
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
        }
    }
}

//! `xinyi query` (a bank's authorized query: the data is accepted only with a logged,
//! included query record matching the request and the response digest; `--batch FILE` sends
//! many in one request and checks each answer the same way) and `xinyi queries`
//! (the list of a bank's queries and denials).

use crate::cmd::args::{categories_arg, digest_arg, entry_bytes, org_arg};
use crate::cmd::ctx::Ctx;
use crate::cmd::output::{human, out, out_json};
use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use xinyi_client::api::{ApiError, EntryAnswer, WriteAnswer};
use xinyi_client::proof::{self, Trust};
use xinyi_client::signer::{parse_uscc, Signer};
use xinyi_ledger::entry::{Entry, EntryKind, QueryRequest, SignedQueryRequest};
use xinyi_ledger::hash::Digest;
use xinyi_ledger::FirmTag;

#[derive(Deserialize)]
struct QueryOk<'a> {
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
    salt: String,
    response_digest: Digest,
    record: WriteAnswer,
}

/// The firm tag of a consent the signing bank can read (the request names the firm by tag).
fn consent_firm(ctx: &Ctx, signer: &Signer, consent: &Digest) -> Result<FirmTag> {
    let c: Value = match ctx.get_signed(signer, &format!("/v1/consents/{consent}")) {
        Ok(c) => c,
        Err(e) if e.downcast_ref::<ApiError>().is_some_and(|a| a.status == 404) => bail!(
            "consent.unknown: the ledger has no consent {consent}, so there is no firm to query (nothing was sent or recorded)"
        ),
        Err(e) => return Err(e),
    };
    let f = c.get("firm").and_then(Value::as_str).unwrap_or_default();
    FirmTag::from_hex(f).map_err(|e| anyhow!("the consent's firm tag: {e}"))
}

/// A served answer checked end to end: the data matches the logged digest, the logged entry is
/// a `QueryServed` of exactly `signed` with that digest, and it is in the signed checkpoint.
fn verify_served(
    ctx: &Ctx,
    signer: &Signer,
    trust: &Trust,
    signed: &SignedQueryRequest,
    answer: &str,
) -> Result<(Value, Value)> {
    let ok: QueryOk<'_> = serde_json::from_str(answer)
        .map_err(|e| anyhow!("the node's query answer is not as specified: {e}"))?;
    let data: Value = serde_json::from_str(ok.data.get())
        .map_err(|e| anyhow!("the node's query data is not JSON: {e}"))?;
    // 1. The data matches the digest that was logged.
    proof::verify_response_digest(ok.data.get(), &data, &ok.salt, &ok.response_digest)?;
    // 2. The logged entry is a QueryServed of exactly this request with that digest.
    let ea: EntryAnswer = ctx.get_signed(signer, &format!("/v1/entries/{}", ok.record.position))?;
    let bytes = entry_bytes(&ea)?;
    let entry = Entry::decode(&bytes).map_err(|e| anyhow!("{}: {e}", e.code()))?;
    if entry.id != ok.record.id {
        bail!(
            "query.record_mismatch: entry at position {} is not the query record",
            ok.record.position
        );
    }
    match &entry.body.kind {
        EntryKind::QueryServed(q) if q.request == *signed && q.response == ok.response_digest => {}
        _ => bail!("query.record_mismatch: the logged query record does not match this request and response"),
    }
    // 3. That entry is in the signed checkpoint the node returned.
    let inc = ctx.verify_entry(
        trust,
        &entry.bytes,
        ok.record.position,
        &ok.record.inclusion_proof,
        &ok.record.checkpoint,
    )?;
    let human_text = format!(
        "query served: record {} at log position {} in block {}\n{}verified: response digest matches the logged record\n{}",
        ok.record.id,
        ok.record.position,
        ok.record.height,
        human(&data, 2),
        inc
    );
    let json = json!({
        "data": data,
        "salt": ok.salt,
        "response_digest": ok.response_digest,
        "record": ok.record,
        "verified": {"position": inc.position, "checkpoint_size": inc.size, "response_digest": true},
    });
    Ok((json, Value::String(human_text)))
}

pub fn query(ctx: &Ctx, consent: &str, firm: Option<&str>, categories: &str) -> Result<()> {
    let firm = firm.map(parse_uscc).transpose()?;
    let consent = digest_arg("consent id", consent)?;
    let categories = categories_arg(categories)?;
    let signer = ctx.signer()?;
    let bank = signer.org("a query")?;
    // The ledger names the firm by tag: the request carries the consent's firm tag (a bank
    // reads its own consents). A --firm USCC is only validated here; the agency maps the tag.
    let _ = firm;
    let firm = consent_firm(ctx, &signer, &consent)?;
    let h = ctx.health()?;
    let signed = signer.query(
        &h.chain_id,
        QueryRequest {
            bank,
            firm,
            consent,
            categories,
            nonce: rand::random(),
            time: h.time_ms,
        },
    )?;
    let body = json!({ "request": signed });
    let text = match ctx.api.post_text("/v1/queries", &body) {
        Ok(t) => t,
        Err(e) => {
            if let Some(api) = e.downcast_ref::<ApiError>() {
                if let Some(d) = api.body.get("denial") {
                    let pos = d.get("position").and_then(Value::as_u64);
                    if ctx.json {
                        out_json(&api.body);
                    }
                    return Err(anyhow!(
                        "{}{}",
                        api,
                        pos.map(|p| format!("; denial recorded at log position {p}"))
                            .unwrap_or_default()
                    ));
                }
            }
            return Err(e);
        }
    };
    let trust = ctx.trust(Some(&h))?;
    let (json, text) = verify_served(ctx, &signer, &trust, &signed, &text)?;
    if ctx.json {
        out_json(&json);
    } else {
        out(text.as_str().unwrap_or_default());
    }
    Ok(())
}

/// One line of a `query --batch` file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchLine {
    consent: String,
    categories: String,
}

/// Most lines in one `query --batch` file: the node's batch limit.
const MAX_BATCH: usize = 256;

/// `xinyi query --batch FILE`: every line `{"consent": ID, "categories": "a,b"}` signed as one
/// request, all sent in one `POST /v1/queries/batch`, every served answer verified as `query`
/// verifies one. Prints one result per line; fails (after printing them) if any was refused.
pub fn query_batch(ctx: &Ctx, file: &std::path::Path) -> Result<()> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
    let lines: Vec<BatchLine> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                anyhow!(
                    "{}:{}: not a batch line {{\"consent\": ID, \"categories\": \"a,b\"}}: {e}",
                    file.display(),
                    i + 1
                )
            })
        })
        .collect::<Result<_>>()?;
    if lines.is_empty() || lines.len() > MAX_BATCH {
        bail!(
            "batch.size: {} holds {} queries; a batch is 1 to {MAX_BATCH}",
            file.display(),
            lines.len()
        );
    }
    let signer = ctx.signer()?;
    let bank = signer.org("a query")?;
    let h = ctx.health()?;
    let mut firms = std::collections::BTreeMap::new();
    let mut signed = Vec::with_capacity(lines.len());
    for l in &lines {
        let consent = digest_arg("consent id", &l.consent)?;
        let categories = categories_arg(&l.categories)?;
        let firm = match firms.get(&consent) {
            Some(f) => *f,
            None => *firms
                .entry(consent)
                .or_insert(consent_firm(ctx, &signer, &consent)?),
        };
        signed.push(signer.query(
            &h.chain_id,
            QueryRequest {
                bank: bank.clone(),
                firm,
                consent,
                categories,
                nonce: rand::random(),
                time: h.time_ms,
            },
        )?);
    }
    let answer = ctx
        .api
        .post_text("/v1/queries/batch", &json!({ "requests": signed }))?;
    #[derive(Deserialize)]
    struct Batch<'a> {
        #[serde(borrow)]
        results: Vec<&'a serde_json::value::RawValue>,
    }
    let batch: Batch<'_> = serde_json::from_str(&answer)
        .map_err(|e| anyhow!("the node's batch answer is not as specified: {e}"))?;
    if batch.results.len() != signed.len() {
        bail!(
            "query.batch_mismatch: {} results for {} requests",
            batch.results.len(),
            signed.len()
        );
    }
    let trust = ctx.trust(Some(&h))?;
    let (mut all, mut texts, mut refused) = (Vec::new(), String::new(), Vec::new());
    for (i, (raw, sq)) in batch.results.iter().zip(&signed).enumerate() {
        let v: Value = serde_json::from_str(raw.get())?;
        if v.get("status").and_then(Value::as_u64) == Some(200) {
            let (json, text) = verify_served(ctx, &signer, &trust, sq, raw.get())?;
            texts += &format!("[{}] {}\n", i + 1, text.as_str().unwrap_or_default());
            all.push(json);
        } else {
            let code = v.get("code").and_then(Value::as_str).unwrap_or("api.error");
            let msg = v.get("message").and_then(Value::as_str).unwrap_or_default();
            let pos = v
                .get("denial")
                .and_then(|d| d.get("position"))
                .and_then(Value::as_u64);
            texts += &format!(
                "[{}] refused: {code}: {msg}{}\n",
                i + 1,
                pos.map(|p| format!(" (denial recorded at log position {p})"))
                    .unwrap_or_default()
            );
            refused.push(code.to_string());
            all.push(v);
        }
    }
    if ctx.json {
        out_json(&json!({ "results": all }));
    } else {
        out(texts.trim_end());
    }
    if let Some(first) = refused.first() {
        bail!(
            "{first}: {} of {} queries refused (see the results above)",
            refused.len(),
            signed.len()
        );
    }
    Ok(())
}

/// Every query and denial of `bank` (default: the signer's organisation).
pub fn queries(ctx: &Ctx, bank: Option<String>) -> Result<()> {
    let signer = ctx.signer()?;
    let bank = match bank {
        Some(b) => org_arg("--bank", &b)?,
        None => signer.org("a bank's query list")?,
    };
    let v: Value = ctx.get_signed(&signer, &format!("/v1/banks/{bank}/queries"))?;
    ctx.show(&v);
    Ok(())
}

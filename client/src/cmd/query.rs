//! `xinyi query` (a bank's authorized query: the data is accepted only with a logged,
//! included query record matching the request and the response digest) and `xinyi queries`
//! (the list of a bank's queries and denials).

use crate::cmd::args::{categories_arg, digest_arg, entry_bytes, org_arg};
use crate::cmd::ctx::Ctx;
use crate::cmd::output::{human, out, out_json};
use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use xinyi_client::api::{ApiError, EntryAnswer, WriteAnswer};
use xinyi_client::proof;
use xinyi_client::signer::parse_uscc;
use xinyi_ledger::entry::{Entry, EntryKind, QueryRequest};
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

pub fn query(ctx: &Ctx, consent: &str, firm: Option<&str>, categories: &str) -> Result<()> {
    let firm = firm.map(parse_uscc).transpose()?;
    let consent = digest_arg("consent id", consent)?;
    let categories = categories_arg(categories)?;
    let signer = ctx.signer()?;
    let bank = signer.org("a query")?;
    // The ledger names the firm by tag: the request carries the consent's firm tag (a bank
    // reads its own consents). A --firm USCC is only validated here; the agency maps the tag.
    let _ = firm;
    let firm = {
        let c: Value = match ctx.get_signed(&signer, &format!("/v1/consents/{consent}")) {
            Ok(c) => c,
            Err(e) if e.downcast_ref::<ApiError>().is_some_and(|a| a.status == 404) => bail!(
                "consent.unknown: the ledger has no consent {consent}, so there is no firm to query (nothing was sent or recorded)"
            ),
            Err(e) => return Err(e),
        };
        let f = c.get("firm").and_then(Value::as_str).unwrap_or_default();
        FirmTag::from_hex(f).map_err(|e| anyhow!("the consent's firm tag: {e}"))?
    };
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
    let ok: QueryOk<'_> = serde_json::from_str(&text)
        .map_err(|e| anyhow!("the node's query answer is not as specified: {e}"))?;
    let data: Value = serde_json::from_str(ok.data.get())
        .map_err(|e| anyhow!("the node's query data is not JSON: {e}"))?;
    // 1. The data matches the digest that was logged.
    proof::verify_response_digest(ok.data.get(), &data, &ok.salt, &ok.response_digest)?;
    // 2. The logged entry is a QueryServed of exactly this request with that digest.
    let ea: EntryAnswer =
        ctx.get_signed(&signer, &format!("/v1/entries/{}", ok.record.position))?;
    let bytes = entry_bytes(&ea)?;
    let entry = Entry::decode(&bytes).map_err(|e| anyhow!("{}: {e}", e.code()))?;
    if entry.id != ok.record.id {
        bail!(
            "query.record_mismatch: entry at position {} is not the query record",
            ok.record.position
        );
    }
    match &entry.body.kind {
        EntryKind::QueryServed(q) if q.request == signed && q.response == ok.response_digest => {}
        _ => bail!("query.record_mismatch: the logged query record does not match this request and response"),
    }
    // 3. That entry is in the signed checkpoint the node returned.
    let trust = ctx.trust(Some(&h))?;
    let inc = ctx.verify_entry(
        &trust,
        &entry.bytes,
        ok.record.position,
        &ok.record.inclusion_proof,
        &ok.record.checkpoint,
    )?;
    if ctx.json {
        out_json(&json!({
            "data": data,
            "salt": ok.salt,
            "response_digest": ok.response_digest,
            "record": ok.record,
            "verified": {"position": inc.position, "checkpoint_size": inc.size, "response_digest": true},
        }));
    } else {
        let mut s = format!(
            "query served: record {} at log position {} in block {}\n",
            ok.record.id, ok.record.position, ok.record.height
        );
        s += &human(&data, 2);
        s += "verified: response digest matches the logged record\n";
        s += &inc.to_string();
        out(&s);
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

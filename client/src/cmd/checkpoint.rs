//! `xinyi checkpoint`: fetch, verify (validator quorum, witnesses) and remember the node's
//! latest checkpoint, consistent with the last one this client verified.

use crate::cmd::ctx::Ctx;
use crate::cmd::output::{out, out_json};
use anyhow::{Context as _, Result};
use serde_json::json;
use std::path::Path;

pub fn run(ctx: &Ctx, save: Option<&Path>) -> Result<()> {
    let h = ctx.health()?;
    let trust = ctx.trust(Some(&h))?;
    let note = ctx.api.get_text("/v1/checkpoint")?;
    let o = trust.open_any(&note)?;
    trust.check_final(&o)?;
    ctx.observe(&trust, &o)?;
    if let Some(p) = save {
        std::fs::write(p, &note).with_context(|| format!("writing {}", p.display()))?;
    }
    let v = json!({
        "origin": o.cp.origin,
        "size": o.cp.size,
        "root": hex::encode(o.cp.root),
        "validator_power": o.power,
        "total_power": o.total_power,
        "validator_signatures": o.validators,
        "witnesses": o.witnesses.iter().map(|(n, t)| json!({"name": n, "timestamp": t})).collect::<Vec<_>>(),
        "consistent_with_state": ctx.state.as_ref().map(|s| s.path().display().to_string()),
    });
    if ctx.json {
        out_json(&v);
    } else {
        out(&format!(
            "checkpoint {} size {} root {}\nverified: signed by validators of power {} of {} ({} signatures), {} witness cosignature(s){}",
            o.cp.origin,
            o.cp.size,
            hex::encode(o.cp.root),
            o.power,
            o.total_power,
            o.validators,
            o.witnesses.len(),
            if ctx.state.is_some() { "; consistent with the last checkpoint this client verified" } else { "" }
        ));
    }
    Ok(())
}

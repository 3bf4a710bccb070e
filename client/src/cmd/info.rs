//! Plain reads shown as the node returns them: `xinyi status` (the node's health) and
//! `xinyi records` (a firm's published credit records). Nothing here is a proof.

use crate::cmd::ctx::Ctx;
use anyhow::Result;
use serde_json::Value;
use xinyi_client::signer::parse_uscc;

/// `xinyi status`.
pub fn status(ctx: &Ctx) -> Result<()> {
    let h = ctx.health()?;
    ctx.show(&serde_json::to_value(&h)?);
    Ok(())
}

/// `xinyi records --firm`.
pub fn records(ctx: &Ctx, firm: &str) -> Result<()> {
    let firm = parse_uscc(firm)?;
    let v: Value = ctx.api.get(&format!("/v1/firms/{firm}/records"))?;
    ctx.show(&v);
    Ok(())
}

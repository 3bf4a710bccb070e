//! `xinyi export`: download the node's audit bundle (to a `.part` file, renamed when complete).

use crate::cmd::ctx::Ctx;
use crate::cmd::output::{out, out_json};
use anyhow::{Context as _, Result};
use serde_json::json;
use std::path::Path;

pub fn run(ctx: &Ctx, path: &Path) -> Result<()> {
    let mut stream = ctx.get_stream_read("/v1/export")?;
    let tmp = path.with_extension("part");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let n = std::io::copy(&mut stream, &mut f).with_context(|| "downloading the bundle")?;
    f.sync_all()
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    if ctx.json {
        out_json(&json!({"file": path, "bytes": n}));
    } else {
        out(&format!("wrote {} ({n} bytes); verify it with: xinyi audit verify --bundle {} --genesis GENESIS", path.display(), path.display()));
    }
    Ok(())
}

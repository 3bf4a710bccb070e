//! `xinyi keygen`: writes a new signing key file (mode 0600, never overwriting one).

use crate::cmd::ctx::Ctx;
use crate::cmd::output::{out, out_json};
use anyhow::{anyhow, Context as _, Result};
use serde_json::json;
use std::io::Write as _;
use std::path::Path;
use xinyi_ledger::KeyPair;

pub fn keygen(ctx: &Ctx, out_path: &Path) -> Result<()> {
    let key = KeyPair::generate();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(out_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow!(
                "{} already exists; refusing to overwrite a key",
                out_path.display()
            )
        } else {
            anyhow!("cannot create {}: {e}", out_path.display())
        }
    })?;
    f.write_all(key.to_file_text().as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", out_path.display()))?;
    if ctx.json {
        out_json(&json!({"file": out_path, "public_key": key.public().to_hex()}));
    } else {
        out(&format!(
            "wrote {} (mode 0600)\npublic key: {}",
            out_path.display(),
            key.public().to_hex()
        ));
    }
    Ok(())
}

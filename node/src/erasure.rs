//! Applies committed erasures to this node's agency store: for every `data_erased` entry its own
//! organisation signed, destroy the data keys of the erased categories (and of the firm's stored
//! alerts) and leave tombstones (`AgencyData::erase`). Runs once at start-up, in a background
//! loop, and right after the API commits an erasure, so `POST /v1/erasures` answers only once
//! the keys are gone on this node. Progress is the key file's `erased_through` log position, so
//! a crash between the commit and the destruction (or a key file restored from a backup) is
//! caught up from the ledger. Not here: whether an erasure is allowed (the ledger's rules).

use crate::datastore::AgencyData;
use crate::engine::Engine;
use std::time::Duration;
use xinyi_ledger::entry::{Author, EntryKind};
use xinyi_ledger::Entry;

/// Entries read per pass while holding no lock.
const CHUNK: u64 = 4_096;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Erasures of this organisation applied.
    pub applied: usize,
    /// The log position every erasure below which is now applied.
    pub through: u64,
}

/// Applies every committed erasure not applied yet. Blocking (reads the store, writes files).
pub fn catch_up(engine: &Engine, data: &AgencyData) -> anyhow::Result<Pass> {
    let _one = data.erase_lock.lock().unwrap_or_else(|e| e.into_inner());
    let durable = engine.lock().durable_size;
    let mut pos = data.keyring().erased_through();
    let mut applied = 0;
    while pos < durable {
        let end = durable.min(pos.saturating_add(CHUNK));
        for p in pos..end {
            let Some(bytes) = engine.store().entry(p)? else {
                continue;
            };
            let e = Entry::decode(&bytes)?;
            let EntryKind::DataErased(x) = &e.body.kind else {
                continue;
            };
            if e.body.author != Author::Org(engine.org().clone()) {
                continue;
            }
            let Some(firm) = data.firm_by_tag(&x.firm) else {
                if !data.knows_tags() && data.holds_data()? {
                    anyhow::bail!(
                        "erasure {} at position {p} cannot be applied: this node holds agency \
                         data but has no firm key to find the firm by its tag ([privacy] firm_key)",
                        e.id
                    );
                }
                // The store holds nothing on that firm; its alerts key still goes.
                data.keyring()
                    .destroy(&[crate::datastore::alert_scope(&x.firm)], p + 1)?;
                applied += 1;
                continue;
            };
            data.erase(&firm, &x.firm, &x.categories, &e.id, p)?;
            applied += 1;
            tracing::info!(
                "erased {} of a firm ({}) for entry {} at position {p}",
                x.categories
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(","),
                x.reason.name(),
                e.id
            );
        }
        data.erased_through(end)?;
        pos = end;
    }
    Ok(Pass {
        applied,
        through: pos,
    })
}

/// Runs [`catch_up`] every `poll` (the node's own erasures are also applied by the API right
/// after they commit). Must run inside a tokio runtime.
pub fn spawn(engine: Engine, data: AgencyData, poll: Duration) {
    tokio::spawn(async move {
        loop {
            let (e, d) = (engine.clone(), data.clone());
            match tokio::task::spawn_blocking(move || catch_up(&e, &d)).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => tracing::error!("applying erasures: {err:#}"),
                Err(err) => tracing::error!("applying erasures: {err}"),
            }
            tokio::time::sleep(poll).await;
        }
    });
}

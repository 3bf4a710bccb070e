//! The erasure and retention rules of the state machine (`specs/state.md` §3 step 4, §4.21):
//! which `data_erased` entries an agency may make (the reason checked against the consent or
//! record it names), the erasure index, and the retention schedule that stops showing a
//! published record once its category's period ends, at block time. A child of `state` so it
//! shares the overlays. Not here: destroying keys or data (the node's data store does that once
//! the entry commits).

use super::{key, prefix, RecordState, State, StateError};
use crate::codec::CodecError;
use crate::entry::{Erasure, ErasureReason};
use crate::firmtag::FirmTag;
use crate::hash::Digest;
use crate::types::{Category, OrgId, TimeMs, DAY_MS};

/// Why a `data_erased` entry is refused (its reference does not support its reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErasureRefusal {
    /// The referenced consent or record does not exist.
    ReferenceUnknown,
    /// The referenced consent or record concerns another firm.
    OtherFirm,
    /// `consent_withdrawn`, but the consent is not revoked.
    ConsentNotRevoked,
    /// `purpose_ended`, but the consent is still in force (not expired, uses left).
    ConsentInForce,
    /// `record_repaired`, but the record is not repaired in both registries.
    RecordNotRepaired,
    /// `retention_ended`, but the record is still shown (neither expired nor repaired).
    RecordStillShown,
    /// A record is referenced, but its category is not among the erased ones.
    CategoryNotErased,
    /// A record of another agency is referenced.
    NotPublisher,
}

impl ErasureRefusal {
    /// Stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            ErasureRefusal::ReferenceUnknown => "erasure.reference_unknown",
            ErasureRefusal::OtherFirm => "erasure.other_firm",
            ErasureRefusal::ConsentNotRevoked => "erasure.consent_not_revoked",
            ErasureRefusal::ConsentInForce => "erasure.consent_in_force",
            ErasureRefusal::RecordNotRepaired => "erasure.record_not_repaired",
            ErasureRefusal::RecordStillShown => "erasure.record_still_shown",
            ErasureRefusal::CategoryNotErased => "erasure.category_not_erased",
            ErasureRefusal::NotPublisher => "erasure.not_publisher",
        }
    }

    /// What went wrong, for people.
    pub fn message(self) -> &'static str {
        match self {
            ErasureRefusal::ReferenceUnknown => "no consent or record with the referenced id",
            ErasureRefusal::OtherFirm => "the referenced consent or record concerns another firm",
            ErasureRefusal::ConsentNotRevoked => "the referenced consent is not revoked",
            ErasureRefusal::ConsentInForce => {
                "the referenced consent is still in force (not expired, uses left)"
            }
            ErasureRefusal::RecordNotRepaired => "the referenced record is not repaired",
            ErasureRefusal::RecordStillShown => {
                "the referenced record is still shown (its retention has not ended)"
            }
            ErasureRefusal::CategoryNotErased => {
                "the referenced record's category is not among the erased categories"
            }
            ErasureRefusal::NotPublisher => "the referenced record was published by another agency",
        }
    }
}

impl RecordState {
    /// Whether the record is shown publicly: not repaired and its retention not ended.
    pub fn shown(&self) -> bool {
        !self.repaired && self.expired_at.is_none()
    }
}

/// A committed erasure of one category of a firm's data by one agency (`e` key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureIndexEntry {
    /// Category.
    pub category: Category,
    /// Erasing agency.
    pub agency: OrgId,
    /// Id of the latest `data_erased` entry.
    pub entry: Digest,
}

impl State {
    /// `data_erased` by agency `agency`: the reason against its reference, then the index.
    pub(super) fn apply_erasure(
        &mut self,
        agency: &OrgId,
        x: &Erasure,
        id: &Digest,
        now: TimeMs,
    ) -> Result<(), StateError> {
        self.check_erasure(agency, x, now)
            .map_err(StateError::Erasure)?;
        for c in &x.categories {
            self.entry.insert(
                key(
                    prefix::ERASED,
                    &[x.firm.as_bytes(), &[*c as u8], agency.as_str().as_bytes()],
                ),
                Some(id.as_bytes().to_vec()),
            );
        }
        Ok(())
    }

    fn check_erasure(
        &self,
        agency: &OrgId,
        x: &Erasure,
        now: TimeMs,
    ) -> Result<(), ErasureRefusal> {
        let Some(r) = x.reference else {
            return Ok(());
        };
        match x.reason {
            ErasureReason::ConsentWithdrawn | ErasureReason::PurposeEnded => {
                let c = self
                    .consent(&r)
                    .ok()
                    .flatten()
                    .ok_or(ErasureRefusal::ReferenceUnknown)?;
                if c.firm != x.firm {
                    return Err(ErasureRefusal::OtherFirm);
                }
                if x.reason == ErasureReason::ConsentWithdrawn {
                    if !c.revoked {
                        return Err(ErasureRefusal::ConsentNotRevoked);
                    }
                } else if now < c.consent.not_after && c.used < c.consent.max_uses && !c.revoked {
                    return Err(ErasureRefusal::ConsentInForce);
                }
            }
            ErasureReason::RecordRepaired | ErasureReason::RetentionEnded => {
                let rec = self
                    .record(&r)
                    .ok()
                    .flatten()
                    .ok_or(ErasureRefusal::ReferenceUnknown)?;
                if rec.firm != x.firm {
                    return Err(ErasureRefusal::OtherFirm);
                }
                if &rec.agency != agency {
                    return Err(ErasureRefusal::NotPublisher);
                }
                if !x.categories.contains(&rec.category) {
                    return Err(ErasureRefusal::CategoryNotErased);
                }
                if x.reason == ErasureReason::RecordRepaired && !rec.repaired {
                    return Err(ErasureRefusal::RecordNotRepaired);
                }
                if x.reason == ErasureReason::RetentionEnded && rec.shown() {
                    return Err(ErasureRefusal::RecordStillShown);
                }
            }
            // A request or order: the reference is the digest of a document, not a ledger id.
            ErasureReason::SubjectRequest | ErasureReason::LegalOrder => {}
        }
        Ok(())
    }

    /// The committed erasures of `firm`'s data, in (category, agency) order.
    pub fn erasures(&self, firm: &FirmTag) -> Vec<ErasureIndexEntry> {
        let p = key(prefix::ERASED, &[firm.as_bytes()]);
        self.keys_with_prefix(&p)
            .into_iter()
            .filter_map(|k| {
                let rest = k.get(p.len()..)?;
                let (&c, org) = rest.split_first()?;
                let category = *Category::ALL.get(usize::from(c))?;
                let agency = OrgId::new(std::str::from_utf8(org).ok()?).ok()?;
                let entry = Digest::from_slice(self.raw(&k)?).ok()?;
                Some(ErasureIndexEntry {
                    category,
                    agency,
                    entry,
                })
            })
            .collect()
    }

    /// `credit_record_published`: if the chain sets a retention period for the record's
    /// category, schedule the end of its publicity.
    pub(super) fn schedule_expiry(&mut self, record: &Digest, category: Category, now: TimeMs) {
        if let Some(days) = self.params.retention_days(category) {
            let at = now.saturating_add(u64::from(days).saturating_mul(DAY_MS));
            self.entry.insert(
                key(prefix::EXPIRY, &[&at.to_be_bytes(), record.as_bytes()]),
                Some(Vec::new()),
            );
        }
    }

    /// Block start: every record whose retention ends at or before `time` stops being shown
    /// (`expired_at = time`), in (end, record id) order; its schedule key is deleted.
    pub(super) fn expire_records(&mut self, time: TimeMs) -> Result<(), StateError> {
        for (k, _) in self.base_before(prefix::EXPIRY, time.saturating_add(1)) {
            let id =
                Digest::from_slice(k.get(9..).unwrap_or(&[])).map_err(|_| StateError::Corrupt {
                    key: hex::encode(&k),
                    err: CodecError::NonCanonical { what: "expiry key" },
                })?;
            let rk = key(prefix::RECORD, &[id.as_bytes()]);
            if let Some(mut rec) = self.get::<RecordState>(&rk)? {
                if rec.expired_at.is_none() {
                    rec.expired_at = Some(time);
                    self.put_s(rk, &rec)?;
                }
            }
            self.delete(k);
        }
        Ok(())
    }
}

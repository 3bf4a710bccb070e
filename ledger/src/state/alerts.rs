//! The monitoring rules of the state machine (`specs/state.md` §4.19–§4.20): the index of firms
//! with monitoring consents, the trigger records written for them, and the check of an
//! `alerts_delivered` batch against consent and trigger. A child of `state` so it shares the
//! overlays; the types are in `crate::monitor`. Not here: producing alerts (the node).

use super::{key, prefix, State, StateError};
use crate::entry::{Consent, EntryKind};
use crate::firmtag::FirmTag;
use crate::hash::Digest;
use crate::monitor::{alert_id, AlertBatch, AlertRefusal, MonitorCategory, TriggerRecord};
use crate::types::TimeMs;
use std::collections::BTreeSet;
use std::ops::Bound;

impl State {
    /// Keys with prefix `p` in the state as it stands (committed map, then the open block, then
    /// the entry being applied, deletions included), in key order.
    pub(super) fn keys_with_prefix(&self, p: &[u8]) -> Vec<Vec<u8>> {
        let mut keys: BTreeSet<Vec<u8>> = super::prefix_range(&self.base, p)
            .map(|(k, _)| k.0.to_vec())
            .collect();
        for layer in [&self.block, &self.entry] {
            let range = layer
                .range::<[u8], _>((Bound::Included(p), Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(p));
            for (k, v) in range {
                if v.is_some() {
                    keys.insert(k.clone());
                } else {
                    keys.remove(k);
                }
            }
        }
        keys.into_iter().collect()
    }

    /// The consents of `firm` that carry a monitoring scope and are not revoked (expired ones
    /// included: the caller checks the window), in consent-id order.
    pub fn monitoring_consents(&self, firm: &FirmTag) -> Vec<Digest> {
        let p = key(prefix::WATCH, &[firm.as_bytes()]);
        self.keys_with_prefix(&p)
            .into_iter()
            .filter_map(|k| Digest::from_slice(k.get(p.len()..).unwrap_or(&[])).ok())
            .collect()
    }

    /// The trigger record of entry `id`, if the state recorded one.
    pub fn trigger(&self, id: &Digest) -> Result<Option<TriggerRecord>, StateError> {
        self.get(&key(prefix::TRIGGER, &[id.as_bytes()]))
    }

    /// The id of the `alerts_delivered` entry that delivered alert `id`, if any.
    pub fn alert_delivery(&self, id: &Digest) -> Option<Digest> {
        self.raw(&key(prefix::ALERT, &[id.as_bytes()]))
            .and_then(|v| Digest::from_slice(v).ok())
    }

    /// `consent_granted` with a monitoring scope: index the consent under its firm.
    pub(super) fn watch_consent(&mut self, firm: &FirmTag, consent: &Consent, id: &Digest) {
        if consent.monitoring.is_some() {
            self.entry.insert(
                key(prefix::WATCH, &[firm.as_bytes(), id.as_bytes()]),
                Some(Vec::new()),
            );
        }
    }

    /// `consent_revoked`: the consent leaves the index.
    pub(super) fn unwatch_consent(&mut self, firm: &FirmTag, consent: &Consent, id: &Digest) {
        if consent.monitoring.is_some() {
            self.delete(key(prefix::WATCH, &[firm.as_bytes(), id.as_bytes()]));
        }
    }

    /// After a trigger kind applied: if `firm` has a monitoring consent in the index, record
    /// `T ‖ id → {firm, category, position, time}`.
    pub(super) fn record_trigger(
        &mut self,
        kind: &EntryKind,
        firm: Option<FirmTag>,
        id: &Digest,
        position: u64,
        now: TimeMs,
    ) -> Result<(), StateError> {
        let Some(category) = trigger_category(kind) else {
            return Ok(());
        };
        let Some(firm) = firm else {
            return Ok(());
        };
        if self
            .keys_with_prefix(&key(prefix::WATCH, &[firm.as_bytes()]))
            .is_empty()
        {
            return Ok(());
        }
        self.put_s(
            key(prefix::TRIGGER, &[id.as_bytes()]),
            &TriggerRecord {
                firm,
                category,
                position,
                time: now,
            },
        )
    }

    /// The rule for one alert at block time `now` (first failing check).
    pub fn check_alert(
        &self,
        bank: &crate::types::OrgId,
        firm: &FirmTag,
        a: &crate::monitor::Alert,
        now: TimeMs,
    ) -> Result<(), AlertRefusal> {
        let Ok(Some(c)) = self.consent(&a.consent) else {
            return Err(AlertRefusal::ConsentUnknown);
        };
        if c.firm != *firm {
            return Err(AlertRefusal::WrongFirm);
        }
        if c.consent.bank != *bank {
            return Err(AlertRefusal::WrongBank);
        }
        if c.revoked {
            return Err(AlertRefusal::ConsentRevoked);
        }
        if now < c.consent.not_before {
            return Err(AlertRefusal::ConsentNotYetValid);
        }
        if now >= c.consent.not_after {
            return Err(AlertRefusal::ConsentExpired);
        }
        if !c
            .consent
            .monitoring
            .as_ref()
            .is_some_and(|m| m.covers(a.category))
        {
            return Err(AlertRefusal::NotMonitored);
        }
        let Ok(Some(t)) = self.trigger(&a.trigger) else {
            return Err(AlertRefusal::TriggerMismatch);
        };
        if t.firm != *firm || t.category != a.category || t.position != a.position {
            return Err(AlertRefusal::TriggerMismatch);
        }
        if t.time < c.granted_at || t.time < c.consent.not_before {
            return Err(AlertRefusal::TriggerBeforeConsent);
        }
        if a.alert != alert_id(&a.consent, &a.trigger) {
            return Err(AlertRefusal::BadAlertId);
        }
        if self.alert_delivery(&a.alert).is_some() {
            return Err(AlertRefusal::AlreadyDelivered);
        }
        Ok(())
    }

    /// `alerts_delivered`: every alert passes [`State::check_alert`]; each is recorded as
    /// delivered by entry `id`, and the entry joins the firm's access chain.
    pub(super) fn apply_alerts(
        &mut self,
        b: &AlertBatch,
        id: &Digest,
        now: TimeMs,
    ) -> Result<(), StateError> {
        for a in &b.alerts {
            self.check_alert(&b.bank, &b.firm, a, now)
                .map_err(StateError::AlertNotAuthorized)?;
            self.entry.insert(
                key(prefix::ALERT, &[a.alert.as_bytes()]),
                Some(id.0.to_vec()),
            );
        }
        self.record_access(&b.firm, id)
    }
}

/// The monitoring category of a committed entry, if it is a trigger kind: a credit record (by
/// its data category), a grade, a broken commitment or a repair step.
pub fn trigger_category(kind: &EntryKind) -> Option<MonitorCategory> {
    Some(match kind {
        EntryKind::CreditRecordPublished(r) => MonitorCategory::of_record(r.category),
        EntryKind::GradeAssigned { .. } => MonitorCategory::Grades,
        EntryKind::CommitmentBroken { .. } => MonitorCategory::CommitmentsBroken,
        EntryKind::RepairRequested { .. }
        | EntryKind::RepairDecided { .. }
        | EntryKind::RepairApplied { .. } => MonitorCategory::Repairs,
        _ => return None,
    })
}

//! The credit-repair rules of the state machine (`specs/state.md` §4.12–4.14): a firm asks for
//! a published record to be repaired once its publicity period has elapsed, the publishing agency
//! decides, and both national registries (信用中国 and 国家企业信用信息公示系统) apply it; the record
//! is repaired only when both have. A child of `state` so it shares the overlays. Not here: the
//! overdue flag at block start (`State::block_start_effects`) and the working-day calendar
//! (`crate::types::working_days_deadline`).

use super::{key, prefix, RecordState, RepairRecord, RepairStatus, State, StateError};
use crate::firmtag::FirmTag;
use crate::hash::Digest;
use crate::types::{working_days_deadline, OrgId, Role, TimeMs, DAY_MS};

impl State {
    /// `repair_requested` by firm `f` for `record` (entry `id`).
    pub(super) fn apply_repair_requested(
        &mut self,
        f: FirmTag,
        record: &Digest,
        id: &Digest,
        now: TimeMs,
    ) -> Result<(), StateError> {
        let rk = key(prefix::RECORD, &[record.as_bytes()]);
        let mut rec: RecordState = self.get(&rk)?.ok_or_else(|| StateError::NotFound {
            what: "record",
            id: record.to_hex(),
        })?;
        if rec.firm != f {
            return Err(StateError::NotOwner(format!(
                "record {record} concerns another firm"
            )));
        }
        if rec.repaired {
            return Err(StateError::Invalid(format!(
                "record {record} is already repaired"
            )));
        }
        if let Some(open) = rec.open_repair {
            return Err(StateError::AlreadyExists {
                what: "open repair",
                id: open.to_hex(),
            });
        }
        let ends = rec
            .published_at
            .saturating_add(u64::from(rec.min_publicity_days) * DAY_MS);
        if now < ends {
            return Err(StateError::PublicityPeriodNotElapsed { ends, now });
        }
        rec.open_repair = Some(*id);
        let agency = rec.agency.clone();
        self.put_s(rk, &rec)?;
        self.put_s(
            key(prefix::REPAIR, &[id.as_bytes()]),
            &RepairRecord {
                firm: f,
                record: *record,
                agency,
                status: RepairStatus::Requested,
                requested_at: now,
                decided_at: None,
                reason: None,
                deadline: None,
                credit_china_applied_at: None,
                gsxt_applied_at: None,
                overdue: false,
            },
        )?;
        Ok(())
    }

    /// `repair_decided` by organisation `org`; returns the firm the repair concerns.
    pub(super) fn apply_repair_decided(
        &mut self,
        org: Option<&OrgId>,
        repair: &Digest,
        approved: bool,
        reason: &str,
        now: TimeMs,
    ) -> Result<FirmTag, StateError> {
        let (pk, mut r) = self.existing_repair(repair)?;
        if org != Some(&r.agency) {
            return Err(StateError::NotOwner(format!(
                "only {} may decide repair {repair}",
                r.agency
            )));
        }
        if r.status != RepairStatus::Requested {
            return Err(StateError::RepairState {
                repair: *repair,
                reason: format!("cannot decide a repair in status {:?}", r.status),
            });
        }
        r.decided_at = Some(now);
        r.reason = Some(reason.to_owned());
        let rk = key(prefix::RECORD, &[r.record.as_bytes()]);
        if approved {
            let deadline = working_days_deadline(now, self.params.repair_deadline_working_days);
            r.status = RepairStatus::Approved;
            r.deadline = Some(deadline);
            self.entry.insert(
                key(
                    prefix::DEADLINE,
                    &[&deadline.to_be_bytes(), repair.as_bytes()],
                ),
                Some(Vec::new()),
            );
        } else {
            r.status = RepairStatus::Rejected;
            if let Some(mut rec) = self.get::<RecordState>(&rk)? {
                rec.open_repair = None;
                self.put_s(rk, &rec)?;
            }
        }
        let firm = r.firm;
        self.put_s(pk, &r)?;
        Ok(firm)
    }

    /// `repair_applied` by a registry of role `role` (checked by the caller); returns the firm
    /// the repair concerns.
    pub(super) fn apply_repair_applied(
        &mut self,
        role: Option<Role>,
        repair: &Digest,
        now: TimeMs,
    ) -> Result<FirmTag, StateError> {
        let (pk, mut r) = self.existing_repair(repair)?;
        if r.status != RepairStatus::Approved {
            return Err(StateError::RepairState {
                repair: *repair,
                reason: format!("cannot apply a repair in status {:?}", r.status),
            });
        }
        let slot = if role == Some(Role::CreditChina) {
            &mut r.credit_china_applied_at
        } else {
            &mut r.gsxt_applied_at
        };
        if slot.is_some() {
            return Err(StateError::RepairState {
                repair: *repair,
                reason: "this registry already applied it".into(),
            });
        }
        *slot = Some(now);
        if r.credit_china_applied_at.is_some() && r.gsxt_applied_at.is_some() {
            r.status = RepairStatus::Applied;
            if let Some(d) = r.deadline {
                self.delete(key(
                    prefix::DEADLINE,
                    &[&d.to_be_bytes(), repair.as_bytes()],
                ));
            }
            let rk = key(prefix::RECORD, &[r.record.as_bytes()]);
            if let Some(mut rec) = self.get::<RecordState>(&rk)? {
                rec.open_repair = None;
                rec.repaired = true;
                self.put_s(rk, &rec)?;
            }
        }
        let firm = r.firm;
        self.put_s(pk, &r)?;
        Ok(firm)
    }

    /// The key and record of an existing repair, or `NotFound`.
    fn existing_repair(&self, repair: &Digest) -> Result<(Vec<u8>, RepairRecord), StateError> {
        let pk = key(prefix::REPAIR, &[repair.as_bytes()]);
        let r = self.get(&pk)?.ok_or_else(|| StateError::NotFound {
            what: "repair",
            id: repair.to_hex(),
        })?;
        Ok((pk, r))
    }
}

//! The membership rules of the state machine (`specs/state.md` §4.1): a change to the
//! consortium (register an organisation, rotate its key, set its voting power) is proposed with
//! an effective height above the including block and approved by validators holding a quorum
//! of power; it takes effect at the start of that block. A firm-key rotation is approved the
//! same way and recorded at once with its effective height (`FirmKeyEpoch`, `specs/privacy.md`
//! §8). A child of `state` so it shares the overlays. Not here: the validator set's quorum
//! arithmetic (`crate::block::ValidatorSet`).

use super::{key, prefix, OrgRecord, SigRequirement, State, StateError};
use crate::block::{Validator, ValidatorSet};
use crate::entry::{membership_signing_payload, MemberChange, MembershipChange};
use crate::hash::Digest;
use crate::keys::{signing_message, SigDomain};
use serde::{Deserialize, Serialize};

/// An approved firm-key epoch (state key `F`, a list ordered by epoch): from `from_height` on,
/// new entries name firms by their tag under the key whose `FirmKey::id` is `key_id`. Epoch 0,
/// the key the consortium started with, has no record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmKeyEpoch {
    /// Epoch number (1, 2, ...).
    pub epoch: u32,
    /// `FirmKey::id` of its key.
    pub key_id: Digest,
    /// First height at which it is in force.
    pub from_height: u64,
}

impl State {
    /// `membership` (entry `id`) by a validator of `set` (checked by the caller): checks the
    /// change and its approvals, whose signatures it adds to `sigs`, and schedules the change.
    pub(super) fn apply_membership(
        &mut self,
        m: &MembershipChange,
        set: &ValidatorSet,
        id: &Digest,
        sigs: &mut Vec<SigRequirement>,
    ) -> Result<(), StateError> {
        if m.proposal.effective_height <= self.height + 1 {
            return Err(StateError::Membership(format!(
                "effective height {} must be above the including block {}",
                m.proposal.effective_height,
                self.height + 1
            )));
        }
        let payload = membership_signing_payload(&self.chain, &m.proposal).map_err(|err| {
            StateError::Corrupt {
                key: "proposal".into(),
                err,
            }
        })?;
        let message = signing_message(SigDomain::Membership, &payload);
        let mut power: u64 = 0;
        for a in &m.approvals {
            let v = set.get(&a.validator).ok_or_else(|| {
                StateError::Membership(format!("{} is not a validator", a.validator))
            })?;
            power = power.saturating_add(v.power);
            sigs.push(SigRequirement {
                message: message.clone(),
                key: v.key,
                signature: a.signature,
            });
        }
        if power < set.quorum() {
            return Err(StateError::Membership(format!(
                "approvals carry power {power}, quorum is {}",
                set.quorum()
            )));
        }
        match &m.proposal.change {
            MemberChange::RegisterOrg { org, key: k, .. } => {
                k.verifying_key()
                    .map_err(|_| StateError::Membership("invalid key".into()))?;
                let pk = key(prefix::PENDING_ORG, &[org.as_str().as_bytes()]);
                if self.org(org)?.is_some() || self.raw(&pk).is_some() {
                    return Err(StateError::AlreadyExists {
                        what: "organisation",
                        id: org.to_string(),
                    });
                }
                self.entry.insert(pk, Some(Vec::new()));
            }
            MemberChange::RotateKey { org, key: k } => {
                k.verifying_key()
                    .map_err(|_| StateError::Membership("invalid key".into()))?;
                self.require_org(org)?;
            }
            MemberChange::SetPower { org, .. } => {
                self.require_org(org)?;
            }
            MemberChange::RotateFirmKey { epoch, key_id } => {
                let mut epochs = self.firm_key_epochs()?;
                let next = epochs.last().map_or(1, |e| e.epoch.saturating_add(1));
                if *epoch != next {
                    return Err(StateError::Membership(format!(
                        "firm-key epoch {epoch} is not the next one ({next})"
                    )));
                }
                if let Some(last) = epochs.last() {
                    if m.proposal.effective_height <= last.from_height {
                        return Err(StateError::Membership(format!(
                            "firm-key epoch {epoch} must take effect above epoch {}'s height {}",
                            last.epoch, last.from_height
                        )));
                    }
                }
                epochs.push(FirmKeyEpoch {
                    epoch: *epoch,
                    key_id: *key_id,
                    from_height: m.proposal.effective_height,
                });
                // Recorded now with its height, not scheduled: nothing in the state changes at
                // the effective height except which key new entries use.
                return self.put_s(vec![prefix::FIRM_KEYS], &epochs);
            }
        }
        self.put_s(
            key(
                prefix::PENDING,
                &[&m.proposal.effective_height.to_be_bytes(), id.as_bytes()],
            ),
            &m.proposal.change,
        )?;
        Ok(())
    }

    /// The approved firm-key epochs above 0 (in force or not yet), by epoch.
    pub fn firm_key_epochs(&self) -> Result<Vec<FirmKeyEpoch>, StateError> {
        Ok(self.get(&[prefix::FIRM_KEYS])?.unwrap_or_default())
    }

    /// The firm-key epoch in force at `height`: new entries of block `height` name firms by
    /// their tag under this epoch's key.
    pub fn firm_key_epoch_at(&self, height: u64) -> Result<u32, StateError> {
        Ok(self
            .firm_key_epochs()?
            .iter()
            .rev()
            .find(|e| e.from_height <= height)
            .map_or(0, |e| e.epoch))
    }

    /// Puts a due change into force (block start, `specs/state.md` §3 step 2).
    pub(super) fn effect_membership(&mut self, change: &MemberChange) -> Result<(), StateError> {
        let (org, power, key_) = match change {
            MemberChange::RegisterOrg {
                org,
                name,
                role,
                key: k,
                power,
            } => {
                self.put_s(
                    key(prefix::ORG, &[org.as_str().as_bytes()]),
                    &OrgRecord {
                        name: name.clone(),
                        role: *role,
                        key: *k,
                        power: *power,
                    },
                )?;
                self.delete(key(prefix::PENDING_ORG, &[org.as_str().as_bytes()]));
                (org.clone(), *power, *k)
            }
            MemberChange::RotateKey { org, key: k } => {
                let Some(mut rec) = self.org(org)? else {
                    return Ok(());
                };
                rec.key = *k;
                let p = rec.power;
                self.put_s(key(prefix::ORG, &[org.as_str().as_bytes()]), &rec)?;
                (org.clone(), p, *k)
            }
            MemberChange::SetPower { org, power } => {
                let Some(mut rec) = self.org(org)? else {
                    return Ok(());
                };
                let mut set = self.validators()?;
                let others: u64 = set
                    .validators
                    .iter()
                    .filter(|v| &v.org != org)
                    .map(|v| v.power)
                    .sum();
                if others == 0 && *power == 0 {
                    // The set would become empty: the change has no effect (documented rule).
                    return Ok(());
                }
                set.validators.retain(|v| &v.org != org);
                rec.power = *power;
                let k = rec.key;
                self.put_s(key(prefix::ORG, &[org.as_str().as_bytes()]), &rec)?;
                self.put_s(vec![prefix::VALIDATORS], &set)?;
                (org.clone(), *power, k)
            }
            // Never scheduled (recorded when approved, above).
            MemberChange::RotateFirmKey { .. } => return Ok(()),
        };
        let mut set = self.validators()?;
        set.validators.retain(|v| v.org != org);
        if power > 0 {
            let pos = set
                .validators
                .binary_search_by(|v| v.org.cmp(&org))
                .unwrap_or_else(|p| p);
            set.validators.insert(
                pos,
                Validator {
                    org,
                    key: key_,
                    power,
                },
            );
        }
        self.put_s(vec![prefix::VALIDATORS], &set)
    }
}

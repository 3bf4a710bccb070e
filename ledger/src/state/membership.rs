//! The membership rules of the state machine (`specs/state.md` §4.1): a change to the
//! consortium (register an organisation, rotate its key, set its voting power) is proposed with
//! an effective height above the including block and approved by validators holding a quorum
//! of power; it takes effect at the start of that block. A child of `state` so it shares the
//! overlays. Not here: the validator set's quorum arithmetic (`crate::block::ValidatorSet`).

use super::{key, prefix, OrgRecord, SigRequirement, State, StateError};
use crate::block::{Validator, ValidatorSet};
use crate::entry::{membership_signing_payload, MemberChange, MembershipChange};
use crate::hash::Digest;
use crate::keys::{signing_message, SigDomain};

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

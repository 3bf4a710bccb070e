//! The access rules of the state machine (`specs/state.md` §4.3–4.7, §4.6a): a firm grants and revokes
//! a bank's consent, and an agency records each query it served or denied under one — served
//! only if the consent authorizes it at block time, denied only with the reason the ledger
//! computes itself. Every query, served or denied, consumes its request id (no replay) and is
//! chained into the firm's access head. A child of `state` so it shares the overlays. Not here:
//! the access head and its proof (`State::record_access`, `crate::smt`).

use super::{key, prefix, ConsentRecord, SigRequirement, State, StateError};
use crate::codec;
use crate::entry::{
    entry_signing_payload, Consent, DenialReason, QueryRecord, QueryRequest, SignedQueryRequest,
};
use crate::firmtag::FirmTag;
use crate::hash::{self, Digest, Domain};
use crate::keys::{signing_message, SigDomain, Signature};
use crate::types::{Role, TimeMs};

impl State {
    /// `consent_granted` by firm `author_firm` (entry `id`).
    pub(super) fn apply_consent_granted(
        &mut self,
        author_firm: Option<FirmTag>,
        c: &Consent,
        id: &Digest,
        now: TimeMs,
    ) -> Result<(), StateError> {
        let f = author_firm
            .ok_or_else(|| StateError::Invalid("consent must be signed by the firm".into()))?;
        match self.org(&c.bank)? {
            Some(b) if b.role == Role::Bank => {}
            Some(_) => return Err(StateError::Invalid(format!("{} is not a bank", c.bank))),
            None => {
                return Err(StateError::NotFound {
                    what: "bank",
                    id: c.bank.to_string(),
                })
            }
        }
        if c.not_after <= now {
            return Err(StateError::Invalid(
                "consent already expired at grant".into(),
            ));
        }
        self.watch_consent(&f, c, id);
        self.put_s(
            key(prefix::CONSENT, &[id.as_bytes()]),
            &ConsentRecord {
                firm: f,
                consent: c.clone(),
                used: 0,
                revoked: false,
                granted_at: now,
            },
        )?;
        Ok(())
    }

    /// `consent_revoked` by firm `author_firm`.
    pub(super) fn apply_consent_revoked(
        &mut self,
        author_firm: Option<FirmTag>,
        consent: &Digest,
    ) -> Result<(), StateError> {
        let f = author_firm
            .ok_or_else(|| StateError::Invalid("revocation must be signed by the firm".into()))?;
        let mut c = self.consent(consent)?.ok_or_else(|| StateError::NotFound {
            what: "consent",
            id: consent.to_hex(),
        })?;
        if c.firm != f {
            return Err(StateError::NotOwner(format!(
                "consent {consent} belongs to another firm"
            )));
        }
        if c.revoked {
            return Err(StateError::Invalid(format!(
                "consent {consent} is already revoked"
            )));
        }
        c.revoked = true;
        self.unwatch_consent(&f, &c.consent, consent);
        self.put_s(key(prefix::CONSENT, &[consent.as_bytes()]), &c)?;
        Ok(())
    }

    /// `query_served` (entry `id`, the agency's role checked by the caller); returns the bank's
    /// signature the entry carries, to be verified with the author's.
    pub(super) fn apply_query_served(
        &mut self,
        q: &QueryRecord,
        id: &Digest,
        now: TimeMs,
    ) -> Result<SigRequirement, StateError> {
        let req = &q.request.request;
        let req_bytes = encode_request(req)?;
        let sig = self.bank_signature(req, &req_bytes, &q.request.signature)?;
        self.consume_request(req, &req_bytes, now)?;
        let mut c = self
            .authorized_consent(req, now)
            .map_err(StateError::QueryNotAuthorized)?;
        let ck = key(prefix::CONSENT, &[req.consent.as_bytes()]);
        c.used += 1;
        self.put_s(ck, &c)?;
        self.record_access(&req.firm, id)?;
        Ok(sig)
    }

    /// `query_denied` with `reason` (entry `id`, the agency's role checked by the caller);
    /// returns the bank's signature the entry carries.
    pub(super) fn apply_query_denied(
        &mut self,
        request: &SignedQueryRequest,
        reason: DenialReason,
        id: &Digest,
        now: TimeMs,
    ) -> Result<SigRequirement, StateError> {
        let req_bytes = encode_request(&request.request)?;
        let sig = self.bank_signature(&request.request, &req_bytes, &request.signature)?;
        self.consume_request(&request.request, &req_bytes, now)?;
        let actual = self.check_query(&request.request, now).err();
        if actual != Some(reason) {
            return Err(StateError::WrongDenial {
                claimed: reason,
                actual,
            });
        }
        self.record_access(&request.request.firm, id)?;
        Ok(sig)
    }

    /// Whether a query request is authorized at time `now` (the ledger rule).
    pub fn check_query(&self, req: &QueryRequest, now: TimeMs) -> Result<(), DenialReason> {
        self.authorized_consent(req, now).map(|_| ())
    }

    /// [`State::check_query`], returning the consent record it checked (decoded once).
    fn authorized_consent(
        &self,
        req: &QueryRequest,
        now: TimeMs,
    ) -> Result<ConsentRecord, DenialReason> {
        let Ok(Some(c)) = self.consent(&req.consent) else {
            return Err(DenialReason::ConsentUnknown);
        };
        if c.firm != req.firm {
            return Err(DenialReason::WrongFirm);
        }
        if c.consent.bank != req.bank {
            return Err(DenialReason::WrongBank);
        }
        if c.revoked {
            return Err(DenialReason::ConsentRevoked);
        }
        if now < c.consent.not_before {
            return Err(DenialReason::ConsentNotYetValid);
        }
        if now >= c.consent.not_after {
            return Err(DenialReason::ConsentExpired);
        }
        if !req
            .categories
            .iter()
            .all(|cat| c.consent.categories.binary_search(cat).is_ok())
        {
            return Err(DenialReason::CategoryNotCovered);
        }
        if c.used >= c.consent.max_uses {
            return Err(DenialReason::UsesExhausted);
        }
        Ok(c)
    }

    /// A bank's signed request is answered once (served or denied): its time must lie in the
    /// replay window and its id (`tagged(Entry, canonical request bytes)`) must be new.
    /// `req_bytes` is `CBOR(req)`.
    fn consume_request(
        &mut self,
        req: &QueryRequest,
        req_bytes: &[u8],
        now: TimeMs,
    ) -> Result<(), StateError> {
        let w = self.params.entry_time_window_ms;
        if req.time.saturating_add(w) < now || req.time > now.saturating_add(w) {
            return Err(StateError::StaleOrFuture {
                entry: req.time,
                block: now,
            });
        }
        let id = hash::tagged(Domain::Entry, &[b"query-request", req_bytes]);
        self.record_replay_id(&id)
    }

    /// The bank's signature over `chain ‖ req_bytes` (`req_bytes` = `CBOR(req)`, i.e. the
    /// payload of `query_signing_payload`).
    fn bank_signature(
        &self,
        req: &QueryRequest,
        req_bytes: &[u8],
        sig: &Signature,
    ) -> Result<SigRequirement, StateError> {
        let bank = self.org(&req.bank)?.ok_or_else(|| StateError::NotFound {
            what: "bank",
            id: req.bank.to_string(),
        })?;
        if bank.role != Role::Bank {
            return Err(StateError::Invalid(format!("{} is not a bank", req.bank)));
        }
        let payload = entry_signing_payload(&self.chain, req_bytes);
        Ok(SigRequirement {
            message: signing_message(SigDomain::QueryRequest, &payload),
            key: bank.key,
            signature: *sig,
        })
    }
}

/// `CBOR(req)`: hashed for the request's replay id and signed by the bank.
fn encode_request(req: &QueryRequest) -> Result<Vec<u8>, StateError> {
    codec::encode(req).map_err(|err| StateError::Corrupt {
        key: "query request".into(),
        err,
    })
}

//! Ledger entries: the signed statements that blocks carry, and their static validation.
//!
//! An entry is stored and hashed as the canonical CBOR of [`EntryWire`]: the body's canonical
//! bytes plus the author's signature over `chain id ‖ body bytes` (domain
//! [`SigDomain::Entry`]). The entry id is `tagged(Entry, stored bytes)`; consent, repair and
//! commitment ids are the id of the entry that created them. Static validation (this module)
//! checks sizes, formats and internal consistency; whether an entry is allowed at a given point
//! of the ledger is the state machine's job (`state`), and so is finding the author's key.

use crate::codec::{self, CodecError};
use crate::firmtag::FirmTag;
use crate::hash::{self, Digest, Domain};
use crate::keys::{PublicKey, SigDomain, Signature};
use crate::monitor::{AlertBatch, Monitoring};
use crate::types::{
    check_categories, check_text, Category, Grade, OrgId, Role, Severity, TimeMs, ValueError,
};
use serde::{Deserialize, Serialize};

/// Maximum size of one stored entry.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024;
/// Maximum number of served record ids in one query record.
pub const MAX_RECORD_IDS: usize = 64;
/// Maximum number of approvals on one membership change.
pub const MAX_APPROVALS: usize = 128;
/// Maximum length of free-text fields (reasons).
pub const MAX_TEXT: usize = 512;

/// Who signed an entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Author {
    /// A registered organisation, by id.
    Org(OrgId),
    /// A registered firm, by its keyed tag ([`FirmTag`]), never its USCC.
    Firm(FirmTag),
}

/// The signed part of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryBody {
    /// Signer.
    pub author: Author,
    /// Author's clock when signing; must lie within the chain's window around the block time.
    pub time: TimeMs,
    /// Makes otherwise identical statements distinct.
    pub nonce: u64,
    /// The statement.
    pub kind: EntryKind,
}

/// What an entry states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A quorum-approved membership change (org registration, key rotation, voting power).
    Membership(MembershipChange),
    /// An agency binds a firm (by tag) to the firm's signing key (or rotates it).
    FirmRegistered {
        /// The firm.
        firm: FirmTag,
        /// The firm's key.
        key: PublicKey,
    },
    /// A firm's consent (授权) for a bank to query its public credit data.
    ConsentGranted(Consent),
    /// The firm revokes one of its consents.
    ConsentRevoked {
        /// Id of the consent (id of its `ConsentGranted` entry).
        consent: Digest,
    },
    /// An agency served a bank's authorized query (logged before the data is released).
    QueryServed(QueryRecord),
    /// An agency refused a bank's signed query; the reason must be the one the ledger rules give.
    QueryDenied {
        /// The bank's signed request.
        request: SignedQueryRequest,
        /// Why it was refused.
        reason: DenialReason,
    },
    /// An agency published a penalty or list record (digest only).
    CreditRecordPublished(CreditRecord),
    /// A firm's credit commitment (信用承诺) made to an agency.
    CommitmentMade {
        /// Agency the commitment is made to.
        agency: OrgId,
        /// Salted digest of the commitment text.
        content: Digest,
        /// When it must be fulfilled.
        due: TimeMs,
    },
    /// The agency records that a commitment was broken.
    CommitmentBroken {
        /// Commitment id.
        commitment: Digest,
        /// Salted digest of the finding.
        finding: Digest,
    },
    /// A regulator assigns a supervision grade.
    GradeAssigned {
        /// The firm.
        firm: FirmTag,
        /// Supervision domain, e.g. `food-drug`, `environment`.
        domain: String,
        /// The grade.
        grade: Grade,
    },
    /// A firm asks for a record to be repaired (信用修复).
    RepairRequested {
        /// The record to repair.
        record: Digest,
        /// Salted digest of the proof that obligations were fulfilled.
        fulfilment: Digest,
        /// Salted digest of the signed commitment letter.
        commitment_letter: Digest,
    },
    /// The penalising agency approves or rejects a repair.
    RepairDecided {
        /// Repair id.
        repair: Digest,
        /// Approve or reject.
        approved: bool,
        /// Reason given.
        reason: String,
    },
    /// A registry (信用中国 or 公示系统, by the author's role) applied an approved repair.
    RepairApplied {
        /// Repair id.
        repair: Digest,
    },
    /// A validator's cosignature on a checkpoint, in C2SP signed-note form.
    CheckpointCosigned {
        /// Log size.
        size: u64,
        /// Log root at that size.
        root: Digest,
        /// Ed25519 signature over the checkpoint text (see `specs/checkpoints.md`).
        signature: Signature,
    },
    /// Where a checkpoint was anchored on an external chain.
    AnchorReceipt {
        /// Log size anchored.
        size: u64,
        /// Log root anchored.
        root: Digest,
        /// External chain name.
        chain: String,
        /// Transaction id on that chain.
        tx: String,
    },
    /// Proof that a validator signed two different headers at one height.
    Misbehaviour(Equivocation),
    /// An agency logs the alerts it delivers to a bank about a monitored firm (before releasing
    /// them; `monitor`).
    AlertsDelivered(AlertBatch),
    /// An agency erases its off-ledger data on a firm (crypto-shredding: the node destroys the
    /// data keys once this commits; `specs/privacy.md` §7). The ledger's digests stay.
    DataErased(Erasure),
}

/// What an agency erases, and why (entry kind `data_erased`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    /// The firm whose data is erased.
    pub firm: FirmTag,
    /// Data categories erased (canonical order, no duplicates).
    pub categories: Vec<Category>,
    /// Why; the ledger checks the reason against `reference`.
    pub reason: ErasureReason,
    /// The entry the reason refers to: the revoked or used-up consent, the repaired or expired
    /// record; for a data subject's request or a legal order, optionally the salted digest of
    /// the request document.
    pub reference: Option<Digest>,
}

/// Why data is erased (PIPL Art. 47; the credit-repair rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErasureReason {
    /// The firm revoked the consent the data was collected under (reference: the consent).
    ConsentWithdrawn,
    /// The consent's purpose ended: it expired or its uses are spent (reference: the consent).
    PurposeEnded,
    /// The record was repaired in both registries (reference: the record).
    RecordRepaired,
    /// The retention period ended (reference, optional: a record whose publicity ended).
    RetentionEnded,
    /// The firm asked for deletion (reference, optional: digest of the request).
    SubjectRequest,
    /// A court or regulator ordered it (reference, optional: digest of the order).
    LegalOrder,
}

impl ErasureReason {
    /// Every reason, in canonical order.
    pub const ALL: [ErasureReason; 6] = [
        ErasureReason::ConsentWithdrawn,
        ErasureReason::PurposeEnded,
        ErasureReason::RecordRepaired,
        ErasureReason::RetentionEnded,
        ErasureReason::SubjectRequest,
        ErasureReason::LegalOrder,
    ];

    /// Stable name (`consent_withdrawn`, ...), as in the JSON form.
    pub fn name(self) -> &'static str {
        match self {
            ErasureReason::ConsentWithdrawn => "consent_withdrawn",
            ErasureReason::PurposeEnded => "purpose_ended",
            ErasureReason::RecordRepaired => "record_repaired",
            ErasureReason::RetentionEnded => "retention_ended",
            ErasureReason::SubjectRequest => "subject_request",
            ErasureReason::LegalOrder => "legal_order",
        }
    }

    /// Parses a name (`-` accepted for `_`).
    pub fn parse(s: &str) -> Option<ErasureReason> {
        let s = s.replace('-', "_");
        ErasureReason::ALL.into_iter().find(|r| r.name() == s)
    }

    /// Whether the reason must name the entry it refers to.
    pub fn needs_reference(self) -> bool {
        matches!(
            self,
            ErasureReason::ConsentWithdrawn
                | ErasureReason::PurposeEnded
                | ErasureReason::RecordRepaired
        )
    }
}

/// A membership change and the validators' approvals of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipChange {
    /// The proposal that was approved.
    pub proposal: MembershipProposal,
    /// Approvals, sorted by org id, no duplicates; must reach a quorum of voting power.
    pub approvals: Vec<Approval>,
}

/// What validators approve: a change and the height where it takes effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipProposal {
    /// The change.
    pub change: MemberChange,
    /// First height at which the change is in force (must be above the including block).
    pub effective_height: u64,
}

/// A membership change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberChange {
    /// Register a new organisation.
    RegisterOrg {
        /// New id.
        org: OrgId,
        /// Display name.
        name: String,
        /// Role.
        role: Role,
        /// Signing key.
        key: PublicKey,
        /// Voting power (0 = not a validator).
        power: u64,
    },
    /// Replace an organisation's key.
    RotateKey {
        /// Organisation.
        org: OrgId,
        /// New key.
        key: PublicKey,
    },
    /// Change an organisation's voting power (validator-set change).
    SetPower {
        /// Organisation.
        org: OrgId,
        /// New power (0 removes it from the validator set).
        power: u64,
    },
    /// Rotate the consortium's firm key (`specs/privacy.md` §8): from the effective height,
    /// new entries name firms by their tag under the key of `epoch`. The key itself never goes
    /// on the ledger; `key_id` (`FirmKey::id`) lets every member check it holds the approved one.
    RotateFirmKey {
        /// The new epoch: one above the last approved (epoch 0 is the genesis key).
        epoch: u32,
        /// `FirmKey::id` of the new key.
        key_id: Digest,
    },
}

/// One validator's approval of a [`MembershipProposal`] (domain [`SigDomain::Membership`] over
/// `chain id ‖ canonical proposal bytes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Approving validator.
    pub validator: OrgId,
    /// Its signature.
    pub signature: Signature,
}

/// A firm's consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// The bank allowed to query.
    pub bank: OrgId,
    /// Salted digest of the purpose text (e.g. "loan application 2026-118"),
    /// [`Consent::purpose_digest`]; the salt stays with the firm and the bank, so the ledger does
    /// not reveal the purpose (`specs/privacy.md`).
    pub purpose: Digest,
    /// Data categories covered (canonical order, no duplicates).
    pub categories: Vec<Category>,
    /// Start of validity (inclusive), by block time.
    pub not_before: TimeMs,
    /// End of validity (exclusive), by block time.
    pub not_after: TimeMs,
    /// Number of queries allowed.
    pub max_uses: u32,
    /// Post-loan monitoring scope (`monitor`): absent from the encoding when `None`, so consents
    /// made before monitoring existed decode and re-encode unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<Monitoring>,
}

impl Consent {
    /// `salted(salt, purpose text)`: what a consent holds instead of its purpose.
    pub fn purpose_digest(salt: &[u8; 32], purpose: &str) -> Digest {
        hash::salted(salt, purpose.as_bytes())
    }
}

/// A bank's query request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryRequest {
    /// Querying bank.
    pub bank: OrgId,
    /// Firm whose data is requested.
    pub firm: FirmTag,
    /// Consent invoked.
    pub consent: Digest,
    /// Categories requested (canonical order).
    pub categories: Vec<Category>,
    /// Bank's nonce.
    pub nonce: u64,
    /// Bank's clock.
    pub time: TimeMs,
}

/// A query request with the bank's signature (domain [`SigDomain::QueryRequest`] over
/// `chain id ‖ canonical request bytes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedQueryRequest {
    /// The request.
    pub request: QueryRequest,
    /// The bank's signature.
    pub signature: Signature,
}

/// The agency's record of a served query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryRecord {
    /// The bank's signed request.
    pub request: SignedQueryRequest,
    /// Salted digest of the response released to the bank.
    pub response: Digest,
    /// Ids of the credit records served (digests), sorted, at most [`MAX_RECORD_IDS`].
    pub records: Vec<Digest>,
}

/// Why a query was refused. The ledger recomputes this and rejects a denial with another reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenialReason {
    /// No consent with that id.
    ConsentUnknown,
    /// The consent is for another firm.
    WrongFirm,
    /// The consent names another bank.
    WrongBank,
    /// The firm revoked it.
    ConsentRevoked,
    /// Before its validity window.
    ConsentNotYetValid,
    /// After its validity window.
    ConsentExpired,
    /// A requested category is not covered.
    CategoryNotCovered,
    /// No uses left.
    UsesExhausted,
}

impl DenialReason {
    /// Stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            DenialReason::ConsentUnknown => "consent.unknown",
            DenialReason::WrongFirm => "consent.wrong_firm",
            DenialReason::WrongBank => "consent.wrong_bank",
            DenialReason::ConsentRevoked => "consent.revoked",
            DenialReason::ConsentNotYetValid => "consent.not_yet_valid",
            DenialReason::ConsentExpired => "consent.expired",
            DenialReason::CategoryNotCovered => "consent.category_not_covered",
            DenialReason::UsesExhausted => "consent.exhausted",
        }
    }
}

/// A published penalty or list record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditRecord {
    /// Salted digest identifying the off-ledger record.
    pub record: Digest,
    /// The firm concerned.
    pub firm: FirmTag,
    /// Category (penalties, abnormal list, dishonest list, judgments, ...).
    pub category: Category,
    /// Severity.
    pub severity: Severity,
    /// Minimum publicity period before repair, in days, inside the severity's range.
    pub min_publicity_days: u16,
}

/// Two commit votes by one validator for different headers at the same height.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Equivocation {
    /// Offending validator.
    pub validator: OrgId,
    /// Height of both votes.
    pub height: u64,
    /// First header hash.
    pub header_a: Digest,
    /// Signature on the first.
    pub signature_a: Signature,
    /// Second header hash.
    pub header_b: Digest,
    /// Signature on the second.
    pub signature_b: Signature,
}

/// The stored form of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryWire {
    /// Canonical bytes of the [`EntryBody`].
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Author's signature over `chain id ‖ body`.
    pub signature: Signature,
}

/// A decoded, statically valid entry, with its stored bytes and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stored bytes (leaf data in the Merkle log).
    pub bytes: Vec<u8>,
    /// The decoded body.
    pub body: EntryBody,
    /// The body's canonical bytes (what the author signed, after the chain id).
    pub body_bytes: Vec<u8>,
    /// The author's signature.
    pub signature: Signature,
    /// `tagged(Entry, bytes)`.
    pub id: Digest,
}

/// Why an entry is statically invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// Not a canonical encoding of an entry.
    #[error("entry encoding: {0}")]
    Codec(#[from] CodecError),
    /// A field is out of its allowed form.
    #[error("entry field: {0}")]
    Field(#[from] ValueError),
    /// The author kind cannot make this kind of statement.
    #[error("a {author} cannot sign a {kind} entry")]
    WrongAuthorKind {
        /// `org` or `firm`.
        author: &'static str,
        /// Entry kind name.
        kind: &'static str,
    },
}

impl EntryError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EntryError::Codec(e) => e.code(),
            EntryError::Field(_) => "entry.field",
            EntryError::WrongAuthorKind { .. } => "entry.wrong_author_kind",
        }
    }
}

/// The payload an entry author signs.
pub fn entry_signing_payload(chain: &Digest, body_bytes: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(32 + body_bytes.len());
    p.extend_from_slice(chain.as_bytes());
    p.extend_from_slice(body_bytes);
    p
}

/// The payload a bank signs for a query request.
pub fn query_signing_payload(chain: &Digest, req: &QueryRequest) -> Result<Vec<u8>, CodecError> {
    Ok(entry_signing_payload(chain, &codec::encode(req)?))
}

/// The payload validators sign to approve a membership proposal.
pub fn membership_signing_payload(
    chain: &Digest,
    proposal: &MembershipProposal,
) -> Result<Vec<u8>, CodecError> {
    Ok(entry_signing_payload(chain, &codec::encode(proposal)?))
}

fn check_power(power: u64) -> Result<(), ValueError> {
    if power > crate::genesis::MAX_POWER {
        return Err(ValueError {
            what: "power",
            reason: format!("{power} exceeds {}", crate::genesis::MAX_POWER),
        });
    }
    Ok(())
}

impl EntryKind {
    /// Short name of the kind (stable; used in errors, indexes and the API).
    pub fn name(&self) -> &'static str {
        match self {
            EntryKind::Membership(_) => "membership",
            EntryKind::FirmRegistered { .. } => "firm_registered",
            EntryKind::ConsentGranted(_) => "consent_granted",
            EntryKind::ConsentRevoked { .. } => "consent_revoked",
            EntryKind::QueryServed(_) => "query_served",
            EntryKind::QueryDenied { .. } => "query_denied",
            EntryKind::CreditRecordPublished(_) => "credit_record_published",
            EntryKind::CommitmentMade { .. } => "commitment_made",
            EntryKind::CommitmentBroken { .. } => "commitment_broken",
            EntryKind::GradeAssigned { .. } => "grade_assigned",
            EntryKind::RepairRequested { .. } => "repair_requested",
            EntryKind::RepairDecided { .. } => "repair_decided",
            EntryKind::RepairApplied { .. } => "repair_applied",
            EntryKind::CheckpointCosigned { .. } => "checkpoint_cosigned",
            EntryKind::AnchorReceipt { .. } => "anchor_receipt",
            EntryKind::Misbehaviour(_) => "misbehaviour",
            EntryKind::AlertsDelivered(_) => "alerts_delivered",
            EntryKind::DataErased(_) => "data_erased",
        }
    }

    /// Whether a firm (rather than an organisation) signs this kind.
    pub fn firm_signed(&self) -> bool {
        matches!(
            self,
            EntryKind::ConsentGranted(_)
                | EntryKind::ConsentRevoked { .. }
                | EntryKind::CommitmentMade { .. }
                | EntryKind::RepairRequested { .. }
        )
    }

    /// The firm this entry concerns, if any is named in the entry itself.
    pub fn named_firm(&self) -> Option<FirmTag> {
        match self {
            EntryKind::FirmRegistered { firm, .. } | EntryKind::GradeAssigned { firm, .. } => {
                Some(*firm)
            }
            EntryKind::QueryServed(q) => Some(q.request.request.firm),
            EntryKind::QueryDenied { request, .. } => Some(request.request.firm),
            EntryKind::CreditRecordPublished(r) => Some(r.firm),
            EntryKind::AlertsDelivered(b) => Some(b.firm),
            EntryKind::DataErased(x) => Some(x.firm),
            _ => None,
        }
    }

    fn check_static(&self) -> Result<(), ValueError> {
        let field = |what: &'static str, reason: &str| ValueError {
            what,
            reason: reason.into(),
        };
        match self {
            EntryKind::Membership(m) => {
                if m.approvals.is_empty() || m.approvals.len() > MAX_APPROVALS {
                    return Err(field("approvals", "must hold 1-128 approvals"));
                }
                if m.approvals
                    .windows(2)
                    .any(|w| w[0].validator >= w[1].validator)
                {
                    return Err(field(
                        "approvals",
                        "must be sorted by validator without duplicates",
                    ));
                }
                match &m.proposal.change {
                    MemberChange::RegisterOrg { name, power, .. } => {
                        check_text("org name", name, 128, false)?;
                        check_power(*power)?;
                    }
                    MemberChange::SetPower { power, .. } => check_power(*power)?,
                    MemberChange::RotateKey { .. } => {}
                    MemberChange::RotateFirmKey { epoch, .. } => {
                        if *epoch == 0 {
                            return Err(field(
                                "epoch",
                                "a firm-key rotation names epoch 1 or above (0 is the genesis key)",
                            ));
                        }
                    }
                }
            }
            EntryKind::ConsentGranted(c) => {
                check_categories(&c.categories)?;
                if c.not_before >= c.not_after {
                    return Err(field("validity", "not_before must be before not_after"));
                }
                if c.max_uses == 0 {
                    return Err(field("max_uses", "must be at least 1"));
                }
                if let Some(m) = &c.monitoring {
                    m.check()?;
                }
            }
            EntryKind::AlertsDelivered(b) => b.check()?,
            EntryKind::DataErased(x) => {
                check_categories(&x.categories)?;
                if x.reason.needs_reference() && x.reference.is_none() {
                    return Err(field(
                        "reference",
                        "this reason must name the consent or record it refers to",
                    ));
                }
            }
            EntryKind::QueryServed(q) => {
                check_categories(&q.request.request.categories)?;
                if q.records.len() > MAX_RECORD_IDS {
                    return Err(field("records", "too many record ids"));
                }
                if q.records.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(field("records", "must be sorted without duplicates"));
                }
            }
            EntryKind::QueryDenied { request, .. } => {
                check_categories(&request.request.categories)?;
            }
            EntryKind::CreditRecordPublished(r) => {
                let (lo, hi) = r.severity.publicity_days();
                if r.min_publicity_days < lo || r.min_publicity_days > hi {
                    return Err(ValueError {
                        what: "min_publicity_days",
                        reason: format!(
                            "{} days is outside {lo}-{hi} for a {:?} record",
                            r.min_publicity_days, r.severity
                        ),
                    });
                }
            }
            EntryKind::GradeAssigned { domain, .. } => {
                check_text("grade domain", domain, 64, false)?;
            }
            EntryKind::RepairDecided { reason, .. } => {
                check_text("reason", reason, MAX_TEXT, false)?;
            }
            EntryKind::AnchorReceipt { chain, tx, .. } => {
                check_text("anchor chain", chain, 64, false)?;
                check_text("anchor tx", tx, 256, false)?;
            }
            EntryKind::Misbehaviour(e) => {
                if e.header_a == e.header_b {
                    return Err(field("evidence", "the two header hashes are equal"));
                }
            }
            EntryKind::FirmRegistered { .. }
            | EntryKind::ConsentRevoked { .. }
            | EntryKind::CommitmentMade { .. }
            | EntryKind::CommitmentBroken { .. }
            | EntryKind::RepairRequested { .. }
            | EntryKind::RepairApplied { .. }
            | EntryKind::CheckpointCosigned { .. } => {}
        }
        Ok(())
    }
}

impl Entry {
    /// Decodes and statically validates stored entry bytes. Signatures are checked later,
    /// against the author's key in the ledger state.
    pub fn decode(bytes: &[u8]) -> Result<Entry, EntryError> {
        let wire: EntryWire = codec::decode("entry", bytes, MAX_ENTRY_BYTES)?;
        let body: EntryBody = codec::decode("entry body", &wire.body, MAX_ENTRY_BYTES)?;
        body.check()?;
        Ok(Entry {
            id: hash::tagged(Domain::Entry, &[bytes]),
            bytes: bytes.to_vec(),
            body,
            body_bytes: wire.body,
            signature: wire.signature,
        })
    }

    /// Encodes and signs a body (client side).
    pub fn sign(
        chain: &Digest,
        body: EntryBody,
        key: &crate::keys::KeyPair,
    ) -> Result<Entry, EntryError> {
        body.check()?;
        let body_bytes = codec::encode(&body)?;
        let signature = key.sign(SigDomain::Entry, &entry_signing_payload(chain, &body_bytes));
        let bytes = codec::encode(&EntryWire {
            body: body_bytes.clone(),
            signature,
        })?;
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(CodecError::TooLarge {
                what: "entry",
                len: bytes.len(),
                limit: MAX_ENTRY_BYTES,
            }
            .into());
        }
        Ok(Entry {
            id: hash::tagged(Domain::Entry, &[&bytes]),
            bytes,
            body,
            body_bytes,
            signature,
        })
    }

    /// The payload the author's signature covers.
    pub fn signing_payload(&self, chain: &Digest) -> Vec<u8> {
        entry_signing_payload(chain, &self.body_bytes)
    }
}

impl EntryBody {
    /// Static validation: field formats and author kind.
    pub fn check(&self) -> Result<(), EntryError> {
        let firm_author = matches!(self.author, Author::Firm(_));
        if firm_author != self.kind.firm_signed() {
            return Err(EntryError::WrongAuthorKind {
                author: if firm_author { "firm" } else { "organisation" },
                kind: self.kind.name(),
            });
        }
        self.kind.check_static()?;
        Ok(())
    }

    /// The firm this entry concerns (author firm or named firm), for the per-firm index.
    pub fn firm(&self) -> Option<FirmTag> {
        match &self.author {
            Author::Firm(f) => Some(*f),
            Author::Org(_) => self.kind.named_firm(),
        }
    }
}

//! A deterministic sample consortium: genesis, keys and signing helpers derived from a seed.
//!
//! Used by the dev node (`xinyi-node --dev`), tests, benchmarks and vector generation so that
//! all of them build entries and certificates the same way. Keys derived from a seed are for
//! development only; a real deployment generates keys with `xinyi-node init`.

use crate::block::{sign_commit, Block, CommitCertificate};
use crate::entry::{
    query_signing_payload, Author, Entry, EntryBody, EntryError, EntryKind, QueryRequest,
    SignedQueryRequest,
};
use crate::firmtag::{FirmKey, FirmTag};
use crate::genesis::{Genesis, GenesisOrg, Params};
use crate::hash::{self, Digest, Domain};
use crate::keys::{KeyPair, SigDomain};
use crate::types::{OrgId, Role, TimeMs};
use crate::uscc::Uscc;
use std::collections::BTreeMap;

/// The sample organisations: (id, name, role, is validator).
pub const SAMPLE_ORGS: [(&str, &str, Role, bool); 6] = [
    (
        "auditor",
        "Guangzhou Audit Office (sample)",
        Role::Auditor,
        false,
    ),
    ("bank-a", "Sample Bank A", Role::Bank, false),
    ("bank-b", "Sample Bank B", Role::Bank, false),
    (
        "credit-china",
        "信用中国 registry node",
        Role::CreditChina,
        false,
    ),
    (
        "gsxt",
        "国家企业信用信息公示系统 registry node",
        Role::Gsxt,
        false,
    ),
    (
        "gz-credit",
        "广州市公共信用信息管理系统",
        Role::Agency,
        true,
    ),
];

/// Derives a key from a seed and a label.
pub fn derive_key(seed: &[u8], label: &str) -> KeyPair {
    KeyPair::from_seed(hash::tagged(Domain::Data, &[b"xinyi-sample-key", seed, label.as_bytes()]).0)
}

/// Genesis and keys of a sample consortium.
#[derive(Debug, Clone)]
pub struct SampleConsortium {
    /// Genesis document.
    pub genesis: Genesis,
    /// Chain id.
    pub chain: Digest,
    /// Keys of every organisation.
    pub keys: BTreeMap<OrgId, KeyPair>,
    /// Ids of validators.
    pub validators: Vec<OrgId>,
    /// The consortium's secret firm key (derived from the seed, [`sample_firm_tag_key`]).
    pub tag_key: FirmKey,
    seed: Vec<u8>,
}

/// The sample consortium's firm key (for firm tags): derived from the seed, development only.
pub fn sample_firm_tag_key(seed: &[u8]) -> FirmKey {
    FirmKey::from_bytes(hash::tagged(Domain::Data, &[b"xinyi-sample-firm-tag-key", seed]).0)
}

impl SampleConsortium {
    /// The same consortium under other chain parameters (a new genesis, so a new chain id).
    #[must_use]
    pub fn with_params(mut self, params: Params) -> SampleConsortium {
        self.genesis.params = params;
        self.chain = self.genesis.chain_id().unwrap_or(Digest::ZERO);
        self
    }

    /// The sample consortium with `validators` validator agencies (`gz-credit` plus
    /// `agency-2`..), all keys derived from `seed`.
    pub fn new(seed: &[u8], validators: usize, genesis_time: TimeMs) -> SampleConsortium {
        let mut orgs: Vec<(String, String, Role, bool)> = SAMPLE_ORGS
            .iter()
            .map(|(i, n, r, v)| (i.to_string(), n.to_string(), *r, *v))
            .collect();
        for i in 2..=validators.max(1) {
            orgs.push((
                format!("agency-{i}"),
                format!("Sample validator agency {i}"),
                Role::Agency,
                true,
            ));
        }
        orgs.sort();
        let mut keys = BTreeMap::new();
        let mut gorgs = Vec::new();
        let mut vals = Vec::new();
        for (id, name, role, val) in orgs {
            // Ids above are valid by construction.
            let Ok(oid) = OrgId::new(&id) else { continue };
            let k = derive_key(seed, &id);
            gorgs.push(GenesisOrg {
                id: oid.clone(),
                name,
                role,
                key: k.public(),
                power: u64::from(val),
            });
            if val {
                vals.push(oid.clone());
            }
            keys.insert(oid, k);
        }
        let genesis = Genesis {
            name: "xinyi.dev/guangzhou".into(),
            time: genesis_time,
            orgs: gorgs,
            params: Params::default(),
        };
        let chain = genesis.chain_id().unwrap_or(Digest::ZERO);
        SampleConsortium {
            genesis,
            chain,
            keys,
            validators: vals,
            tag_key: sample_firm_tag_key(seed),
            seed: seed.to_vec(),
        }
    }

    /// Key of an organisation (panics in tests only if the id is not a sample org).
    pub fn key(&self, org: &str) -> Option<&KeyPair> {
        OrgId::new(org).ok().and_then(|o| self.keys.get(&o))
    }

    /// Deterministic key of a firm.
    pub fn firm_key(&self, firm: &Uscc) -> KeyPair {
        derive_key(&self.seed, &format!("firm/{firm}"))
    }

    /// The ledger tag of a firm under the sample firm key.
    pub fn tag(&self, firm: &Uscc) -> FirmTag {
        self.tag_key.tag(firm)
    }

    /// The `i`-th sample firm's tag (see [`sample_firm`]).
    pub fn firm_tag(&self, i: u32) -> Result<FirmTag, crate::uscc::UsccError> {
        Ok(self.tag(&sample_firm(i)?))
    }

    /// Signs an entry by an organisation.
    pub fn org_entry(
        &self,
        org: &str,
        time: TimeMs,
        nonce: u64,
        kind: EntryKind,
    ) -> Result<Entry, EntryError> {
        let oid = OrgId::new(org)?;
        let key = self
            .keys
            .get(&oid)
            .cloned()
            .unwrap_or_else(|| derive_key(&self.seed, org));
        Entry::sign(
            &self.chain,
            EntryBody {
                author: Author::Org(oid),
                time,
                nonce,
                kind,
            },
            &key,
        )
    }

    /// `firm_registered` of `firm` (its tag and deterministic key) signed by agency `agency`.
    pub fn registration(
        &self,
        agency: &str,
        firm: &Uscc,
        time: TimeMs,
        nonce: u64,
    ) -> Result<Entry, EntryError> {
        let kind = EntryKind::FirmRegistered {
            firm: self.tag(firm),
            key: self.firm_key(firm).public(),
        };
        self.org_entry(agency, time, nonce, kind)
    }

    /// Signs an entry by a firm (author = its tag) with its deterministic key.
    pub fn firm_entry(
        &self,
        firm: Uscc,
        time: TimeMs,
        nonce: u64,
        kind: EntryKind,
    ) -> Result<Entry, EntryError> {
        Entry::sign(
            &self.chain,
            EntryBody {
                author: Author::Firm(self.tag(&firm)),
                time,
                nonce,
                kind,
            },
            &self.firm_key(&firm),
        )
    }

    /// A bank's signed query request.
    pub fn signed_query(
        &self,
        bank: &str,
        req: QueryRequest,
    ) -> Result<SignedQueryRequest, EntryError> {
        let key = self
            .key(bank)
            .cloned()
            .unwrap_or_else(|| derive_key(&self.seed, bank));
        let payload = query_signing_payload(&self.chain, &req)?;
        Ok(SignedQueryRequest {
            signature: key.sign(SigDomain::QueryRequest, &payload),
            request: req,
        })
    }

    /// A certificate for `block` signed by every validator.
    pub fn certify(&self, block: &Block) -> Result<CommitCertificate, crate::codec::CodecError> {
        let hh = block.header.hash()?;
        let votes = self
            .validators
            .iter()
            .filter_map(|v| {
                self.keys
                    .get(v)
                    .map(|k| sign_commit(k, v.clone(), &self.chain, block.header.height, &hh))
            })
            .collect();
        Ok(CommitCertificate {
            height: block.header.height,
            header_hash: hh,
            votes,
        })
    }

    /// The `i`-th sample firm's USCC (valid, Guangzhou division codes).
    pub fn firm(i: u32) -> Result<Uscc, crate::uscc::UsccError> {
        sample_firm(i)
    }
}

/// The `i`-th sample firm: USCC with authority 9 (market regulation), type 1 (enterprise), a
/// Guangzhou district division code and an organisation code derived from `i`.
pub fn sample_firm(i: u32) -> Result<Uscc, crate::uscc::UsccError> {
    const DISTRICTS: [&str; 11] = [
        "440103", "440104", "440105", "440106", "440111", "440112", "440113", "440114", "440115",
        "440117", "440118",
    ];
    const ALPHA: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    let d = DISTRICTS[(i as usize) % DISTRICTS.len()];
    let mut n = u64::from(i) * 7919 + 104_729;
    let mut code = [b'0'; 8];
    for c in code.iter_mut().rev() {
        *c = ALPHA[(n % 31) as usize];
        n /= 31;
    }
    let code = String::from_utf8_lossy(&code).to_string();
    Uscc::from_parts('9', '1', d, &code)
}

//! Shared helpers for the ledger's integration tests: a sample consortium and a driver that
//! builds, certifies and commits blocks through the same code the node uses.
#![allow(dead_code, clippy::new_without_default)]

use xinyi_ledger::chain::{Chain, CommittedBlock, Dropped};
use xinyi_ledger::entry::{Consent, CreditRecord, EntryKind, QueryRecord, QueryRequest};
use xinyi_ledger::hash::{self, Digest, Domain};
use xinyi_ledger::sample::SampleConsortium;
use xinyi_ledger::types::{Category, OrgId, Severity, TimeMs, DAY_MS};
use xinyi_ledger::{Entry, Uscc};

pub const T0: TimeMs = 1_795_000_000_000;

pub struct Driver {
    pub c: SampleConsortium,
    pub chain: Chain,
    pub blocks: Vec<CommittedBlock>,
    pub now: TimeMs,
    pub nonce: u64,
}

impl Driver {
    pub fn new() -> Driver {
        Driver::with(SampleConsortium::new(b"test", 1, T0))
    }

    /// A driver over consortium `c` (e.g. with more validators or other parameters).
    pub fn with(c: SampleConsortium) -> Driver {
        let (chain, _) = Chain::from_genesis(&c.genesis).unwrap();
        Driver {
            c,
            chain,
            blocks: vec![],
            now: T0 + 1000,
            nonce: 0,
        }
    }

    pub fn nonce(&mut self) -> u64 {
        self.nonce += 1;
        self.nonce
    }

    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
    }

    /// Builds, certifies and commits one block; returns what was dropped.
    pub fn block(&mut self, entries: Vec<Entry>) -> Vec<Dropped> {
        self.now += 10;
        let proposer = OrgId::new("gz-credit").unwrap();
        let (block, dropped) = self.chain.build_block(self.now, proposer, entries).unwrap();
        let cert = self.c.certify(&block).unwrap();
        let committed = self.chain.commit_built(cert).unwrap();
        self.blocks.push(committed);
        dropped
    }

    pub fn org(&mut self, org: &str, kind: EntryKind) -> Entry {
        let n = self.nonce();
        self.c.org_entry(org, self.now, n, kind).unwrap()
    }

    pub fn firm_e(&mut self, firm: Uscc, kind: EntryKind) -> Entry {
        let n = self.nonce();
        self.c.firm_entry(firm, self.now, n, kind).unwrap()
    }

    /// gz-credit publishes a penalty record about `firm` (a fresh record digest, returned
    /// beside the entry).
    pub fn penalty(
        &mut self,
        firm: Uscc,
        severity: Severity,
        min_publicity_days: u16,
    ) -> (Entry, Digest) {
        let record = hash::tagged(Domain::Data, &[&self.nonce().to_be_bytes()]);
        let e = self.org(
            "gz-credit",
            EntryKind::CreditRecordPublished(CreditRecord {
                record,
                firm: self.c.tag(&firm),
                category: Category::Penalties,
                severity,
                min_publicity_days,
            }),
        );
        (e, record)
    }

    pub fn register_firm(&mut self, firm: Uscc) -> Entry {
        let key = self.c.firm_key(&firm).public();
        let firm = self.c.tag(&firm);
        self.org("gz-credit", EntryKind::FirmRegistered { firm, key })
    }

    pub fn consent(&mut self, firm: Uscc, bank: &str, cats: &[Category], uses: u32) -> Entry {
        self.firm_e(
            firm,
            EntryKind::ConsentGranted(Consent {
                bank: OrgId::new(bank).unwrap(),
                purpose: Consent::purpose_digest(&[0x5a; 32], "loan application"),
                categories: cats.to_vec(),
                not_before: self.now - 1000,
                not_after: self.now + 30 * DAY_MS,
                max_uses: uses,
                monitoring: None,
            }),
        )
    }

    /// Registers `firm` and commits its consent for `bank` (`uses` uses of `cats`), one block
    /// each; returns the consent's id.
    pub fn consented_firm(
        &mut self,
        firm: Uscc,
        bank: &str,
        cats: &[Category],
        uses: u32,
    ) -> Digest {
        let reg = self.register_firm(firm);
        assert!(self.block(vec![reg]).is_empty(), "registration refused");
        let consent = self.consent(firm, bank, cats, uses);
        let id = consent.id;
        assert!(self.block(vec![consent]).is_empty(), "consent refused");
        id
    }

    pub fn request(
        &mut self,
        bank: &str,
        firm: Uscc,
        consent: Digest,
        cats: &[Category],
    ) -> QueryRequest {
        QueryRequest {
            bank: OrgId::new(bank).unwrap(),
            firm: self.c.tag(&firm),
            consent,
            categories: cats.to_vec(),
            nonce: self.nonce(),
            time: self.now,
        }
    }

    pub fn served(&mut self, bank: &str, firm: Uscc, consent: Digest, cats: &[Category]) -> Entry {
        let req = self.request(bank, firm, consent, cats);
        let signed = self.c.signed_query(bank, req).unwrap();
        self.org(
            "gz-credit",
            EntryKind::QueryServed(QueryRecord {
                request: signed,
                response: hash::tagged(Domain::Data, &[b"response"]),
                records: vec![],
            }),
        )
    }

    /// Asserts that a replica applying this driver's committed blocks from genesis reaches
    /// the same state head.
    #[track_caller]
    pub fn assert_replica_agrees(&self) {
        let (mut replica, _) = xinyi_ledger::Chain::from_genesis(&self.c.genesis).unwrap();
        for b in &self.blocks {
            replica
                .apply_block(b.block.clone(), b.certificate.clone())
                .unwrap();
        }
        assert_eq!(replica.state_head(), self.chain.state_head());
    }

    pub fn bundle(&self) -> Vec<u8> {
        xinyi_ledger::bundle::bundle_of(&self.c.genesis, &self.blocks).unwrap()
    }
}

pub fn firm(i: u32) -> Uscc {
    SampleConsortium::firm(i).unwrap()
}

//! Bad input for every decoder: random bytes never panic, and each kind of malformation gives
//! its own typed error.

mod common;
use common::*;
use proptest::prelude::*;
use xinyi_ledger::block::{Block, CommitCertificate};
use xinyi_ledger::bundle::BundleReader;
use xinyi_ledger::codec::{self, CodecError};
use xinyi_ledger::entry::{Entry, EntryBody, EntryError, EntryKind, EntryWire, MAX_ENTRY_BYTES};
use xinyi_ledger::genesis::Genesis;
use xinyi_ledger::note::{Checkpoint, Note};
use xinyi_ledger::types::Category::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_any_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Entry::decode(&bytes);
        let _ = Block::decode(&bytes);
        let _ = CommitCertificate::decode(&bytes);
        let _ = Genesis::from_json(&bytes);
        let _ = Note::parse_bytes(&bytes);
        let _ = Checkpoint::parse_text(&String::from_utf8_lossy(&bytes));
        if let Ok(r) = BundleReader::new(bytes.as_slice()) {
            for item in r { let _ = item; }
        }
    }

    #[test]
    fn mutated_entries_never_panic_and_never_decode_to_the_same_id(pos in 0usize..400, bit in 0u8..8) {
        let mut d = Driver::new();
        let f = firm(1);
        let e = d.consent(f, "bank-a", &[Registration, Tax], 2);
        let mut b = e.bytes.clone();
        let p = pos % b.len();
        b[p] ^= 1 << bit;
        if let Ok(m) = Entry::decode(&b) {
            prop_assert_ne!(m.id, e.id);
        }
    }
}

fn sample_entry() -> Entry {
    let mut d = Driver::new();
    d.consent(firm(1), "bank-a", &[Registration, Tax], 2)
}

#[test]
fn truncated_and_trailing_bytes_are_distinct_errors() {
    let e = sample_entry();
    let err = Entry::decode(&e.bytes[..e.bytes.len() - 1]).unwrap_err();
    assert!(
        matches!(err, EntryError::Codec(CodecError::Malformed { .. })),
        "{err:?}"
    );
    let mut long = e.bytes.clone();
    long.push(0);
    assert!(matches!(
        Entry::decode(&long).unwrap_err(),
        EntryError::Codec(CodecError::Malformed { .. })
    ));
    assert!(matches!(
        Entry::decode(&[]).unwrap_err(),
        EntryError::Codec(CodecError::Empty { .. })
    ));
    let huge = vec![0u8; MAX_ENTRY_BYTES + 1];
    assert!(matches!(
        Entry::decode(&huge).unwrap_err(),
        EntryError::Codec(CodecError::TooLarge { .. })
    ));
}

#[test]
fn non_canonical_encoding_is_rejected() {
    let e = sample_entry();
    let wire: EntryWire = codec::decode("entry", &e.bytes, 1 << 16).unwrap();
    // Same content, named-field (non-packed) encoding.
    let named = serde_cbor::to_vec(&wire).unwrap();
    assert_ne!(named, e.bytes);
    assert_eq!(
        Entry::decode(&named).unwrap_err().code(),
        "codec.non_canonical"
    );
}

#[test]
fn unknown_entry_kind_is_rejected() {
    let e = sample_entry();
    let wire: EntryWire = codec::decode("entry", &e.bytes, 1 << 16).unwrap();
    // Body: packed map {0: author, 1: time, 2: nonce, 3: kind}; replace the kind's variant
    // index (a small integer map key) by an unknown one.
    let mut body: serde_cbor::Value = serde_cbor::from_slice(&wire.body).unwrap();
    if let serde_cbor::Value::Map(m) = &mut body {
        let kind = m.get_mut(&serde_cbor::Value::Integer(3)).unwrap();
        *kind = serde_cbor::Value::Map(
            [(serde_cbor::Value::Integer(99), serde_cbor::Value::Null)]
                .into_iter()
                .collect(),
        );
    }
    let wire2 = EntryWire {
        body: serde_cbor::to_vec(&body).unwrap(),
        signature: wire.signature,
    };
    let bytes = codec::encode(&wire2).unwrap();
    assert_eq!(Entry::decode(&bytes).unwrap_err().code(), "codec.malformed");
}

#[test]
fn a_firm_tag_of_the_wrong_length_inside_an_entry_is_rejected_at_decode() {
    // Firms appear on the ledger as 32-byte tags (USCCs are checked at the API edge).
    let e = sample_entry();
    let wire: EntryWire = codec::decode("entry", &e.bytes, 1 << 16).unwrap();
    let body: EntryBody = codec::decode("body", &wire.body, 1 << 16).unwrap();
    let tag = body.firm().unwrap();
    let mut good = vec![0x58, 0x20];
    good.extend_from_slice(tag.as_bytes());
    let at = wire
        .body
        .windows(34)
        .position(|w| w == good.as_slice())
        .unwrap();
    // Same tag cut to 31 bytes: a well-formed CBOR byte string, but not a tag.
    let mut raw = wire.body[..at].to_vec();
    raw.extend_from_slice(&[0x58, 0x1f]);
    raw.extend_from_slice(&tag.as_bytes()[..31]);
    raw.extend_from_slice(&wire.body[at + 34..]);
    let bytes = codec::encode(&EntryWire {
        body: raw,
        signature: wire.signature,
    })
    .unwrap();
    let err = Entry::decode(&bytes).unwrap_err();
    assert_eq!(err.code(), "codec.malformed");
    assert!(err.to_string().contains("32 bytes"), "{err}");
}

#[test]
fn wrong_author_kind_and_bad_fields_are_rejected_statically() {
    let d = Driver::new();
    let body = EntryBody {
        author: xinyi_ledger::entry::Author::Org(xinyi_ledger::OrgId::new("bank-a").unwrap()),
        time: d.now,
        nonce: 1,
        kind: EntryKind::ConsentRevoked {
            consent: xinyi_ledger::Digest([1; 32]),
        },
    };
    let err = Entry::sign(&d.c.chain, body, d.c.key("bank-a").unwrap()).unwrap_err();
    assert_eq!(err.code(), "entry.wrong_author_kind");
    let mut e = d.c.firm_entry(
        firm(1),
        d.now,
        1,
        EntryKind::ConsentGranted(xinyi_ledger::entry::Consent {
            bank: xinyi_ledger::OrgId::new("bank-a").unwrap(),
            purpose: xinyi_ledger::entry::Consent::purpose_digest(&[0x5a; 32], "x"),
            categories: vec![Tax, Registration],
            not_before: 0,
            not_after: 1,
            max_uses: 1,
            monitoring: None,
        }),
    );
    assert_eq!(e.as_ref().unwrap_err().code(), "entry.field");
    e = d.c.firm_entry(
        firm(1),
        d.now,
        1,
        EntryKind::ConsentGranted(xinyi_ledger::entry::Consent {
            bank: xinyi_ledger::OrgId::new("bank-a").unwrap(),
            purpose: xinyi_ledger::entry::Consent::purpose_digest(&[0x5a; 32], "x"),
            categories: vec![Tax],
            not_before: 5,
            not_after: 1,
            max_uses: 1,
            monitoring: None,
        }),
    );
    assert_eq!(e.unwrap_err().code(), "entry.field");
}

#[test]
fn certificate_with_duplicate_signer_is_rejected() {
    let mut d = Driver::new();
    let reg = d.register_firm(firm(1));
    d.block(vec![reg]);
    let b = &d.blocks[0];
    let mut dup = b.certificate.clone();
    dup.votes.push(dup.votes[0].clone());
    let set = d.chain.state().validators().unwrap();
    assert_eq!(
        dup.verify(&b.block.header, &set).unwrap_err().code(),
        "cert.duplicate_signer"
    );
    let mut wrong = b.certificate.clone();
    wrong.height += 1;
    assert_eq!(
        wrong.verify(&b.block.header, &set).unwrap_err().code(),
        "cert.wrong_height"
    );
    let mut other = b.certificate.clone();
    other.header_hash = xinyi_ledger::Digest([3; 32]);
    assert_eq!(
        other.verify(&b.block.header, &set).unwrap_err().code(),
        "cert.wrong_header"
    );
}

#[test]
fn genesis_with_bad_fields_is_rejected() {
    let d = Driver::new();
    let json = d.c.genesis.to_json();
    assert!(Genesis::from_json(json.as_bytes()).is_ok());
    let unknown = json.replacen("\"name\"", "\"extra\": 1, \"name\"", 1);
    assert!(Genesis::from_json(unknown.as_bytes()).is_err());
    let mut g = d.c.genesis.clone();
    g.orgs.reverse();
    assert!(g.validate().is_err());
    let mut g = d.c.genesis.clone();
    for o in &mut g.orgs {
        o.power = 0;
    }
    assert!(g.validate().is_err());
}

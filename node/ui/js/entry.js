// Building and signing the entries a firm writes from the console, byte for byte as
// `xinyi_ledger::entry::Entry::sign` does (specs/entries.md §2–3, encoding.md): EntryBody
// {0 author, 1 time, 2 nonce, 3 kind} and EntryWire {0 body bytes, 1 signature}, signed in
// `sig/entry` over chain ‖ body. Only the kinds the console writes are here; `decodeEntry`
// reads any entry far enough to show it and to check what a list claims about it.

import { concat, ed25519Sign, hex, sigMessage, SIG, unhex32 } from "./crypto.js";
import { decodeCanonical, encode, struct, variant } from "./cbor.js";

export const CATEGORIES = [
  "registration", "licences", "penalties", "abnormal_list", "dishonest_list", "judgments",
  "tax", "social_insurance", "housing_fund", "utilities",
];

/** Denial reasons by index, as their API codes (`DenialReason::code`). */
export const DENIALS = [
  "consent.unknown", "consent.wrong_firm", "consent.wrong_bank", "consent.revoked",
  "consent.not_yet_valid", "consent.expired", "consent.category_not_covered", "consent.exhausted",
];

const KIND_NAMES = [
  "membership", "firm_registered", "consent_granted", "consent_revoked", "query_served",
  "query_denied", "credit_record_published", "commitment_made", "commitment_broken",
  "grade_assigned", "repair_requested", "repair_decided", "repair_applied",
  "checkpoint_cosigned", "anchor_receipt", "misbehaviour", "alerts_delivered", "data_erased",
];

/** EntryBody bytes for a firm author (tag: 32 bytes). */
export function firmBody(tag, time, nonce, kind) {
  return encode(struct(variant("firm", tag), BigInt(time), BigInt(nonce), kind));
}

/** Kind `consent_granted` (newtype, name key): Consent {bank, purpose, categories, nb, na, uses}. */
export function consentGrantedKind(c) {
  const cats = c.categories.map((x) => {
    const i = CATEGORIES.indexOf(x);
    if (i < 0) throw new Error(`entry.field: unknown category ${x}`);
    return i;
  }).sort((a, b) => a - b);
  if (cats.length === 0 || new Set(cats).size !== cats.length) throw new Error("entry.field: categories");
  const fields = [c.bank, c.purpose, cats, BigInt(c.not_before), BigInt(c.not_after), c.max_uses];
  // Post-loan monitoring scope (key 6, ledger/src/monitor.rs): absent from the bytes when unset.
  if (c.monitoring) {
    const m = c.monitoring.categories.map((x) => {
      const i = MONITOR_CATEGORIES.indexOf(x);
      if (i < 0) throw new Error(`entry.field: unknown monitoring category ${x}`);
      return i;
    }).sort((a, b) => a - b);
    if (m.length === 0 || new Set(m).size !== m.length) throw new Error("entry.field: monitoring categories");
    fields.push(struct(m));
  }
  return variant("consent_granted", struct(...fields));
}

/** `MonitorCategory` in its declaration order (its CBOR is the index). */
const MONITOR_CATEGORIES = [
  "penalties", "abnormal_list", "dishonest_list", "judgments", "other_records", "grades",
  "commitments_broken", "repairs",
];

/** Kind `consent_revoked` (struct variant 3): {consent}. */
export function consentRevokedKind(consentIdHex) {
  return variant(3, struct(unhex32(consentIdHex)));
}

/** The stored bytes of a signed entry: EntryWire {0: body, 1: signature}. */
export async function signEntry(key, chain, body) {
  const sig = await ed25519Sign(key, sigMessage(SIG.entry, concat(chain, body)));
  return encode(struct(body, sig));
}

const kindOf = (k) => {
  const [key, v] = [...k.entries()][0];
  return { name: typeof key === "number" ? KIND_NAMES[key] : key, v };
};

/** Decodes stored entry bytes into {author, time, nonce, kind, v} (the kind's CBOR value). */
export function decodeEntry(bytes) {
  const w = decodeCanonical(bytes);
  const body = decodeCanonical(w.get(0));
  const [ak, av] = [...body.get(0).entries()][0];
  const author = ak === "firm" ? { firm: hex(av) } : { org: av };
  const { name, v } = kindOf(body.get(3));
  return { author, time: body.get(1), nonce: body.get(2), kind: name, v, body: w.get(0), signature: w.get(1) };
}

/** The query request inside a query_served / query_denied entry, as JSON-like fields. */
export function queryRequestOf(e) {
  let sq;
  if (e.kind === "query_served") sq = e.v.get(0);
  else if (e.kind === "query_denied") sq = e.v.get(0);
  else return null;
  const r = sq.get(0);
  const out = {
    bank: r.get(0),
    firm: hex(r.get(1)),
    consent: hex(r.get(2)),
    categories: r.get(3).map((i) => CATEGORIES[i]),
  };
  if (e.kind === "query_denied") out.reason = DENIALS[e.v.get(1)];
  return out;
}

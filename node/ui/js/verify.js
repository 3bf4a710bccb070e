// What the console checks itself, written from the specs (not from the node's answers):
// RFC 9162 inclusion and consistency proofs (merkle.md), C2SP signed-note checkpoints with the
// > 2/3-power quorum of the genesis validators (checkpoints.md §2, §4), commit certificates
// (blocks.md §3), the state-root step and the per-firm access map proof (state.md §6), the
// access hash chain (state.md §4.6a) and the chain id of a genesis document (hashing.md).
// Every function returns a verdict or throws an Error whose message starts with a stable code.

import {
  b64, be64, concat, ed25519Verify, equal, hex, sha256, sigMessage, SIG, tagged, unb64, unhex,
  unhex32, utf8,
} from "./crypto.js";
import { encode, struct, variant } from "./cbor.js";
import { CATEGORIES } from "./entry.js";

const fail = (code, msg) => {
  const e = new Error(`${code}: ${msg}`);
  e.code = code;
  e.detail = msg;
  throw e;
};

// ---------- Merkle log (RFC 9162) ----------

export const leafHash = (data) => sha256(concat(new Uint8Array([0]), data));
export const nodeHash = (l, r) => sha256(concat(new Uint8Array([1]), l, r));

/** RFC 9162 §2.1.3.2: leaf at `index` of a tree of `size` with root `root`. */
export async function verifyInclusion(leaf, index, size, proof, root) {
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  if (BigInt(index) >= BigInt(size)) return false;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && equal(r, root);
}

/** RFC 9162 §2.1.4.2 with merkle.md §3's decisions (old size 0 rejected, exact length). */
export async function verifyConsistency(oldSize, newSize, oldRoot, newRoot, proof) {
  let f = BigInt(oldSize);
  let s = BigInt(newSize);
  if (f === 0n || f > s) return false;
  if (f === s) return proof.length === 0 && equal(oldRoot, newRoot);
  if (proof.length === 0) return false;
  let path = proof.slice();
  if ((f & (f - 1n)) === 0n) path = [oldRoot, ...path];
  if (path.length === 0) return false;
  let fn = f - 1n;
  let sn = s - 1n;
  while ((fn & 1n) === 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && equal(fr, oldRoot) && equal(sr, newRoot);
}

// ---------- genesis, trust ----------

const ROLES = ["agency", "bank", "credit_china", "gsxt", "auditor"];

/** CBOR of a genesis document (specs/state.md §7) from its JSON form. */
export function genesisCbor(g) {
  const orgs = g.orgs.map((o) => {
    const role = ROLES.indexOf(o.role);
    if (role < 0) fail("genesis.invalid", `unknown role ${o.role}`);
    return struct(o.id, o.name, role, unhex32(o.key), BigInt(o.power));
  });
  const p = g.params;
  const params = struct(p.repair_deadline_working_days, BigInt(p.entry_time_window_ms),
    p.max_block_entries);
  // Key 3, retention (specs/state.md §7): [{0 category, 1 days}], absent when empty.
  const retention = p.retention || [];
  if (retention.length > 0) {
    params.set(3, retention.map((r) => {
      const c = CATEGORIES.indexOf(r.category);
      if (c < 0) fail("genesis.invalid", `unknown retention category ${r.category}`);
      return struct(c, r.days);
    }));
  }
  return encode(struct(g.name, BigInt(g.time), orgs, params));
}

export async function chainId(g) {
  return tagged("xinyi/v1/genesis", genesisCbor(g));
}

/** The trust a genesis gives: origin, chain id, validators (power > 0) sorted by id. */
export async function trustFromGenesis(g) {
  const validators = g.orgs
    .filter((o) => o.power > 0)
    .map((o) => ({ org: o.id, key: unhex32(o.key), power: BigInt(o.power) }))
    .sort((a, b) => (a.org < b.org ? -1 : a.org > b.org ? 1 : 0));
  if (validators.length === 0) fail("genesis.invalid", "no validator");
  const total = validators.reduce((a, v) => a + v.power, 0n);
  return { origin: g.name, chain: await chainId(g), validators, total, genesis: g };
}

// ---------- C2SP signed notes and checkpoints ----------

export async function keyId(name, pub) {
  const h = await sha256(concat(utf8(name), new Uint8Array([0x0a, 0x01]), pub));
  return h.slice(0, 4);
}

/** Splits a signed note into its text and signature lines (signed-note). */
export function parseNote(note) {
  if (typeof note !== "string" || note.length > 1 << 20) fail("checkpoint.invalid", "note too large");
  const cut = note.lastIndexOf("\n\n");
  if (cut < 0) fail("checkpoint.invalid", "no signature block");
  const text = note.slice(0, cut + 1);
  const sigBlock = note.slice(cut + 2);
  if (!sigBlock.endsWith("\n")) fail("checkpoint.invalid", "missing final newline");
  const lines = sigBlock.slice(0, -1).split("\n");
  if (lines.length > 100) fail("checkpoint.invalid", "too many signatures");
  const sigs = lines.map((l) => {
    const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(l);
    if (!m) fail("checkpoint.invalid", "malformed signature line");
    const raw = unb64(m[2]);
    if (b64(raw) !== m[2] || raw.length < 5) fail("checkpoint.invalid", "bad signature base64");
    return { name: m[1], keyId: raw.slice(0, 4), rest: raw.slice(4) };
  });
  return { text, sigs };
}

/** Parses a checkpoint body `origin\nsize\nbase64(root)\n` (tlog-checkpoint). */
export function parseCheckpoint(text) {
  if (!text.endsWith("\n")) fail("checkpoint.invalid", "no final newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3 || lines.some((l) => l === "" || /\s$/.test(l) || /[\x00-\x1f]/.test(l))) {
    fail("checkpoint.invalid", "malformed body");
  }
  if (!/^(0|[1-9][0-9]*)$/.test(lines[1])) fail("checkpoint.invalid", "bad size");
  const size = BigInt(lines[1]);
  if (size > 0xffffffffffffffffn) fail("checkpoint.invalid", "size above u64");
  let root;
  try { root = unb64(lines[2]); } catch (_) { fail("checkpoint.invalid", "bad root"); }
  if (root.length !== 32 || b64(root) !== lines[2]) fail("checkpoint.invalid", "bad root");
  return { origin: lines[0], size, root };
}

/**
 * Verifies a checkpoint note against the trust: every signature line matching a validator
 * (name = origin, key id) must verify over the text; returns the body, the signers, their power,
 * whether it is final (3·power > 2·total) and the other lines (witness cosignatures, shown but
 * not trusted: the console has no witness keys).
 */
export async function openCheckpoint(trust, note) {
  const { text, sigs } = parseNote(note);
  const cp = parseCheckpoint(text);
  if (cp.origin !== trust.origin) fail("checkpoint.origin", `origin ${cp.origin} is not ${trust.origin}`);
  const ids = await Promise.all(trust.validators.map((v) => keyId(trust.origin, v.key)));
  const signers = [];
  const others = [];
  let power = 0n;
  const msg = utf8(text);
  for (const s of sigs) {
    const i = s.name === trust.origin ? ids.findIndex((id) => equal(id, s.keyId)) : -1;
    if (i < 0) {
      const o = { name: s.name, keyId: hex(s.keyId) };
      if (s.rest.length === 72) {
        o.time = Number(new DataView(s.rest.buffer, s.rest.byteOffset).getBigUint64(0));
      }
      others.push(o);
      continue;
    }
    const v = trust.validators[i];
    if (s.rest.length !== 64 || !(await ed25519Verify(v.key, s.rest, msg))) {
      fail("checkpoint.invalid", `signature of ${v.org} does not verify`);
    }
    if (!signers.includes(v.org)) {
      signers.push(v.org);
      power += v.power;
    }
  }
  if (signers.length === 0) fail("checkpoint.invalid", "no validator signature");
  return { ...cp, text, signers, power, total: trust.total, final: 3n * power > 2n * trust.total, others };
}

// ---------- entries ----------

/** Entry id = tagged(Entry, stored bytes). */
export const entryId = (bytes) => tagged("xinyi/v1/entry", bytes);

/**
 * An entry read (`GET /v1/entries/{p}` answer, or a write answer with the stored bytes): the
 * entry's id, its leaf in a final checkpoint's tree by the inclusion proof. Returns
 * {position, size, signers}.
 */
export async function verifyEntryInclusion(trust, bytes, position, proofHex, note, wantId, { pending = false } = {}) {
  const cp = await openCheckpoint(trust, note);
  // `pending`: a checkpoint not yet quorum-cosigned is accepted here (a fresh write's); the caller
  // then proves it consistent with a final one (api.js `verifyFinal`).
  if (!cp.final && !pending) fail("checkpoint.no_quorum", `signed by power ${cp.power} of ${cp.total}`);
  if (wantId !== undefined && hex(await entryId(bytes)) !== wantId) {
    fail("entry.id_mismatch", "the entry bytes do not hash to the listed id");
  }
  let proof;
  try { proof = proofHex.map(unhex32); } catch (_) { fail("proof.malformed", "proof hash is not 32 bytes of hex"); }
  if (!(await verifyInclusion(await leafHash(bytes), position, cp.size, proof, cp.root))) {
    fail("proof.inclusion", `entry ${position} is not in the checkpoint of size ${cp.size}`);
  }
  return { position, size: cp.size, signers: cp.signers, cp };
}

// ---------- blocks ----------

/** CBOR of a block header from its JSON form (blocks.md §1). */
export function headerCbor(h) {
  return encode(struct(h.version, unhex32(h.chain), BigInt(h.height), unhex32(h.prev), BigInt(h.time),
    h.proposer, unhex32(h.validator_set), unhex32(h.entries_root), h.entry_count, BigInt(h.log_size),
    unhex32(h.log_root), unhex32(h.state_root)));
}

export const headerHash = (h) => tagged("xinyi/v1/header", headerCbor(h));

/** Commit certificate verification (blocks.md §3) against the trust's validators. */
export async function verifyCertificate(trust, header, cert) {
  if (BigInt(cert.height) !== BigInt(header.height)) fail("cert.wrong_height", "height differs");
  const hh = await headerHash(header);
  if (hex(hh) !== cert.header_hash) fail("cert.wrong_header", "header hash differs");
  if (!equal(unhex32(header.chain), trust.chain)) fail("cert.wrong_chain", "another chain");
  let prev = null;
  let power = 0n;
  const keys = [];
  for (const v of cert.votes) {
    if (prev !== null && !(v.validator > prev)) fail("cert.duplicate_signer", v.validator);
    prev = v.validator;
    const val = trust.validators.find((x) => x.org === v.validator);
    if (!val) fail("cert.unknown_signer", v.validator);
    power += val.power;
    keys.push([val, v]);
  }
  const quorum = (trust.total * 2n) / 3n + 1n;
  if (power < quorum) fail("cert.below_quorum", `power ${power} < ${quorum}`);
  const msg = sigMessage(SIG.commit, concat(trust.chain, be64(header.height), hh));
  for (const [val, v] of keys) {
    if (!(await ed25519Verify(val.key, unhex(v.signature), msg))) fail("cert.bad_signature", v.validator);
  }
  return { hash: hex(hh), power };
}

// ---------- state root, access map, access chain ----------

export const rootStep = (prev, height, ws, accessRoot) =>
  tagged("xinyi/v1/state", concat(prev, be64(height), ws, accessRoot));

export const accessKey = (tag) => tagged("xinyi/v1/access-key", tag);
export const accessValue = (head, count) => sha256(encode(struct(head, BigInt(count))));
const smtLeaf = (k, v) => tagged("xinyi/v1/smt/leaf", concat(k, v));
const smtNode = (l, r) => tagged("xinyi/v1/smt/node", concat(l, r));
const bit = (k, d) => (k[d >> 3] >> (7 - (d & 7))) & 1;

/** The compact sparse Merkle proof of state.md §6 (ledger/src/smt.rs `verify`). */
export async function verifySmt(root, key, value, proof) {
  const n = proof.siblings.length;
  if (n > 256) return false;
  let h;
  const t = proof.terminal;
  if (t.empty === true) {
    if (value) return false;
    h = new Uint8Array(32);
  } else {
    const k = unhex32(t.key);
    const v = unhex32(t.value);
    if (value) {
      if (!equal(k, key) || !equal(v, value)) return false;
    } else {
      if (equal(k, key)) return false;
      for (let d = 0; d < n; d++) if (bit(k, d) !== bit(key, d)) return false;
    }
    h = await smtLeaf(k, v);
  }
  for (let d = n - 1; d >= 0; d--) {
    const s = unhex32(proof.siblings[d]);
    h = bit(key, d) ? await smtNode(s, h) : await smtNode(h, s);
  }
  return equal(h, root);
}

/** Next access head: SHA-256("xinyi/v1/access" ‖ 0x00 ‖ head ‖ entry id) (state.md §4.6a). */
export const accessNext = (head, id) => tagged("xinyi/v1/access", concat(head, id));

/**
 * The completeness proof of a firm's access list (`GET /v1/firms/{uscc}/access-proof` and the
 * access log's items): certificate of the head block against the genesis validators, the state
 * root step, the sparse Merkle proof of the firm's head, then the hash chain over the listed
 * access ids below the header's log size compared with the proven head and count.
 */
export async function verifyAccessCompleteness(trust, tagHex, ap, items) {
  await verifyCertificate(trust, ap.header, ap.certificate);
  const accessRoot = unhex32(ap.access_root);
  const root = await rootStep(unhex32(ap.prev_root), ap.header.height, unhex32(ap.write_set_hash), accessRoot);
  if (hex(root) !== ap.header.state_root) {
    fail("access_log.proof", "the access map root is not committed in the certified state root");
  }
  // One proof per firm-key epoch's tag (privacy.md §8); a node without rotations gives one.
  const proofs = Array.isArray(ap.tags) ? ap.tags : [{ tag: tagHex, value: ap.value, proof: ap.proof }];
  const tagOf = (it) => it.tag || it.firm || tagHex;
  let total = 0;
  let last = -1;
  for (const it of items) {
    if (it.position <= last) fail("access_log.incomplete", "the list is not in log order");
    last = it.position;
    if (!proofs.some((p) => p.tag === tagOf(it))) fail("access_log.mismatch", `item ${it.position} names a tag the proof does not cover`);
  }
  for (const p of proofs) {
    const key = await accessKey(unhex32(p.tag));
    const value = p.value ? await accessValue(unhex32(p.value.head), p.value.count) : null;
    if (!(await verifySmt(accessRoot, key, value, p.proof))) {
      fail("access_log.proof", "the firm's access head does not verify against the access map root");
    }
    let head = new Uint8Array(32);
    let count = 0;
    for (const it of items) {
      if (it.position >= ap.header.log_size || tagOf(it) !== p.tag) continue;
      head = await accessNext(head, unhex32(it.id));
      count++;
    }
    const want = p.value ? p.value : { head: hex(new Uint8Array(32)), count: 0 };
    if (count !== Number(want.count) || hex(head) !== want.head) {
      fail("access_log.incomplete", `the list has ${count} accesses below log size ${ap.header.log_size}; the certified state has ${want.count}`);
    }
    total += count;
  }
  return { height: ap.header.height, logSize: ap.header.log_size, count: total };
}

export { variant };

// Byte helpers, SHA-256 and Ed25519 through WebCrypto (crypto.subtle), and xinyi's
// domain-separated hashes and signatures (specs/hashing.md). No key material leaves this module
// except as CryptoKey objects and the seed the caller already holds.

export const enc = new TextEncoder();
export const utf8 = (s) => enc.encode(s);

export function hex(b) {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export function unhex(s) {
  if (typeof s !== "string" || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new Error("not hex");
  }
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 * i, 2), 16);
  return out;
}

export function unhex32(s) {
  const b = unhex(s);
  if (b.length !== 32) throw new Error("not 32 bytes");
  return b;
}

export function b64(b) {
  let s = "";
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s);
}

export function unb64(s) {
  const t = atob(s);
  const out = new Uint8Array(t.length);
  for (let i = 0; i < t.length; i++) out[i] = t.charCodeAt(i);
  return out;
}

export function b64url(s) {
  return unb64(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
}

export function concat(...parts) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

export function be64(n) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

export async function sha256(b) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", b));
}

/** tagged(tag, m) = SHA-256(tag ‖ 0x00 ‖ m) (hashing.md §1). */
export async function tagged(tag, m) {
  return sha256(concat(utf8(tag), new Uint8Array([0]), m));
}

/** Salted digest of off-ledger data: tagged("xinyi/v1/data", salt ‖ data). */
export async function salted(salt, data) {
  return tagged("xinyi/v1/data", concat(salt, data));
}

export const SIG = {
  entry: "xinyi/v1/sig/entry",
  queryRequest: "xinyi/v1/sig/query-request",
  commit: "xinyi/v1/sig/commit",
  apiRequest: "xinyi/v1/sig/api-request",
};

/** message(tag, payload) = tag ‖ 0x00 ‖ payload (hashing.md §2). */
export function sigMessage(tag, payload) {
  return concat(utf8(tag), new Uint8Array([0]), payload);
}

const keyCache = new Map();

/** Ed25519 verification (RFC 8032) of `sig` over `msg` under the 32-byte `pub`. */
export async function ed25519Verify(pub, sig, msg) {
  if (pub.length !== 32 || sig.length !== 64) return false;
  const id = hex(pub);
  let key = keyCache.get(id);
  try {
    if (!key) {
      key = await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
      keyCache.set(id, key);
    }
    return await crypto.subtle.verify({ name: "Ed25519" }, key, sig, msg);
  } catch (_) {
    return false;
  }
}

const PKCS8_ED25519 = unhex("302e020100300506032b657004220420");

/** A signing key from a 32-byte seed (the xinyi key file), with its public key. */
export async function keyFromSeed(seed) {
  if (seed.length !== 32) throw new Error("seed must be 32 bytes");
  const pk8 = concat(PKCS8_ED25519, seed);
  const tmp = await crypto.subtle.importKey("pkcs8", pk8, { name: "Ed25519" }, true, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", tmp);
  const pub = b64url(jwk.x);
  const key = await crypto.subtle.importKey("pkcs8", pk8, { name: "Ed25519" }, false, ["sign"]);
  return { key, pub };
}

/**
 * A firm's key of firm-key epoch `epoch` (privacy.md §8, ledger `KeyPair::firm_epoch_key`): the
 * key itself for 0, else the key whose seed is SHA-256("xinyi/v1/firm-epoch-key" ‖ 0x00 ‖ seed ‖
 * BE32(epoch)).
 */
export async function firmEpochKey(seed, epoch) {
  if (epoch === 0) return keyFromSeed(seed);
  const e = new Uint8Array(4);
  new DataView(e.buffer).setUint32(0, epoch);
  return keyFromSeed(await sha256(concat(utf8("xinyi/v1/firm-epoch-key"), new Uint8Array([0]), seed, e)));
}

export async function ed25519Sign(key, msg) {
  return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key, msg));
}

/** Parses a plain key file (`xinyi-ed25519-secret:<64 hex>`); encrypted files are refused. */
export function parseKeyFile(text) {
  const t = text.trim();
  if (t.startsWith("xinyi-encrypted-key/v1")) {
    const e = new Error("key.encrypted");
    e.code = "ui.key_encrypted";
    throw e;
  }
  const p = "xinyi-ed25519-secret:";
  if (!t.startsWith(p)) {
    const e = new Error("key.malformed");
    e.code = "ui.key_malformed";
    throw e;
  }
  try {
    return unhex32(t.slice(p.length));
  } catch (_) {
    const e = new Error("key.malformed");
    e.code = "ui.key_malformed";
    throw e;
  }
}

export function randomBytes(n) {
  return crypto.getRandomValues(new Uint8Array(n));
}

/** A random u64 as a BigInt. */
export function randomU64() {
  return new DataView(randomBytes(8).buffer).getBigUint64(0);
}

// Talking to the node: JSON fetches with `{code, message}` errors, `X-Xinyi-Auth` signed reads
// (specs/api.md: sig/api-request over chain ‖ "METHOD path?query\ntime\nnonce"), the signed-in
// identity (kept in sessionStorage, never sent anywhere but as signatures), the trust taken from
// the node's genesis (chain id recomputed here and compared with /health), and the memory of
// the largest final checkpoint this browser verified (split-view detection, checkpoints.md §5).

import { concat, ed25519Sign, firmEpochKey, hex, keyFromSeed, randomBytes, sigMessage, SIG, unb64, unhex, unhex32, utf8 } from "./crypto.js";
import { openCheckpoint, trustFromGenesis, verifyConsistency, verifyEntryInclusion } from "./verify.js";

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(`${code}: ${message}`);
    this.status = status;
    this.code = code;
    this.detail = message;
    this.body = body;
  }
}

let skew = 0;
let trustP = null;
let session = null;

export const nodeTime = () => Date.now() + skew;

async function raw(method, path, { headers = {}, body } = {}) {
  let r;
  try {
    r = await fetch(path, { method, headers, body, cache: "no-store", credentials: "omit" });
  } catch (e) {
    throw new ApiError(0, "ui.network", String(e));
  }
  return r;
}

async function parse(r) {
  const text = await r.text();
  let v = null;
  try { v = text ? JSON.parse(text) : null; } catch (_) { v = null; }
  if (!r.ok) {
    if (v && typeof v.code === "string") throw new ApiError(r.status, v.code, v.message || "", v);
    throw new ApiError(r.status, "ui.bad_answer", `HTTP ${r.status}`);
  }
  if (v === null) throw new ApiError(r.status, "ui.bad_answer", "not JSON");
  return v;
}

export async function getJson(path) {
  return parse(await raw("GET", path));
}

export async function getText(path) {
  const r = await raw("GET", path);
  if (!r.ok) return parse(r);
  return r.text();
}

export async function health() {
  const h = await getJson("/health");
  if (typeof h.time_ms === "number") skew = h.time_ms - Date.now();
  return h;
}

/** The genesis trust (validators, origin, chain id), checked against the node's chain id. */
export function trust() {
  if (!trustP) {
    trustP = (async () => {
      const [g, h] = await Promise.all([getJson("/v1/genesis"), health()]);
      const t = await trustFromGenesis(g);
      if (hex(t.chain) !== h.chain_id) {
        throw new ApiError(0, "genesis.chain_id", `computed ${hex(t.chain)}, node says ${h.chain_id}`);
      }
      return t;
    })();
    trustP.catch(() => { trustP = null; });
  }
  return trustP;
}

// ---------- identity ----------

/** Signs in: kind "firm" (id = USCC) or "org" (id = org id), seed = 32 bytes from the key file. */
export async function signIn(kind, id, seed) {
  const { key, pub } = await keyFromSeed(seed);
  // authKey signs X-Xinyi-Auth: a firm's key of the newest firm-key epoch it is registered in
  // (privacy.md §8), found on a node holding several epochs by asking for its tag with each
  // epoch's key, newest first.
  session = { kind, id, key, pub, seed, authKey: key };
  if (kind === "firm") {
    const epochs = (await health()).firm_keys?.epochs ?? 1;
    for (let e = epochs - 1; e > 0; e--) {
      session.authKey = (await firmEpochKey(seed, e)).key;
      try {
        await signedGet(`/v1/firms/${id}/tag`);
        break;
      } catch (_) {
        session.authKey = key;
      }
    }
  }
  sessionStorage.setItem("xinyi.session", JSON.stringify({ kind, id, seed: hex(seed) }));
  return session;
}

/** The signed-in firm's key of firm-key epoch `epoch` ({key, pub}). */
export const epochKey = (epoch) => firmEpochKey(session.seed, epoch);

export function signOut() {
  session = null;
  sessionStorage.removeItem("xinyi.session");
}

export async function restore() {
  if (session) return session;
  const s = sessionStorage.getItem("xinyi.session");
  if (!s) return null;
  try {
    const v = JSON.parse(s);
    return await signIn(v.kind, v.id, unhex32(v.seed));
  } catch (_) {
    signOut();
    return null;
  }
}

export const current = () => session;

async function authHeader(method, pathAndQuery) {
  const t = await trust();
  const time = nodeTime();
  const nonce = hex(randomBytes(12));
  const who = session.kind === "firm" ? `firm:${session.id}` : `org:${session.id}`;
  const payload = concat(t.chain, utf8(`${method} ${pathAndQuery}\n${time}\n${nonce}`));
  const sig = await ed25519Sign(session.authKey, sigMessage(SIG.apiRequest, payload));
  return `${who};${time};${nonce};${hex(sig)}`;
}

/** A GET signed with the current identity (unsigned when nobody is signed in). */
export async function signedGet(path) {
  const headers = {};
  if (session) headers["X-Xinyi-Auth"] = await authHeader("GET", path);
  return parse(await raw("GET", path, { headers }));
}

/** POSTs a signed entry (stored bytes) to a write route. */
export async function postEntry(path, bytes) {
  let s = "";
  for (const x of bytes) s += String.fromCharCode(x);
  return parse(await raw("POST", path, {
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ entry: btoa(s) }),
  }));
}

export const entryBytes = (b64s) => unb64(b64s);

// ---------- checkpoint memory ----------

const memKey = (t) => `xinyi.checkpoint.${t.origin} ${hex(t.chain)}`;

/**
 * Records a verified final checkpoint: compared with the largest this browser saw (same size →
 * same root; larger → the node's consistency proof must verify; smaller → a proof up to the
 * stored one). Throws `split_view` on any failure, leaving the memory as it was.
 */
export async function remember(t, cp, note) {
  if (!cp.final) return;
  let old = null;
  try { old = JSON.parse(localStorage.getItem(memKey(t)) || "null"); } catch (_) { old = null; }
  const split = (m) => { throw new ApiError(0, "split_view", m); };
  if (old) {
    const oldSize = BigInt(old.size);
    const oldRoot = unb64(old.root);
    const rootB64 = btoa(String.fromCharCode(...cp.root));
    if (oldSize === cp.size) {
      if (old.root !== rootB64) split(`two checkpoints of size ${cp.size} with different roots`);
      return;
    }
    const [a, b, ra, rb] = oldSize < cp.size ? [oldSize, cp.size, oldRoot, cp.root] : [cp.size, oldSize, cp.root, oldRoot];
    if (a > 0n) {
      const p = await getJson(`/v1/consistency?from=${a}&to=${b}`);
      const ok = await verifyConsistency(a, b, ra, rb, p.proof.map(unhex));
      if (!ok) split(`the checkpoint of size ${b} does not extend the one of size ${a}`);
    }
    if (oldSize > cp.size) return;
  }
  localStorage.setItem(memKey(t), JSON.stringify({
    size: cp.size.toString(), root: btoa(String.fromCharCode(...cp.root)), note, seen_at_ms: Date.now(),
  }));
}

/** The latest checkpoint, verified, final-checked and remembered. */
export async function latestCheckpoint() {
  const t = await trust();
  const note = await getText("/v1/checkpoint");
  const cp = await openCheckpoint(t, note);
  await remember(t, cp, note);
  return { cp, note };
}

/**
 * A write answer or entry read `w` ({position, inclusion_proof, checkpoint, id}) for the entry
 * `bytes`, verified as the CLI does (`Ctx::verify_entry`): the entry is included in the answer's
 * checkpoint; when that one is not yet quorum-cosigned (a consortium cosigns after the block),
 * the next final checkpoint covering it (polled for up to 20 s) must extend it (consistency
 * proof) and is remembered. Answers {position, size, signers} of the final one.
 */
export async function verifyFinal(t, bytes, w) {
  const inc = await verifyEntryInclusion(t, bytes, w.position, w.inclusion_proof, w.checkpoint, w.id, { pending: true });
  const cp = inc.cp;
  if (cp.final) {
    await remember(t, cp, w.checkpoint);
    return inc;
  }
  const deadline = Date.now() + 20000;
  for (;;) {
    const note = await getText("/v1/checkpoint");
    const f = await openCheckpoint(t, note);
    if (f.final && f.size >= cp.size) {
      if (f.size > cp.size) {
        const p = await getJson(`/v1/consistency?from=${cp.size}&to=${f.size}`);
        if (!(await verifyConsistency(cp.size, f.size, cp.root, f.root, p.proof.map(unhex)))) {
          throw new ApiError(0, "proof.consistency", `the final checkpoint of size ${f.size} does not extend the write's checkpoint of size ${cp.size}`);
        }
      } else if (hex(f.root) !== hex(cp.root)) {
        throw new ApiError(0, "split_view", `two checkpoints of size ${cp.size} with different roots`);
      }
      await remember(t, f, note);
      return { position: w.position, size: f.size, signers: f.signers };
    }
    if (Date.now() > deadline) {
      throw new ApiError(0, "checkpoint.no_quorum", `no quorum-cosigned checkpoint covers position ${w.position} after 20 s (the write's is signed by power ${cp.power} of ${cp.total})`);
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** A random entry nonce (u64). */
export { randomU64 as randomNonce } from "./crypto.js";

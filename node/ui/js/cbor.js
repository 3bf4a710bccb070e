// Canonical CBOR (specs/encoding.md) for exactly the shapes the console needs: unsigned
// integers (Number or BigInt) in shortest form, byte strings (Uint8Array), text, booleans,
// null, arrays and maps (JS Map, keys written in insertion order: callers build struct maps with
// keys 0..n-1 and 1-entry variant maps). The decoder reads any definite-length item of those
// kinds into the same values and refuses trailing bytes, floats, tags, negative integers and
// indefinite lengths; `decodeCanonical` also requires re-encoding to give the input back.

import { concat, equal, utf8 } from "./crypto.js";

function head(major, n) {
  n = BigInt(n);
  const m = major << 5;
  if (n < 24n) return new Uint8Array([m | Number(n)]);
  if (n < 0x100n) return new Uint8Array([m | 24, Number(n)]);
  if (n < 0x10000n) return new Uint8Array([m | 25, Number(n >> 8n), Number(n & 0xffn)]);
  if (n < 0x100000000n) {
    const b = new Uint8Array(5);
    b[0] = m | 26;
    new DataView(b.buffer).setUint32(1, Number(n));
    return b;
  }
  if (n <= 0xffffffffffffffffn) {
    const b = new Uint8Array(9);
    b[0] = m | 27;
    new DataView(b.buffer).setBigUint64(1, n);
    return b;
  }
  throw new Error("integer above u64");
}

/** A struct map {0: f0, 1: f1, ...} (encoding.md §3). */
export function struct(...fields) {
  return new Map(fields.map((f, i) => [i, f]));
}

/** A 1-entry variant map (newtype variants: name key; struct variants: index key). */
export function variant(key, value) {
  return new Map([[key, value]]);
}

export function encode(v) {
  const parts = [];
  const go = (x) => {
    if (typeof x === "number") {
      if (!Number.isSafeInteger(x) || x < 0) throw new Error("only unsigned safe integers");
      parts.push(head(0, x));
    } else if (typeof x === "bigint") {
      if (x < 0n) throw new Error("negative integer");
      parts.push(head(0, x));
    } else if (x instanceof Uint8Array) {
      parts.push(head(2, x.length), x);
    } else if (typeof x === "string") {
      const b = utf8(x);
      parts.push(head(3, b.length), b);
    } else if (Array.isArray(x)) {
      parts.push(head(4, x.length));
      x.forEach(go);
    } else if (x instanceof Map) {
      parts.push(head(5, x.size));
      for (const [k, val] of x) {
        go(k);
        go(val);
      }
    } else if (x === false) parts.push(new Uint8Array([0xf4]));
    else if (x === true) parts.push(new Uint8Array([0xf5]));
    else if (x === null) parts.push(new Uint8Array([0xf6]));
    else throw new Error("cannot encode " + typeof x);
  };
  go(v);
  return concat(...parts);
}

const dec = new TextDecoder("utf-8", { fatal: true });

export function decode(b) {
  let i = 0;
  const need = (n) => {
    if (i + n > b.length) throw new Error("codec.malformed: truncated");
  };
  const arg = (info) => {
    if (info < 24) return BigInt(info);
    const dv = new DataView(b.buffer, b.byteOffset, b.length);
    if (info === 24) { need(1); return BigInt(b[i++]); }
    if (info === 25) { need(2); const v = dv.getUint16(i); i += 2; return BigInt(v); }
    if (info === 26) { need(4); const v = dv.getUint32(i); i += 4; return BigInt(v); }
    if (info === 27) { need(8); const v = dv.getBigUint64(i); i += 8; return v; }
    throw new Error("codec.malformed: indefinite or reserved length");
  };
  const num = (n) => (n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n);
  const item = (depth) => {
    if (depth > 64) throw new Error("codec.malformed: too deep");
    need(1);
    const ib = b[i++];
    const major = ib >> 5;
    const info = ib & 31;
    switch (major) {
      case 0: return num(arg(info));
      case 2: case 3: {
        const n = Number(arg(info));
        need(n);
        const s = b.slice(i, i + n);
        i += n;
        return major === 2 ? s : dec.decode(s);
      }
      case 4: {
        const n = Number(arg(info));
        if (n > b.length) throw new Error("codec.malformed: array too long");
        const out = [];
        for (let k = 0; k < n; k++) out.push(item(depth + 1));
        return out;
      }
      case 5: {
        const n = Number(arg(info));
        if (n > b.length) throw new Error("codec.malformed: map too long");
        const m = new Map();
        let prev;
        for (let k = 0; k < n; k++) {
          const key = item(depth + 1);
          if (m.has(key)) throw new Error("codec.malformed: duplicate key");
          // Struct maps have integer keys 0, 1, 2, ... in order (encoding.md §3).
          if (typeof key === "number" && key !== (prev === undefined ? key : prev + 1)) {
            throw new Error("codec.non_canonical: map keys out of order");
          }
          prev = key;
          m.set(key, item(depth + 1));
        }
        return m;
      }
      case 7:
        if (ib === 0xf4) return false;
        if (ib === 0xf5) return true;
        if (ib === 0xf6) return null;
        throw new Error("codec.malformed: float or simple value");
      default:
        throw new Error("codec.malformed: negative integer or tag");
    }
  };
  const v = item(0);
  if (i !== b.length) throw new Error("codec.malformed: trailing bytes");
  return v;
}

/** Decodes and requires the canonical form (re-encoding gives the input back). */
export function decodeCanonical(b) {
  const v = decode(b);
  if (!equal(encode(v), b)) throw new Error("codec.non_canonical");
  return v;
}

"""A second, independent xinyi bundle verifier, written from specs/ (not from the Rust code).

Non-normative cross-check of the specification: it re-implements the canonical CBOR, hashing,
Merkle log, certificate rules and the state machine of specs/*.md and must reproduce every
header hash, log root and state root of the vectors. It checks the happy path (assertions, no
typed error codes), implements only the static validation it needs, and verifies Ed25519 with
OpenSSL (not byte-for-byte the strict rules of hashing.md). Run by the test suite
(tests/tests/python_verifier.rs) on specs/vectors and on a bundle exported by a dev node.

    python3 specs/tools/verify_bundle.py specs/vectors/genesis.json specs/vectors/chain.bundle

Needs Python 3.8+ and the packages of specs/tools/requirements.txt (`cryptography`), which
.ci/run installs. Run it without -O: the checks are assertions.
"""
import base64, hashlib, json, struct, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# ---------------- CBOR (encoding.md) ----------------
class Dec:
    def __init__(s, b): s.b, s.i = b, 0
    def arg(s, ai):
        if ai < 24: return ai
        n = {24: 1, 25: 2, 26: 4, 27: 8}[ai]
        v = int.from_bytes(s.b[s.i:s.i + n], 'big'); s.i += n; return v
    def item(s):
        ib = s.b[s.i]; s.i += 1
        mt, ai = ib >> 5, ib & 31
        if mt == 7:
            return {20: False, 21: True, 22: None}[ai]
        a = s.arg(ai)
        if mt == 0: return a
        if mt == 2:
            v = s.b[s.i:s.i + a]; assert len(v) == a; s.i += a; return bytes(v)
        if mt == 3:
            v = s.b[s.i:s.i + a]; assert len(v) == a; s.i += a; return v.decode('utf-8')
        if mt == 4: return [s.item() for _ in range(a)]
        if mt == 5:
            d = {}
            for _ in range(a):
                k = s.item(); assert k not in d; d[k] = s.item()
            return d
        raise ValueError('bad major type %d' % mt)

def head(mt, n):
    if n < 24: return bytes([mt << 5 | n])
    for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size): return bytes([mt << 5 | ai]) + n.to_bytes(size, 'big')

def enc(v):
    if v is None: return b'\xf6'
    if v is True: return b'\xf5'
    if v is False: return b'\xf4'
    if isinstance(v, int): return head(0, v)
    if isinstance(v, bytes): return head(2, len(v)) + v
    if isinstance(v, str): b = v.encode(); return head(3, len(b)) + b
    if isinstance(v, list): return head(4, len(v)) + b''.join(enc(x) for x in v)
    if isinstance(v, dict): return head(5, len(v)) + b''.join(enc(k) + enc(x) for k, x in v.items())
    raise TypeError(v)

def decode(b, limit):
    assert 0 < len(b) <= limit
    d = Dec(b); v = d.item(); assert d.i == len(b), 'trailing'
    assert enc(v) == b, 'non-canonical'
    return v

def st(*vals): return {i: v for i, v in enumerate(vals)}
def fields(m, n):
    assert isinstance(m, dict) and list(m.keys()) == list(range(n)), m
    return [m[i] for i in range(n)]
def consent_terms(t):
    """Consent: 6 fields, plus key 6 (monitoring scope) only when present (entries.md)."""
    assert isinstance(t, dict) and list(t.keys()) in (list(range(6)), list(range(7))), t
    return [t[i] for i in range(6)] + [t.get(6)]
def variant(v):
    if isinstance(v, int): return v, None
    assert isinstance(v, dict) and len(v) == 1
    (k, x), = v.items(); return k, x

# ---------------- hashing (hashing.md) ----------------
def tagged(tag, *parts):
    h = hashlib.sha256(tag.encode() + b'\0')
    for p in parts: h.update(p)
    return h.digest()
def B(x):
    """Key bytes of an id: org ids are text, firm tags (privacy.md §2) are 32 bytes."""
    return x if isinstance(x, bytes) else x.encode()

def smsg(tag, payload): return ('xinyi/v1/sig/' + tag).encode() + b'\0' + payload
BE64 = lambda n: n.to_bytes(8, 'big')

# ---------------- merkle (merkle.md) ----------------
def leaf(d): return hashlib.sha256(b'\0' + d).digest()
def mth(leaves):
    if not leaves: return hashlib.sha256(b'').digest()
    if len(leaves) == 1: return leaves[0]
    k = 1
    while k * 2 < len(leaves): k *= 2
    return hashlib.sha256(b'\1' + mth(leaves[:k]) + mth(leaves[k:])).digest()

# ---------------- genesis ----------------
ROLES = ['agency', 'bank', 'credit_china', 'gsxt', 'auditor']
CATEGORIES = ['registration', 'licences', 'penalties', 'abnormal_list', 'dishonest_list',
              'judgments', 'tax', 'social_insurance', 'housing_fund', 'utilities']
def genesis_cbor(g):
    orgs = [st(o['id'], o['name'], ROLES.index(o['role']), bytes.fromhex(o['key']), o['power']) for o in g['orgs']]
    p = g['params']
    params = st(p['repair_deadline_working_days'], p['entry_time_window_ms'], p['max_block_entries'])
    # Retention (key 3) is present only when the chain sets at least one period (state.md §7).
    if p.get('retention'):
        params[3] = [st(CATEGORIES.index(r['category']), r['days']) for r in p['retention']]
    return enc(st(g['name'], g['time'], orgs, params))

def retention_days(g):
    return {CATEGORIES.index(r['category']): r['days'] for r in g['params'].get('retention', [])}

DAY = 86_400_000
def deadline(t, n):
    day = (t + 8 * 3_600_000) // DAY
    while n > 0:
        day += 1
        if (day + 3) % 7 < 5: n -= 1
    return (day + 1) * DAY - 8 * 3_600_000

class Fail(Exception): pass

# Compact sparse Merkle map (specs/state.md, access map): a subtree with one leaf is that leaf.
SMT_EMPTY = bytes(32)
def smt_leaf(k, v): return hashlib.sha256(b'xinyi/v1/smt/leaf\0' + k + v).digest()
def smt_node(l, r): return hashlib.sha256(b'xinyi/v1/smt/node\0' + l + r).digest()
def smt_bit(k, d): return (k[d // 8] >> (7 - d % 8)) & 1
def smt_root(items, d=0):
    if not items: return SMT_EMPTY
    if len(items) == 1: return smt_leaf(*items[0])
    left = [kv for kv in items if not smt_bit(kv[0], d)]
    right = [kv for kv in items if smt_bit(kv[0], d)]
    return smt_node(smt_root(left, d + 1), smt_root(right, d + 1))
def access_root(kv):
    items = sorted((hashlib.sha256(b'xinyi/v1/access-key\0' + k[1:]).digest(), hashlib.sha256(v).digest())
                   for k, v in kv.items() if k[:1] == b'h' and v is not None)
    return smt_root(items)

class State:
    def __init__(s, g, chain):
        s.chain, s.origin, s.params = chain, g['name'], g['params']
        s.retention = retention_days(g)
        s.base, s.blk, s.ent = {}, {}, {}
        # Replay set (state.md §4 step 2): derived from the `n` values, not stored under keys.
        s.replay, s.ids_blk, s.ids_ent = set(), [], []
        s.height, s.time = 0, g['time']
        vals = []
        for o in g['orgs']:
            s.put(b'o' + o['id'].encode(), st(o['name'], ROLES.index(o['role']), bytes.fromhex(o['key']), o['power']))
            if o['power'] > 0: vals.append(st(o['id'], bytes.fromhex(o['key']), o['power']))
        s.put(b'V', {0: vals})
        s.root = chain
        s.finish(0, g['time'])
    # overlays
    def raw(s, k):
        for m in (s.ent, s.blk):
            if k in m: return m[k]
        return s.base.get(k)
    def get(s, k):
        v = s.raw(k); return None if v is None else decode(v, 65536)
    def put(s, k, v): s.ent[k] = enc(v)
    def putraw(s, k, v): s.ent[k] = v
    def delete(s, k): s.ent[k] = None
    def commit_entry(s):
        s.blk.update(s.ent); s.ent = {}
        s.replay.update(s.ids_ent); s.ids_blk += s.ids_ent; s.ids_ent = []
    def record_id(s, i):
        if i in s.replay or i in s.ids_ent: raise Fail('state.replay')
        s.ids_ent.append(i)
    def replay_index(s, ids, h):
        ids = b''.join(sorted(ids))
        return (b'n' + BE64(s.now) + BE64(h), ids) if ids else None
    def finish(s, h, t):
        s.commit_entry()
        ri = s.replay_index(s.ids_blk, h); s.ids_blk = []
        if ri: s.blk[ri[0]] = ri[1]
        ws = sorted(s.blk.items())
        wsc = enc([[k, v] for k, v in ws])
        for k, v in ws:
            if v is None: s.base.pop(k, None)
            else: s.base[k] = v
        s.root = tagged('xinyi/v1/state', s.root, BE64(h), tagged('xinyi/v1/write-set', wsc), access_root(s.base))
        s.blk = {}; s.height, s.time = h, t
        return ws
    def pending_root(s, h):
        blk = {**s.blk}
        ri = s.replay_index(s.ids_blk, h)
        if ri: blk[ri[0]] = ri[1]
        ws = sorted(blk.items())
        merged = {**s.base, **blk}
        return tagged('xinyi/v1/state', s.root, BE64(h), tagged('xinyi/v1/write-set', enc([[k, v] for k, v in ws])), access_root(merged))
    def validators(s):
        return fields(s.get(b'V'), 1)[0]
    def vget(s, org):
        for v in s.validators():
            o, k, p = fields(v, 3)
            if o == org: return k, p
        return None
    def quorum(s): return sum(fields(v, 3)[2] for v in s.validators()) * 2 // 3 + 1
    def watched(s, firm):
        p = b'W' + B(firm)
        keys = {k for k in s.base if k.startswith(p)}
        for m in (s.blk, s.ent):
            for k, v in m.items():
                if k.startswith(p):
                    if v is None: keys.discard(k)
                    else: keys.add(k)
        return bool(keys)
    def prefix(s, p):
        return sorted((k, v) for k, v in s.base.items() if k.startswith(p))

    def begin(s, h, t):
        if t <= s.time: raise Fail('state.sequence')
        s.now = t
        for k, v in s.prefix(b'M' + BE64(h)):
            s.effect(decode(v, 65536)); s.delete(k)
        for k, _ in s.prefix(b'd'):
            if int.from_bytes(k[1:9], 'big') > t: break
            rid = k[9:]
            r = s.get(b'p' + rid)
            if r is not None and r[3] == 1:
                r[10] = True; s.put(b'p' + rid, r)
            s.delete(k)
        # Records whose retention period ended stop being shown (state.md §3).
        for k, _ in s.prefix(b'X'):
            if int.from_bytes(k[1:9], 'big') > t: break
            rid = k[9:]
            r = s.get(b'r' + rid)
            if r is not None and r.get(8) is None:
                r[8] = t; s.put(b'r' + rid, r)
            s.delete(k)
        cutoff = max(0, t - 2 * s.params['entry_time_window_ms'])
        for k, v in s.prefix(b'n'):
            if int.from_bytes(k[1:9], 'big') >= cutoff: break
            for i in range(0, len(v), 32): s.replay.discard(v[i:i + 32])
            s.delete(k)
        s.commit_entry()

    def set_validator(s, org, key, power):
        vals = [v for v in s.validators() if v[0] != org]
        if power > 0:
            vals.append(st(org, key, power)); vals.sort(key=lambda v: v[0].encode())
        s.put(b'V', {0: vals})

    def effect(s, change):
        idx, x = variant(change)
        if idx == 0:
            org, name, role, key, power = fields(x, 5)
            s.put(b'o' + org.encode(), st(name, role, key, power)); s.delete(b'P' + org.encode())
            s.set_validator(org, key, power)
        elif idx == 1:
            org, key = fields(x, 2); rec = s.get(b'o' + org.encode())
            if rec is None: return
            rec[2] = key; s.put(b'o' + org.encode(), rec); s.set_validator(org, key, rec[3])
        elif idx == 2:
            org, power = fields(x, 2); rec = s.get(b'o' + org.encode())
            if rec is None: return
            others = sum(v[2] for v in s.validators() if v[0] != org)
            if others == 0 and power == 0: return
            rec[3] = power; s.put(b'o' + org.encode(), rec); s.set_validator(org, rec[2], power)

    def check_query(s, req):
        bank, firm, consent, cats, nonce, time = fields(req, 6)
        c = s.get(b'c' + consent)
        if c is None: return 0
        cfirm, terms, used, revoked, granted = fields(c, 5)
        cbank, purpose, ccats, nb, na, mx, _ = consent_terms(terms)
        if cfirm != firm: return 1
        if cbank != bank: return 2
        if revoked: return 3
        if s.now < nb: return 4
        if s.now >= na: return 5
        if not all(x in ccats for x in cats): return 6
        if used >= mx: return 7
        return None

    def apply(s, e, log):
        """e: dict(id, body_bytes, sig, author, time, kind). Returns list of (msg, key, sig)."""
        try:
            r = s.apply_inner(e, log)
            s.commit_entry(); return r
        except Fail:
            s.ent = {}; s.ids_ent = []; raise

    def apply_inner(s, e, log):
        now, w = s.now, s.params['entry_time_window_ms']
        if e['time'] + w < now or e['time'] > now + w: raise Fail('state.stale_or_future')
        s.record_id(e['id'])
        akind, aval = e['author']
        if akind == 'org':
            rec = s.get(b'o' + aval.encode())
            if rec is None: raise Fail('state.unknown_author')
            akey, role = rec[2], rec[1]
        else:
            rec = s.get(b'f' + B(aval))
            if rec is None: raise Fail('state.unknown_author')
            akey, role = rec[0], None
        sigs = [(smsg('entry', s.chain + e['body_bytes']), akey, e['sig'])]
        def need(ok):
            if not ok: raise Fail('state.forbidden')
        kind, x = variant(e['kind'])
        trig = None
        is_val = akind == 'org' and s.vget(aval) is not None
        if kind == 'membership':
            need(is_val)
            proposal, approvals = fields(x, 2)
            change, eff = fields(proposal, 2)
            if eff <= s.height + 1: raise Fail('state.membership')
            msg = smsg('membership', s.chain + enc(proposal)); power = 0
            for a in approvals:
                v, sig = fields(a, 2); kv = s.vget(v)
                if kv is None: raise Fail('state.membership')
                power += kv[1]; sigs.append((msg, kv[0], sig))
            if power < s.quorum(): raise Fail('state.membership')
            ci, cx = variant(change)
            if ci == 3:  # rotate_firm_key {epoch, key_id}: recorded at once (privacy.md §8)
                epoch, key_id = fields(cx, 2); epochs = s.get(b'F') or []
                nxt = epochs[-1][0] + 1 if epochs else 1
                if epoch != nxt or (epochs and eff <= epochs[-1][2]): raise Fail('state.membership')
                s.put(b'F', epochs + [st(epoch, key_id, eff)])
                return sigs
            org = cx[0]
            if ci == 0:
                if s.get(b'o' + org.encode()) is not None or s.raw(b'P' + org.encode()) is not None: raise Fail('state.already_exists')
                s.putraw(b'P' + org.encode(), b'')
            elif s.get(b'o' + org.encode()) is None: raise Fail('state.not_found')
            s.put(b'M' + BE64(eff) + e['id'], change)
        elif kind == 1:  # firm_registered
            need(role == 0); firm, key = fields(x, 2)
            old = s.get(b'f' + B(firm))
            if old is not None and old[1] != aval: raise Fail('state.not_owner')
            s.put(b'f' + B(firm), st(key, aval))
        elif kind == 'consent_granted':
            bank, purpose, cats, nb, na, mx, mon = consent_terms(x)
            b = s.get(b'o' + bank.encode())
            if b is None: raise Fail('state.not_found')
            if b[1] != 1 or na <= now: raise Fail('state.invalid')
            if mon is not None: s.putraw(b'W' + B(aval) + e['id'], b'')
            s.put(b'c' + e['id'], st(aval, x, 0, False, now))
        elif kind == 3:
            cid, = fields(x, 1); c = s.get(b'c' + cid)
            if c is None: raise Fail('state.not_found')
            if c[0] != aval: raise Fail('state.not_owner')
            if c[3]: raise Fail('state.invalid')
            if consent_terms(c[1])[6] is not None: s.delete(b'W' + B(aval) + cid)
            c[3] = True; s.put(b'c' + cid, c)
        elif kind in ('query_served', 5):
            need(role == 0)
            if kind == 5: sreq, reason = fields(x, 2)
            else: sreq, resp, recs = fields(x, 3)
            req, rsig = fields(sreq, 2)
            bank = s.get(b'o' + req[0].encode())
            if bank is None: raise Fail('state.not_found')
            if bank[1] != 1: raise Fail('state.invalid')
            sigs.append((smsg('query-request', s.chain + enc(req)), bank[2], rsig))
            rtime = req[5]
            if rtime + w < now or rtime > now + w: raise Fail('state.stale_or_future')
            rid = hashlib.sha256(b'xinyi/v1/entry\x00' + b'query-request' + enc(req)).digest()
            s.record_id(rid)
            actual = s.check_query(req)
            if kind == 5:
                if actual != reason: raise Fail('state.wrong_denial')
            else:
                if actual is not None: raise Fail('consent.%d' % actual)
                c = s.get(b'c' + req[2]); c[2] += 1; s.put(b'c' + req[2], c)
            # The firm's access chain (state.md, h keys).
            ak = b'h' + B(req[1])
            cur = s.get(ak) or st(bytes(32), 0)
            s.put(ak, st(hashlib.sha256(b'xinyi/v1/access\0' + cur[0] + e['id']).digest(), cur[1] + 1))
        elif kind == 'credit_record_published':
            need(role == 0); rec, firm, cat, sev, days = fields(x, 5)
            # Monitoring category of a record (state.md §4.19): penalties..judgments, else other.
            trig = (firm, {2: 0, 3: 1, 4: 2, 5: 3}.get(cat, 4))
            if s.raw(b'r' + rec) is not None: raise Fail('state.already_exists')
            s.put(b'r' + rec, st(aval, firm, cat, sev, days, now, None, False))
            if cat in s.retention:
                s.putraw(b'X' + BE64(now + s.retention[cat] * DAY) + rec, b'')
        elif kind == 7:
            agency, content, due = fields(x, 3); a = s.get(b'o' + agency.encode())
            if a is None or a[1] != 0: raise Fail('state.not_found')
            s.put(b'm' + e['id'], st(aval, agency, content, due, now, False))
        elif kind == 8:
            cid, finding = fields(x, 2); c = s.get(b'm' + cid)
            if c is None: raise Fail('state.not_found')
            if c[1] != aval: raise Fail('state.not_owner')
            if c[5]: raise Fail('state.invalid')
            c[5] = True; s.put(b'm' + cid, c)
            trig = (c[0], 6)
        elif kind == 9:
            need(role == 0); firm, domain, grade = fields(x, 3)
            s.put(b'g' + B(firm) + b'/' + domain.encode(), st(aval, grade, now))
            trig = (firm, 5)
        elif kind == 10:
            record, ful, letter = fields(x, 3); r = s.get(b'r' + record)
            if r is None: raise Fail('state.not_found')
            if r[1] != aval: raise Fail('state.not_owner')
            if r[7]: raise Fail('state.invalid')
            if r[6] is not None: raise Fail('state.already_exists')
            if now < r[5] + r[4] * DAY: raise Fail('state.publicity_period')
            r[6] = e['id']; s.put(b'r' + record, r)
            s.put(b'p' + e['id'], st(aval, record, r[0], 0, now, None, None, None, None, None, False))
            trig = (aval, 7)
        elif kind == 11:
            rid, approved, reason = fields(x, 3); r = s.get(b'p' + rid)
            if r is None: raise Fail('state.not_found')
            if r[2] != aval: raise Fail('state.not_owner')
            if r[3] != 0: raise Fail('state.repair')
            r[5], r[6] = now, reason
            trig = (r[0], 7)
            if approved:
                d = deadline(now, s.params['repair_deadline_working_days'])
                r[3], r[7] = 1, d; s.putraw(b'd' + BE64(d) + rid, b'')
            else:
                r[3] = 2; rec = s.get(b'r' + r[1]); rec[6] = None; s.put(b'r' + r[1], rec)
            s.put(b'p' + rid, r)
        elif kind == 12:
            need(role in (2, 3)); rid, = fields(x, 1); r = s.get(b'p' + rid)
            if r is None: raise Fail('state.not_found')
            if r[3] != 1: raise Fail('state.repair')
            slot = 8 if role == 2 else 9
            if r[slot] is not None: raise Fail('state.repair')
            r[slot] = now
            trig = (r[0], 7)
            if r[8] is not None and r[9] is not None:
                r[3] = 3; s.delete(b'd' + BE64(r[7]) + rid)
                rec = s.get(b'r' + r[1]); rec[6] = None; rec[7] = True; s.put(b'r' + r[1], rec)
            s.put(b'p' + rid, r)
        elif kind in (13, 14):
            if kind == 13: need(is_val); size, root, sig = fields(x, 3)
            else: need(role in (0, 4)); size, root, ch, tx = fields(x, 4)
            if size > len(log) or mth(log[:size]) != root: raise Fail('state.checkpoint')
            if kind == 13:
                text = '%s\n%d\n%s\n' % (s.origin, size, base64.b64encode(root).decode())
                sigs.append((text.encode(), akey, sig))
                k = b'k' + BE64(size) + aval.encode()
                if s.raw(k) is not None: raise Fail('state.already_exists')
                s.putraw(k, sig)
            else:
                s.putraw(b'a' + BE64(size) + ch.encode(), tx.encode())
        elif kind == 'misbehaviour':
            need(is_val); v, h, ha, sa, hb, sb = fields(x, 6)
            o = s.get(b'o' + v.encode())
            if o is None: raise Fail('state.not_found')
            for hh, ss in ((ha, sa), (hb, sb)):
                sigs.append((smsg('commit', s.chain + BE64(h) + hh), o[2], ss))
            k = b'x' + v.encode() + b'/' + BE64(h)
            if s.raw(k) is not None: raise Fail('state.already_exists')
            s.putraw(k, e['id'])
        elif kind == 'alerts_delivered':
            need(role == 0); bank, firm, alerts = fields(x, 3)
            for a in alerts:
                aid, cid, tid, tpos, cat, content = fields(a, 6)
                c = s.get(b'c' + cid)
                if c is None: raise Fail('monitor.consent_unknown')
                cfirm, terms, used, revoked, granted = fields(c, 5)
                cbank, _, _, nb, na, _, mon = consent_terms(terms)
                if cfirm != firm: raise Fail('monitor.wrong_firm')
                if cbank != bank: raise Fail('monitor.wrong_bank')
                if revoked: raise Fail('monitor.revoked')
                if now < nb: raise Fail('monitor.not_yet_valid')
                if now >= na: raise Fail('monitor.expired')
                if mon is None or cat not in fields(mon, 1)[0]: raise Fail('monitor.not_monitored')
                t = s.get(b'T' + tid)
                if t is None or fields(t, 4)[:3] != [firm, cat, tpos]: raise Fail('monitor.trigger_mismatch')
                if t[3] < granted or t[3] < nb: raise Fail('monitor.trigger_before_consent')
                if aid != hashlib.sha256(b'xinyi/v1/entry\x00' + b'alert' + cid + tid).digest(): raise Fail('monitor.bad_alert_id')
                if s.raw(b'A' + aid) is not None: raise Fail('monitor.already_delivered')
                s.putraw(b'A' + aid, e['id'])
            ak = b'h' + B(firm)
            cur = s.get(ak) or st(bytes(32), 0)
            s.put(ak, st(hashlib.sha256(b'xinyi/v1/access\0' + cur[0] + e['id']).digest(), cur[1] + 1))
        elif kind == 'data_erased':
            need(role == 0)
            firm, cats, reason = x[0], x[1], x[2]
            assert set(x) <= {0, 1, 2, 3}, x
            ref = x.get(3)
            if not cats or any(a >= b for a, b in zip(cats, cats[1:])) or not 0 <= reason <= 5:
                raise Fail('entry.invalid')
            if ref is None and reason in (0, 1, 2): raise Fail('entry.invalid')
            if ref is not None and reason in (0, 1):  # consent_withdrawn, purpose_ended
                c = s.get(b'c' + ref)
                if c is None: raise Fail('erasure.reference_unknown')
                cfirm, terms, used, revoked, granted = fields(c, 5)
                _, _, _, nb, na, mx, _ = consent_terms(terms)
                if cfirm != firm: raise Fail('erasure.other_firm')
                if reason == 0 and not revoked: raise Fail('erasure.consent_not_revoked')
                if reason == 1 and now < na and used < mx and not revoked: raise Fail('erasure.consent_in_force')
            elif ref is not None and reason in (2, 3):  # record_repaired, retention_ended
                r = s.get(b'r' + ref)
                if r is None: raise Fail('erasure.reference_unknown')
                if r[1] != firm: raise Fail('erasure.other_firm')
                if r[0] != aval: raise Fail('erasure.not_publisher')
                if r[2] not in cats: raise Fail('erasure.category_not_erased')
                if reason == 2 and not r[7]: raise Fail('erasure.record_not_repaired')
                if reason == 3 and not r[7] and r.get(8) is None: raise Fail('erasure.record_still_shown')
            for c in cats:
                s.putraw(b'e' + B(firm) + bytes([c]) + aval.encode(), e['id'])
        else:
            raise Fail('unknown kind %r' % (kind,))
        # A trigger about a firm with a monitoring consent is recorded (state.md §4.19).
        if trig is not None and s.watched(trig[0]):
            s.put(b'T' + e['id'], st(trig[0], trig[1], len(log), now))
        return sigs

def ed_ok(msg, key, sig):
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(sig, msg); return True
    except Exception:
        return False

def verify(genesis_path, bundle_path):
    g = json.load(open(genesis_path))
    chain = tagged('xinyi/v1/genesis', genesis_cbor(g))
    b = open(bundle_path, 'rb').read()
    assert b[:16] == b'xinyi-bundle/v1\n'; i = 16
    frames = []
    while i < len(b):
        k, n = b[i:i + 1], int.from_bytes(b[i + 1:i + 5], 'big'); frames.append((k, b[i + 5:i + 5 + n])); i += 5 + n
    assert frames[0][0] == b'G' and frames[-1][0] == b'Z'
    bg = json.loads(frames[0][1])
    assert tagged('xinyi/v1/genesis', genesis_cbor(bg)) == chain, 'genesis mismatch'
    pairs = frames[1:-1]
    assert int.from_bytes(frames[-1][1], 'big') * 2 == len(pairs)
    s = State(g, chain)
    print('root_0', s.root.hex())
    log, head = [], chain
    for j in range(0, len(pairs), 2):
        (kb, bb), (kc, cb) = pairs[j], pairs[j + 1]
        assert kb == b'B' and kc == b'C'
        blk = fields(decode(bb, 64 << 20), 2); cert = fields(decode(cb, 65536), 3)
        H = fields(blk[0], 12)
        ver, ch, h, prev, t, proposer, vs, eroot, ecount, lsize, lroot, sroot = H
        assert ver == 1 and ch == chain and h == s.height + 1 and prev == head, 'header link'
        entries = blk[1]
        assert ecount == len(entries) <= g['params']['max_block_entries']
        assert mth([leaf(e) for e in entries]) == eroot, 'entries root'
        dec = []
        for e in entries:
            body_bytes, sig = fields(decode(e, 16384), 2)
            author, etime, nonce, kind = fields(decode(body_bytes, 16384), 4)
            (ak, av), = author.items()
            dec.append(dict(id=tagged('xinyi/v1/entry', e), body_bytes=body_bytes, sig=sig,
                            author=(ak, av), time=etime, kind=kind, bytes=e))
        s.begin(h, t)
        assert tagged('xinyi/v1/validator-set', enc(s.get(b'V'))) == vs, 'validator set hash'
        assert s.vget(proposer) is not None
        hh = tagged('xinyi/v1/header', enc(blk[0]))
        chh, cheader, votes = cert
        assert chh == h and cheader == hh
        power, prevv = 0, None
        for v in votes:
            org, sig = fields(v, 2)
            assert prevv is None or org.encode() > prevv.encode(); prevv = org
            kp = s.vget(org); assert kp
            assert ed_ok(smsg('commit', chain + BE64(h) + hh), kp[0], sig), 'vote sig'
            power += kp[1]
        assert power >= s.quorum(), 'quorum'
        allsigs = []
        for e in dec:
            allsigs += s.apply(e, log); log.append(leaf(e['bytes']))
        for m, k, sg in allsigs:
            assert ed_ok(m, k, sg), 'entry signature'
        assert len(log) == lsize and mth(log) == lroot, 'log'
        assert s.pending_root(h) == sroot, 'state root at %d' % h
        s.finish(h, t); head = hh
        print('block', h, 'ok', len(entries), 'entries', 'state', sroot.hex()[:16], 'sigs', len(allsigs))
    print('head', head.hex(), 'log', len(log), mth(log).hex(), 'state', s.root.hex())
    return dict(head_hash=head.hex(), log_size=len(log), log_root=mth(log).hex(), state_root=s.root.hex())

if __name__ == '__main__':
    got = verify(sys.argv[1], sys.argv[2])
    import os
    expected = os.path.join(os.path.dirname(sys.argv[2]), 'bundle.json')
    if os.path.exists(expected):
        report = json.load(open(expected))['report']
        for k, v in got.items():
            assert report[k] == v, '%s: expected %s, got %s' % (k, report[k], v)
        print('matches', expected)

// Drives the xinyi web console in a real Chromium (Debian's /usr/bin/chromium) through
// playwright-core, against a running `xinyi-node --dev` (started by tests/tests/ui.rs).
//
// Scenarios (each fails the run with a readable message):
//  1. the console's crypto, CBOR and proof code checked in the browser against specs/vectors;
//  2. a firm signs in with its key file and grants a consent in the page (entry built and signed
//     in the browser; the node accepts it);
//  3. a bank query made by the CLI (`xinyi query`) and a denial (wrong bank) appear in the firm's
//     list marked verified, and the list is proven complete;
//  4. through a fake node (a proxy here that flips one byte of every inclusion proof it relays)
//     the same list shows NOT verified;
//  5. the firm revokes the consent in the page; the bank's page lists its queries verified;
//  6. the auditor page lists the checkpoint with its cosigners, blocks with certificates; the
//     operator page draws its charts;
// with a screenshot of each page under $XINYI_SHOTS. Environment: XINYI_URL, XINYI_KEYS,
// XINYI_CLI, XINYI_GENESIS, XINYI_FIRM, XINYI_STATE, XINYI_VECTORS, XINYI_SHOTS, CHROMIUM.

import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import * as lib from "./lib.mjs";
import { assert, env, settled, step } from "./lib.mjs";

const URL0 = env("XINYI_URL");
const KEYS = env("XINYI_KEYS");
const CLI = env("XINYI_CLI");
const GENESIS = env("XINYI_GENESIS");
const FIRM = env("XINYI_FIRM");
const STATE = env("XINYI_STATE");
const VECTORS = env("XINYI_VECTORS");
const SHOTS = env("XINYI_SHOTS");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
fs.mkdirSync(SHOTS, { recursive: true });

const summary = {};
const xinyi = lib.cli({ url: URL0, keys: KEYS, bin: CLI, genesis: GENESIS, state: STATE });

// ---------- the fake node: a proxy that tampers with inclusion proofs ----------

function tamperingProxy(target) {
  const t = new URL(target);
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const up = http.request({ host: t.hostname, port: t.port, path: req.url, method: req.method, headers: req.headers }, (ur) => {
        const body = [];
        ur.on("data", (c) => body.push(c));
        ur.on("end", () => {
          let buf = Buffer.concat(body);
          const headers = { ...ur.headers };
          if (req.url.startsWith("/v1/entries/") && ur.statusCode === 200) {
            const v = JSON.parse(buf.toString("utf8"));
            if (Array.isArray(v.inclusion_proof) && v.inclusion_proof.length > 0) {
              // Flip one byte of the first proof hash.
              const p = v.inclusion_proof[0];
              const flipped = ((parseInt(p.slice(0, 2), 16) ^ 0x01).toString(16)).padStart(2, "0");
              v.inclusion_proof[0] = flipped + p.slice(2);
              server.tampered = (server.tampered || 0) + 1;
            }
            buf = Buffer.from(JSON.stringify(v));
            headers["content-length"] = String(buf.length);
          }
          res.writeHead(ur.statusCode, headers);
          res.end(buf);
        });
      });
      up.on("error", (e) => { res.writeHead(502); res.end(String(e)); });
      up.end(Buffer.concat(chunks));
    });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

// ---------- page helpers ----------

const open = lib.open;
const signIn = (page, keyName, id) => lib.signIn(page, KEYS, keyName, id);
const shot = (page, name) => lib.shot(page, SHOTS, summary, name);

// ---------- 1. vectors in the browser ----------

async function vectorsInBrowser(page) {
  const read = (f) => JSON.parse(fs.readFileSync(path.join(VECTORS, f), "utf8"));
  const v = {
    entries: read("entries.json"), merkle: read("merkle.json"), checkpoints: read("checkpoints.json"),
    blocks: read("blocks.json"), chain: read("chain.json"), genesis: read("genesis.json"),
    hashing: read("hashing.json"), signing: read("signing.json"), state: read("state_roots.json"),
  };
  return page.evaluate(async (v) => {
    const c = await import("/ui/js/crypto.js");
    const cbor = await import("/ui/js/cbor.js");
    const vf = await import("/ui/js/verify.js");
    const en = await import("/ui/js/entry.js");
    const out = { checked: 0, failures: [] };
    const check = (ok, what) => { out.checked++; if (!ok) out.failures.push(what); };
    // hashing
    for (const d of v.hashing.domains) check(c.hex(await c.tagged(d.tag, c.unhex(d.input_hex))) === d.digest, `hash ${d.domain}`);
    check(c.hex(await c.salted(c.unhex(v.hashing.salted.salt_hex), c.unhex(v.hashing.salted.data_hex))) === v.hashing.salted.digest, "salted");
    // signatures in every domain
    for (const s of v.signing.signatures) check(await c.ed25519Verify(c.unhex(v.signing.public_key), c.unhex(s.signature), c.unhex(s.message_hex)), `sig ${s.domain}`);
    const seed = c.unhex(v.signing.seed_hex);
    const k = await c.keyFromSeed(seed);
    check(c.hex(k.pub) === v.signing.public_key, "public key from seed");
    for (const s of v.signing.signatures) check(c.hex(await c.ed25519Sign(k.key, c.unhex(s.message_hex))) === s.signature, `sign ${s.domain}`);
    // genesis → chain id
    check(c.hex(vf.genesisCbor(v.genesis)) === v.chain.genesis_cbor_hex, "genesis cbor");
    check(c.hex(await vf.chainId(v.genesis)) === v.chain.chain_id, "chain id");
    const trust = await vf.trustFromGenesis(v.genesis);
    // entries: decode, canonical re-encode, id, leaf, signatures; the console's builders
    for (const e of v.entries.entries) {
      const bytes = c.unhex(e.bytes_hex);
      check(c.hex(cbor.encode(cbor.decodeCanonical(bytes))) === e.bytes_hex, `re-encode ${e.index}`);
      check(c.hex(await vf.entryId(bytes)) === e.id, `id ${e.index}`);
      check(c.hex(await vf.leafHash(bytes)) === e.leaf_hash, `leaf ${e.index}`);
      const d = en.decodeEntry(bytes);
      check(d.kind === e.kind, `kind ${e.index}`);
      for (const s of e.signature_checks) check(await c.ed25519Verify(c.unhex(s.key), c.unhex(s.signature), c.unhex(s.message_hex)), `entry sig ${e.index}`);
      const b = e.body;
      if (e.kind === "consent_granted") {
        const cg = b.kind.consent_granted;
        const kind = en.consentGrantedKind({ ...cg, purpose: c.unhex(cg.purpose) });
        check(c.hex(en.firmBody(c.unhex(b.author.firm), b.time, b.nonce, kind)) === e.body_hex, `build consent_granted ${e.index}`);
      }
      if (e.kind === "consent_revoked") {
        check(c.hex(en.firmBody(c.unhex(b.author.firm), b.time, b.nonce, en.consentRevokedKind(b.kind.consent_revoked.consent))) === e.body_hex, `build consent_revoked ${e.index}`);
      }
      if (e.kind === "query_served" || e.kind === "query_denied") {
        const q = en.queryRequestOf(d);
        const r = (b.kind.query_served || b.kind.query_denied).request.request;
        check(q.bank === r.bank && q.firm === r.firm && q.consent === r.consent && q.categories.join() === r.categories.join(), `query fields ${e.index}`);
      }
    }
    for (const bad of v.entries.invalid) {
      let threw = false;
      try { en.decodeEntry(c.unhex(bad.bytes_hex)); } catch (_) { threw = true; }
      check(threw, `invalid entry refused: ${bad.case}`);
    }
    // Merkle: every inclusion proof, and each one with a flipped byte fails
    const leaves = v.merkle.leaf_hashes.map(c.unhex);
    for (const p of v.merkle.inclusion) {
      const root = c.unhex(v.merkle.roots_by_size[p.size]);
      const proof = p.proof.map(c.unhex);
      check(await vf.verifyInclusion(c.unhex(p.leaf_hash), p.index, p.size, proof, root), `inclusion ${p.index}`);
      if (proof.length) {
        proof[0] = proof[0].slice(); proof[0][0] ^= 1;
        check(!(await vf.verifyInclusion(c.unhex(p.leaf_hash), p.index, p.size, proof, root)), `tampered inclusion ${p.index} refused`);
      }
      check(!(await vf.verifyInclusion(c.unhex(p.leaf_hash), p.size, p.size, p.proof.map(c.unhex), root)), "index >= size refused");
    }
    check(leaves.length === v.merkle.log_size, "leaf count");
    for (const p of v.merkle.consistency) {
      const ok = await vf.verifyConsistency(p.old_size, p.new_size, c.unhex(p.old_root), c.unhex(p.new_root), p.proof.map(c.unhex));
      check(ok, `consistency ${p.old_size}->${p.new_size}`);
      if (p.old_size !== p.new_size) check(!(await vf.verifyConsistency(p.old_size, p.new_size, c.unhex(p.new_root), c.unhex(p.new_root), p.proof.map(c.unhex))), `bad consistency ${p.old_size} refused`);
    }
    // checkpoints: key id, head note final, ledger-rebuilt note, altered note refused
    const cv = v.checkpoints;
    check(c.hex(await vf.keyId(cv.key_name, c.unhex(cv.public_key))) === cv.key_id_hex, "key id");
    const head = await vf.openCheckpoint(trust, cv.head.note);
    check(head.final && head.signers.join() === cv.signer, "head checkpoint final");
    const led = await vf.openCheckpoint(trust, cv.cosigned_on_ledger.note);
    check(led.final && Number(led.size) === cv.cosigned_on_ledger.size, "ledger checkpoint");
    let refused = false;
    try { await vf.openCheckpoint(trust, cv.head.note.replace(/\n(\d+)\n/, (m, n) => `\n${Number(n) + 1}\n`)); } catch (e) { refused = /checkpoint.invalid/.test(e.message); }
    check(refused, "altered checkpoint refused");
    // blocks: header hash, certificate; a changed header refused
    for (const b of v.blocks.blocks) {
      check(c.hex(vf.headerCbor(b.header)) === b.header_cbor_hex, `header cbor ${b.height}`);
      check(c.hex(await vf.headerHash(b.header)) === b.header_hash, `header hash ${b.height}`);
      let ok = true;
      try { await vf.verifyCertificate(trust, b.header, b.certificate); } catch (e) { ok = false; }
      check(ok, `certificate ${b.height}`);
      let bad = false;
      try { await vf.verifyCertificate(trust, { ...b.header, time: b.header.time + 1 }, b.certificate); } catch (e) { bad = /cert.wrong_header/.test(e.message); }
      check(bad, `changed header ${b.height} refused`);
    }
    // a firm's key of firm-key epoch 1 (privacy.md §8; the ledger's firm_epoch_key_vector)
    const s32 = Uint8Array.from({ length: 32 }, (_, i) => i);
    check(c.hex((await c.firmEpochKey(s32, 0)).pub) === "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8", "firm epoch key 0");
    check(c.hex((await c.firmEpochKey(s32, 1)).pub) === "772f9bbfc1b29f0b2b86be3e72af13167a590f7e550e60d152aa4e23bb97ab1e", "firm epoch key 1");
    // state roots
    for (const r of v.state.roots) {
      if (r.height === 0) continue;
      check(c.hex(await vf.rootStep(c.unhex(r.prev_root), r.height, c.unhex(r.write_set_hash), c.unhex(r.access_root))) === r.root, `state root ${r.height}`);
    }
    return out;
  }, v);
}

// ---------- the run ----------

const ctx = await lib.launch(CHROMIUM);
let proxy = null;
try {
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // Failed fetches are reported as console errors too; those are checked through `failed`.
  page.on("console", (m) => { if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text()); });
  const failed = [];
  page.on("response", (r) => { if (r.status() >= 400) failed.push(`${r.status()} ${new URL(r.url()).pathname}`); });

  step("the console loads with a strict CSP, in Chinese by default (zh-CN browser)");
  const resp = await page.goto(`${URL0}/ui`);
  const csp = resp.headers()["content-security-policy"] || "";
  assert(csp.includes("script-src 'self'") && csp.includes("default-src 'none'"), `CSP: ${csp}`);
  await page.waitForSelector('.page[data-ready="yes"]', { timeout: 60000 });
  assert((await page.textContent("nav")).includes("企业"), "zh-CN labels");

  step("1. crypto, CBOR and proofs against specs/vectors, in the browser");
  const vec = await vectorsInBrowser(page);
  summary.vectors = vec;
  assert(vec.failures.length === 0, `vector failures: ${vec.failures.join("; ")}`);
  assert(vec.checked > 100, `only ${vec.checked} vector checks`);

  step("2. the firm signs in with its key file and grants a consent in the page");
  await open(page, URL0, "#/firm");
  await signIn(page, `firm-${FIRM}`, FIRM);
  await page.waitForSelector("#firm-tag");
  await page.waitForSelector("#grant-go");
  await page.selectOption("#grant-bank", "bank-a");
  await page.fill("#grant-uses", "3");
  await page.click("#grant-go");
  await page.waitForSelector("#granted-id", { timeout: 60000 });
  const consent = (await page.textContent("#granted-id")).trim();
  assert(/^[0-9a-f]{64}$/.test(consent), `consent id ${consent}`);
  assert(await page.$eval("#grant-result [data-verified]", (e) => e.dataset.verified) === "yes", "write answer verified in the page");
  summary.consent = consent;
  const shown = xinyi("bank-a", ["consent", "show", consent]);
  assert(shown.bank === "bank-a" && shown.max_uses === 3 && shown.revoked === false, `the node holds the consent: ${JSON.stringify(shown)}`);

  step("3. the CLI queries as bank-a (served) and bank-b (denied)");
  const q = xinyi("bank-a", ["query", "--consent", consent, "--firm", FIRM, "--categories", "tax"]);
  assert(q.record && typeof q.record.position === "number", `query answer ${JSON.stringify(q).slice(0, 200)}`);
  const denied = xinyi("bank-b", ["query", "--consent", consent, "--firm", FIRM, "--categories", "tax"], { allowFail: true });
  assert(denied.failed, "bank-b must be refused");
  summary.query_position = q.record.position;

  await open(page, URL0, "#/firm");
  await page.waitForTimeout(100);
  const rows = await settled(page, "#access-log tr.access");
  summary.firm_rows = rows.map(({ position, kind, verified }) => ({ position, kind, verified }));
  const served = rows.find((r) => r.position === q.record.position);
  assert(served && served.kind === "query_served" && served.verified === "yes", `CLI query listed and verified: ${JSON.stringify(rows)}`);
  const den = rows.find((r) => r.kind === "query_denied");
  assert(den && den.verified === "yes", "denial listed and verified");
  assert(rows.every((r) => r.verified === "yes"), "every access verified");
  await page.waitForSelector("#completeness [data-complete]", { timeout: 60000 });
  assert(await page.$eval("#completeness [data-complete]", (e) => e.dataset.complete) === "yes", "access list proven complete");
  await page.waitForSelector(`tr.consent[data-consent="${consent}"]`);

  step("4. through a fake node that flips a byte in each proof, the same list is NOT verified");
  proxy = await tamperingProxy(URL0);
  const fake = `http://127.0.0.1:${proxy.address().port}`;
  const page2 = await ctx.newPage();
  await open(page2, fake, "#/firm");
  if (!(await page2.$("[data-signed-in]"))) await signIn(page2, `firm-${FIRM}`, FIRM);
  const bad = await settled(page2, "#access-log tr.access");
  summary.tampered_rows = bad.map(({ position, kind, verified }) => ({ position, kind, verified }));
  assert(proxy.tampered > 0, "the proxy tampered with proofs");
  assert(bad.length === rows.length && bad.every((r) => r.verified === "no"), `tampered proofs shown as not verified: ${JSON.stringify(bad)}`);
  assert(bad.every((r) => /proof\.inclusion/.test(r.text)), "the reason names the inclusion proof");
  await shot(page2, "firm-tampered");
  await page2.close();

  step("5. the firm revokes the consent in the page; bank-a's page lists its queries verified");
  await page.click(`button.revoke[data-consent="${consent}"]`);
  await page.waitForSelector(`tr.consent[data-consent="${consent}"][data-revoked="yes"]`, { timeout: 60000 });
  const afterRevoke = xinyi("bank-a", ["query", "--consent", consent, "--firm", FIRM, "--categories", "tax"], { allowFail: true });
  assert(afterRevoke.failed && /consent.revoked/.test(afterRevoke.stderr + afterRevoke.stdout), `query after revoke refused: ${afterRevoke.stderr}`);
  await page.click("#signout");
  await open(page, URL0, "#/bank");
  await signIn(page, "bank-a", "bank-a");
  const brows = await settled(page, "#bank-queries tr.access");
  assert(brows.some((r) => r.position === q.record.position && r.verified === "yes"), "bank sees its query verified");
  assert(brows.every((r) => r.verified === "yes"), "every bank row verified");
  const bankText = await page.textContent("main");
  assert(!bankText.includes(FIRM), "the bank page shows no USCC");
  await page.waitForSelector("#alerts .note, #alerts table");
  await shot(page, "bank");

  step("5b. a repair applied by one registry only becomes overdue (CLI, dev clock)");
  const recs = xinyi("bank-a", ["records", "--firm", FIRM]).records
    .filter((r) => r.severity === "minor" && r.open_repair === null && !r.repaired);
  assert(recs.length > 0, "a repairable record");
  const advance = async (ms) => {
    const r = await fetch(`${URL0}/v1/dev/clock`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ advance_ms: ms }) });
    assert(r.ok, `dev clock: ${r.status}`);
  };
  const now0 = (await (await fetch(`${URL0}/health`)).json()).time_ms;
  const readyAt = recs[0].published_at + recs[0].min_publicity_days * 86400000;
  if (readyAt >= now0) await advance(readyAt - now0 + 60000);
  const rep = xinyi(`firm-${FIRM}`, ["repair", "request", "--record", recs[0].id]).id;
  xinyi("gz-credit", ["repair", "decide", rep, "--approve", "--reason", "obligations fulfilled"]);
  xinyi("credit-china", ["repair", "apply", rep]);
  const st = xinyi("bank-a", ["repair", "status", rep]);
  const now1 = (await (await fetch(`${URL0}/health`)).json()).time_ms;
  await advance(st.deadline - now1 + 60000);
  await page.click("#signout");
  await open(page, URL0, "#/firm");
  await signIn(page, `firm-${FIRM}`, FIRM);
  await page.waitForSelector(`tr.repair[data-repair="${rep}"][data-overdue="yes"]`, { timeout: 60000 });
  summary.repair = rep;
  await settled(page, "#access-log tr.access");
  await page.waitForSelector("#completeness [data-complete]", { timeout: 60000 });
  await shot(page, "firm");

  step("6. the auditor page lists checkpoints, blocks and certificates");
  await page.click("#signout");
  await open(page, URL0, "#/audit");
  await signIn(page, "auditor", "auditor");
  await page.waitForSelector("#checkpoint [data-final]");
  assert(await page.$eval("#checkpoint [data-final]", (e) => e.dataset.final) === "yes", "checkpoint final");
  const cpText = await page.textContent("#checkpoint");
  assert(cpText.includes("gz-credit"), "cosigner listed");
  const blocks = await page.$$eval("#blocks tr.block", (r) => r.map((x) => x.textContent));
  assert(blocks.length > 0 && blocks.every((b) => b.includes("✓")), `blocks with valid certificates: ${blocks.length}`);
  await page.fill("#entry-pos", String(q.record.position));
  await page.click("#entry-go");
  await page.waitForSelector("#entry-out [data-verified]");
  await page.waitForSelector(`#sla tr.repair[data-repair="${rep}"][data-overdue="yes"]`);
  assert((await page.textContent(`#sla tr.repair[data-repair="${rep}"]`)).includes("仅一方"), "one-sided repair flagged");
  // The node anchors final checkpoints to a file (tests/tests/ui.rs starts it so).
  await page.waitForSelector("#anchors tr.anchor");
  summary.anchors = await page.$$eval("#anchors tr.anchor", (r) => r.length);
  await shot(page, "audit");
  await page.click("#signout");
  await open(page, URL0, "#/audit");
  await page.fill("#entry-pos", String(q.record.position));
  await page.click("#entry-go");
  await page.waitForSelector("#entry-out [data-redacted]");
  assert(await page.textContent("#sla").then((x) => x.length > 0), "SLA asks for a privileged identity");
  await shot(page, "public");

  step("7. operator page with health and charts; English labels");
  await page.click("#lang");
  await open(page, URL0, "#/ops");
  // Some traffic while the page samples /metrics every 2 s (refused queries: still logged).
  for (let i = 0; i < 3; i++) {
    xinyi("bank-a", ["query", "--consent", consent, "--firm", FIRM, "--categories", "tax"], { allowFail: true });
    await page.waitForTimeout(2100);
  }
  assert((await page.textContent("nav")).includes("Firm"), "English labels after the switch");
  assert((await page.textContent("#health-status")) === "ok", "health ok");
  assert((await page.$$("svg.spark polyline")).length >= 4, "charts drawn");
  await shot(page, "ops");

  step("8. error lines: a bad key file");
  await open(page, URL0, "#/firm");
  const bogus = path.join(os.tmpdir(), `bogus-${process.pid}.key`);
  fs.writeFileSync(bogus, "not a key\n");
  await page.setInputFiles("#signin-file", bogus);
  await page.fill("#signin-id", FIRM);
  await page.click("#signin-go");
  await page.waitForSelector('.error[data-code="ui.key_malformed"]');
  assert(errors.length === 0, `page errors: ${errors.join("; ")}`);
  summary.failed_requests = failed;
  // Expected refusals only: the unsigned repair list (401).
  const unexpected = failed.filter((f) => f !== "401 /v1/repairs");
  assert(unexpected.length === 0, `unexpected failed requests: ${unexpected.join(", ")}`);
} finally {
  if (proxy) proxy.close();
  await lib.close(ctx);
}
console.log(JSON.stringify(summary));

// The console's pages: firm, bank, auditor/public, operator. Every value shown comes from the
// node's JSON API; every "verified" mark is computed here (verify.js), never taken from the
// node. The DOM is built with createElement/textContent only (no HTML strings). Role gating is
// the API's: the page asks with the signed-in identity and shows what the node releases; it
// never shows a USCC it was not given for the signed-in firm.

import * as api from "./api.js";
import { hex, parseKeyFile, randomBytes, salted, unhex32, utf8 } from "./crypto.js";
import { CATEGORIES, consentGrantedKind, consentRevokedKind, decodeEntry, firmBody, queryRequestOf, signEntry } from "./entry.js";
import { errorLine, getLang, setLang, t } from "./i18n.js";
import { parseMetrics, sparkline } from "./charts.js";
import { openCheckpoint, verifyAccessCompleteness, verifyCertificate } from "./verify.js";

// ---------- DOM helpers ----------

function h(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of kids.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const short = (s, n = 12) => (typeof s === "string" && s.length > n ? s.slice(0, n) + "…" : s);
const fmtTime = (ms) => (typeof ms === "number" ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) + "Z" : "–");
const codeOf = (e) => (e && e.code) || (e && /^([a-z_]+\.[a-z_]+):/.exec(String(e.message)) || [])[1] || "ui.bad_answer";
const detailOf = (e) => (e && (e.detail !== undefined ? e.detail : e.message)) || "";

function errLine(e) {
  return h("p", { class: "error", role: "alert", "data-code": codeOf(e) }, errorLine(codeOf(e), detailOf(e)));
}

function badge(ok, why) {
  return h("span", { class: ok ? "badge ok" : "badge bad", "data-verified": ok ? "yes" : "no", title: why || "" },
    ok ? "✓ " + t("verified") : "✗ " + t("not_verified") + (why ? " — " + why : ""));
}

function section(title, ...kids) {
  return h("section", { class: "card" }, h("h2", {}, title), ...kids);
}

function table(headers, rows, attrs = {}) {
  return h("table", attrs, h("thead", {}, h("tr", {}, headers.map((x) => h("th", {}, x)))), h("tbody", {}, rows));
}

const main = () => document.getElementById("main");

// ---------- sign-in ----------

function signInPanel(kind, onDone) {
  const s = api.current();
  if (s) {
    return h("div", { class: "signin", "data-signed-in": s.kind + ":" + s.id },
      t("signed_in_as"), h("strong", {}, s.kind === "firm" ? s.id : "org " + s.id), " ",
      h("button", { id: "signout", onclick: () => { api.signOut(); route(); } }, t("signout")));
  }
  const idInput = h("input", { id: "signin-id", placeholder: kind === "firm" ? t("uscc") : t("org"), size: 22 });
  const file = h("input", { id: "signin-file", type: "file" });
  const msg = h("div", { class: "msg" });
  file.addEventListener("change", () => {
    const f = file.files[0];
    if (!f) return;
    // Suggest the identity from the file name the tools use (firm-<USCC>.key, <org>.key).
    const m = /^firm-([0-9A-Z]{18})\.key$/.exec(f.name) || /^([a-z][a-z0-9-]{0,31})\.key$/.exec(f.name);
    if (m && !idInput.value) idInput.value = m[1];
  });
  const go = async () => {
    msg.replaceChildren();
    const f = file.files[0];
    const id = idInput.value.trim();
    try {
      if (!id) throw Object.assign(new Error(""), { code: kind === "firm" ? "ui.need_uscc" : "ui.need_org" });
      if (!f) throw Object.assign(new Error(""), { code: "ui.key_malformed" });
      const text = await new Promise((res, rej) => {
        const r = new FileReader();
        r.onload = () => res(r.result);
        r.onerror = () => rej(r.error);
        r.readAsText(f);
      });
      await api.signIn(kind, id, parseKeyFile(text));
      onDone();
    } catch (e) {
      msg.appendChild(errLine(e));
    }
  };
  return h("div", { class: "signin" },
    h("h2", {}, t("signin")),
    h("label", {}, kind === "firm" ? t("uscc") : t("org"), " ", idInput), " ",
    h("label", {}, t("keyfile"), " ", file), " ",
    h("button", { id: "signin-go", onclick: go }, t("signin")),
    h("p", { class: "note" }, t("key.note")), msg);
}

// ---------- verification of listed accesses ----------

/**
 * Verifies one access-log or bank-queries item: the entry read at its position must hash to the
 * listed id, be included in a final checkpoint, and say what the list says (kind, bank, consent,
 * categories, reason, firm tag if known).
 */
async function verifyItem(trust, item, tagHex) {
  const r = await api.signedGet(`/v1/entries/${item.position}`);
  if (r.redacted || !r.entry) throw Object.assign(new Error("the node redacted the entry"), { code: "api.forbidden" });
  const bytes = api.entryBytes(r.entry);
  const inc = await api.verifyFinal(trust, bytes, { ...r, position: item.position, id: item.id });
  const e = decodeEntry(bytes);
  const q = queryRequestOf(e);
  const same = q && e.kind === item.kind && q.bank === (item.bank || q.bank) && q.consent === item.consent &&
    q.categories.join(",") === item.categories.join(",") && (item.reason || null) === (q.reason || null) &&
    (!tagHex || [].concat(tagHex).includes(q.firm)) && (!item.firm || item.firm === q.firm);
  if (!same) throw Object.assign(new Error("the entry says something else than the list"), { code: "entry.mismatch" });
  return inc;
}

function accessRows(trust, items, tagHex, withFirm) {
  return items.map((it) => {
    const cell = h("td", { class: "verdict" }, h("span", { class: "badge wait" }, t("checking")));
    const tr = h("tr", { class: "access", "data-position": it.position, "data-id": it.id, "data-kind": it.kind },
      h("td", {}, it.position), h("td", {}, it.height), h("td", {}, it.kind === "query_served" ? t("served") : t("denied")),
      h("td", {}, withFirm ? h("code", {}, short(it.firm)) : it.bank), h("td", {}, h("code", {}, short(it.consent))),
      h("td", {}, it.categories.join(", ")), h("td", {}, it.reason ? errorLine(it.reason) : ""), cell);
    verifyItem(trust, it, tagHex).then(
      (inc) => cell.replaceChildren(badge(true, `#${inc.position} ⊂ ${inc.size}`)),
      (e) => cell.replaceChildren(badge(false, errorLine(codeOf(e), detailOf(e)))));
    return tr;
  });
}

// ---------- firm ----------

async function firmPage(root) {
  const s = api.current();
  root.appendChild(signInPanel("firm", route));
  if (!s) return;
  if (s.kind !== "firm") { root.appendChild(errLine({ code: "ui.need_firm" })); return; }
  const uscc = s.id;
  const trust = await api.trust();
  const g = trust.genesis;
  const tagInfo = await api.signedGet(`/v1/firms/${uscc}/tag`);
  const tag = tagInfo.tag;
  // One tag per firm-key epoch (privacy.md §8); accesses under any of them are the firm's.
  const listed = Array.isArray(tagInfo.tags) ? tagInfo.tags : [{ epoch: 0, tag, registration: tagInfo.registration }];
  const tags = listed.map((x) => x.tag);
  // A firm signs under each tag with its key of that tag's epoch.
  const keyUnder = async (tg) => (await api.epochKey(listed.find((x) => x.tag === tg)?.epoch ?? 0)).key;
  const bind = h("span", { id: "firm-tag-binding" }, t("checking"));
  root.appendChild(section(t("firm") + " " + uscc, h("p", {}, "tag ", h("code", { id: "firm-tag" }, tag), " ", bind)));
  // Each tag must be bound to this firm's key of its epoch by the firm's own registration
  // entry (privacy.md §2, §8).
  (async () => {
    if (tagInfo.registration === null) throw Object.assign(new Error("no registration"), { code: "firm.tag_mismatch" });
    for (const x of listed) {
      if (x.registration === null) continue;
      const r = await api.signedGet(`/v1/entries/${x.registration}`);
      const bytes = api.entryBytes(r.entry);
      await api.verifyFinal(trust, bytes, r);
      const e = decodeEntry(bytes);
      const pub = (await api.epochKey(x.epoch)).pub;
      if (e.kind !== "firm_registered" || hex(e.v.get(0)) !== x.tag || hex(e.v.get(1)) !== hex(pub)) {
        throw Object.assign(new Error("registration names another tag or key"), { code: "firm.tag_mismatch" });
      }
    }
  })().then(() => bind.replaceChildren(badge(true, "firm_registered")), (e) => bind.replaceChildren(badge(false, errorLine(codeOf(e), detailOf(e)))));

  const hist = await api.signedGet(`/v1/firms/${uscc}/entries`);

  // Consents.
  const banks = g.orgs.filter((o) => o.role === "bank").map((o) => o.id);
  const consentIds = hist.entries.filter((e) => e.kind === "consent_granted").map((e) => e.id);
  const consentRows = await Promise.all(consentIds.map(async (id) => {
    try {
      const c = await api.signedGet(`/v1/consents/${id}`);
      const revokeBtn = c.revoked ? null : h("button", { class: "revoke", "data-consent": id, onclick: () => revoke(id, c.firm) }, t("revoke"));
      return h("tr", { class: "consent", "data-consent": id, "data-revoked": c.revoked ? "yes" : "no" },
        h("td", {}, h("code", {}, short(id))), h("td", {}, c.bank), h("td", {}, c.categories.join(", ")),
        h("td", {}, `${c.used} / ${c.max_uses}`), h("td", {}, fmtTime(c.not_after)),
        h("td", {}, c.revoked ? t("revoked") : t("active")), h("td", {}, revokeBtn));
    } catch (e) {
      return h("tr", {}, h("td", { colspan: 7 }, errLine(e)));
    }
  }));
  const result = h("div", { id: "grant-result" });
  const bankSel = h("select", { id: "grant-bank" }, banks.map((b) => h("option", { value: b }, b)));
  const cats = CATEGORIES.map((c) => h("label", { class: "cat" }, h("input", { type: "checkbox", value: c, checked: c === "registration" || c === "tax", "data-cat": c }), c));
  const uses = h("input", { id: "grant-uses", type: "number", min: 1, value: 2, size: 4 });
  const days = h("input", { id: "grant-days", type: "number", min: 1, value: 30, size: 4 });
  const purpose = h("input", { id: "grant-purpose", value: "loan application", size: 24 });

  async function grant() {
    result.replaceChildren(t("checking"));
    try {
      const hl = await api.health();
      const now = hl.time_ms;
      const salt = randomBytes(32);
      const categories = cats.map((l) => l.firstChild).filter((i) => i.checked).map((i) => i.value);
      const kind = consentGrantedKind({
        bank: bankSel.value, purpose: await salted(salt, utf8(purpose.value)), categories,
        not_before: now, not_after: now + Number(days.value) * 86400000, max_uses: Number(uses.value),
      });
      const body = firmBody(unhex32(tag), now, api.randomNonce(), kind);
      const bytes = await signEntry(await keyUnder(tag), trust.chain, body);
      const w = await api.postEntry("/v1/consents", bytes);
      const inc = await api.verifyFinal(trust, bytes, w);
      result.replaceChildren(h("p", { class: "ok", "data-consent": w.id },
        t("ok"), ": consent ", h("code", { id: "granted-id" }, w.id), " ", badge(true, `#${inc.position} ⊂ ${inc.size}`),
        h("br"), "purpose_salt ", h("code", {}, hex(salt))));
      setTimeout(route, 1500);
    } catch (e) {
      result.replaceChildren(errLine(e));
    }
  }

  // Signed under the tag the consent was granted under (an older epoch's after a rotation).
  async function revoke(id, under) {
    result.replaceChildren(t("checking"));
    try {
      const now = (await api.health()).time_ms;
      const tg = tags.includes(under) ? under : tag;
      const bytes = await signEntry(await keyUnder(tg), trust.chain, firmBody(unhex32(tg), now, api.randomNonce(), consentRevokedKind(id)));
      const w = await api.postEntry(`/v1/consents/${id}/revoke`, bytes);
      await api.verifyFinal(trust, bytes, w);
      route();
    } catch (e) {
      result.replaceChildren(errLine(e));
    }
  }

  root.appendChild(section(t("consents"),
    table(["id", t("bank"), t("categories"), t("used"), t("valid_until"), t("status"), ""], consentRows, { id: "consents" }),
    h("h3", {}, t("grant")),
    h("div", { class: "form" }, h("label", {}, t("bank"), " ", bankSel), h("div", { class: "cats" }, cats),
      h("label", {}, t("uses"), " ", uses), " ", h("label", {}, t("days"), " ", days), " ",
      h("label", {}, t("purpose"), " ", purpose), " ", h("button", { id: "grant-go", onclick: grant }, t("do_grant"))),
    result));

  // Queries and denials, each verified, and the completeness proof of the whole list.
  const log = await api.signedGet(`/v1/firms/${uscc}/access-log`);
  const complete = h("p", { id: "completeness" }, t("checking"));
  root.appendChild(section(t("queries"), complete,
    table(["#", t("height"), t("kind"), t("bank"), "consent", t("categories"), "", ""], accessRows(trust, log.entries, tags, false), { id: "access-log" })));
  api.signedGet(`/v1/firms/${uscc}/access-proof`)
    .then((ap) => verifyAccessCompleteness(trust, tag, ap, log.entries))
    .then((r) => complete.replaceChildren(h("span", { class: "badge ok", "data-complete": "yes" }, `✓ ${t("complete")} (${r.count}, log ${r.logSize}, block ${r.height})`)),
      (e) => complete.replaceChildren(h("span", { class: "badge bad", "data-complete": "no" }, `✗ ${t("incomplete")} — ${errorLine(codeOf(e), detailOf(e))}`)));

  // Repairs with both registries and the overdue flag.
  const repairIds = hist.entries.filter((e) => e.kind === "repair_requested").map((e) => e.id);
  const repairRows = await Promise.all(repairIds.map(async (id) => {
    try {
      const r = await api.getJson(`/v1/repairs/${id}`);
      return repairRow(r);
    } catch (e) {
      return h("tr", {}, h("td", { colspan: 6 }, errLine(e)));
    }
  }));
  root.appendChild(section(t("repairs"), repairTable(repairRows)));
}

function repairRow(r) {
  const oneSided = r.status === "approved" && (r.credit_china_applied_at === null) !== (r.gsxt_applied_at === null);
  return h("tr", { class: "repair", "data-repair": r.id, "data-overdue": r.overdue ? "yes" : "no" },
    h("td", {}, h("code", {}, short(r.id))), h("td", {}, r.status), h("td", {}, fmtTime(r.deadline)),
    h("td", {}, fmtTime(r.credit_china_applied_at)), h("td", {}, fmtTime(r.gsxt_applied_at)),
    h("td", {}, r.overdue ? h("span", { class: "badge bad" }, t("overdue")) : "",
      oneSided ? h("span", { class: "badge warn" }, t("one_sided")) : ""));
}

const repairTable = (rows) => table(["id", t("status"), t("deadline"), t("credit_china"), t("gsxt"), ""], rows, { id: "repairs" });

// ---------- bank ----------

async function bankPage(root) {
  const s = api.current();
  root.appendChild(signInPanel("org", route));
  if (!s) return;
  const trust = await api.trust();
  const org = trust.genesis.orgs.find((o) => o.id === s.id);
  if (s.kind !== "org" || !org || org.role !== "bank") { root.appendChild(errLine({ code: "ui.need_bank" })); return; }
  const q = await api.signedGet(`/v1/banks/${s.id}/queries`);
  // The bank's consents: those it holds ids of (every consent its queries used).
  const ids = [...new Set(q.entries.map((e) => e.consent))];
  const rows = await Promise.all(ids.map(async (id) => {
    try {
      const c = await api.signedGet(`/v1/consents/${id}`);
      return h("tr", { class: "consent", "data-consent": id }, h("td", {}, h("code", {}, short(id))), h("td", {}, h("code", {}, short(c.firm))),
        h("td", {}, c.categories.join(", ")), h("td", {}, `${c.used} / ${c.max_uses}`), h("td", {}, fmtTime(c.not_after)),
        h("td", {}, c.revoked ? t("revoked") : t("active")));
    } catch (e) {
      return h("tr", {}, h("td", { colspan: 6 }, errLine(e)));
    }
  }));
  root.appendChild(section(t("consents"), table(["id", t("firm") + " (tag)", t("categories"), t("used"), t("valid_until"), t("status")], rows, { id: "bank-consents" })));
  root.appendChild(section(t("queries"),
    table(["#", t("height"), t("kind"), t("firm") + " (tag)", "consent", t("categories"), "", ""], accessRows(trust, q.entries, null, true), { id: "bank-queries" })));
  // Post-loan monitoring alerts (GET /v1/banks/{org}/alerts, node/src/api/alerts.rs).
  const alerts = h("div", { id: "alerts" }, t("checking"));
  root.appendChild(section(t("alerts"), alerts));
  api.signedGet(`/v1/banks/${s.id}/alerts`).then(
    (a) => alerts.replaceChildren(table(["#", t("firm") + " (tag)", t("kind"), t("time")],
      (a.alerts || []).map((x) => h("tr", { class: "alert" }, h("td", {}, x.entry?.position ?? ""), h("td", {}, h("code", {}, short(x.tag || ""))), h("td", {}, x.category || ""), h("td", {}, fmtTime(x.released_at)))))),
    (e) => alerts.replaceChildren(e.status === 404 ? h("p", { class: "note" }, t("alerts.none")) : errLine(e)));
}

// ---------- auditor / public ----------

async function auditPage(root) {
  root.appendChild(signInPanel("org", route));
  const trust = await api.trust();
  const hl = await api.health();
  root.appendChild(section(t("chain_id"), h("p", {}, h("code", {}, hl.chain_id)), h("p", { class: "note" }, t("genesis_trust")),
    h("p", {}, `${t("height")}: `, h("strong", { id: "height" }, hl.height), `  ${t("log_size")}: `, h("strong", {}, hl.log_size))));

  // The latest checkpoint, verified here, with cosigners and witnesses.
  const cpBox = h("div", { id: "checkpoint" });
  try {
    const { cp, note } = await api.latestCheckpoint();
    cpBox.append(
      h("p", {}, `size ${cp.size} · root `, h("code", {}, hex(cp.root)), " ",
        h("span", { class: cp.final ? "badge ok" : "badge bad", "data-final": cp.final ? "yes" : "no" }, cp.final ? "✓ " + t("final") : "✗ " + t("not_final")),
        ` (${cp.power}/${cp.total})`),
      h("p", {}, t("cosigners") + ": ", cp.signers.join(", ")),
      h("p", {}, t("witnesses") + ": ", cp.others.length ? cp.others.map((o) => `${o.name} (${o.time ? fmtTime(o.time * 1000) : o.keyId})`).join(", ") : t("none")),
      h("pre", { class: "note-text" }, note));
  } catch (e) {
    cpBox.append(errLine(e));
  }
  const listed = await api.getJson("/v1/checkpoints");
  root.appendChild(section(t("checkpoints"), cpBox,
    h("h3", {}, t("checkpoints") + " (checkpoint_cosigned)"),
    table(["size", t("cosigners")], listed.cosigned.map((c) => h("tr", { class: "cosigned" }, h("td", {}, c.size), h("td", {}, c.signers.join(", ")))), { id: "cosigned" }),
    h("h3", {}, t("anchors")),
    table(["size", "chain", "tx"], listed.anchors.map((a) => h("tr", { class: "anchor" }, h("td", {}, a.size), h("td", {}, a.chain), h("td", {}, h("code", {}, a.tx)))), { id: "anchors" })));

  // Recent blocks with their certificates checked against the genesis validators; the last
  // height each validator's vote is seen at.
  const last = {};
  const blockRows = [];
  for (let ht = hl.height; ht >= 1 && ht > hl.height - 10; ht--) {
    try {
      const b = await api.signedGet(`/v1/blocks/${ht}`);
      let ok = true;
      let why = "";
      try { await verifyCertificate(trust, b.header, b.certificate); } catch (e) { ok = false; why = errorLine(codeOf(e), detailOf(e)); }
      for (const v of b.certificate.votes) if (!(v.validator in last)) last[v.validator] = ht;
      blockRows.push(h("tr", { class: "block", "data-height": ht }, h("td", {}, ht), h("td", {}, fmtTime(b.header.time)),
        h("td", {}, b.header.entry_count), h("td", {}, h("code", {}, short(b.header_hash, 16))),
        h("td", {}, b.certificate.votes.map((v) => v.validator).join(", ")),
        h("td", {}, h("span", { class: ok ? "badge ok" : "badge bad" }, ok ? "✓ " + t("cert_ok") : "✗ " + t("cert_bad") + " " + why)),
        h("td", {}, b.redacted ? t("redacted") : `${b.entries.length}`)));
    } catch (e) {
      blockRows.push(h("tr", {}, h("td", { colspan: 7 }, errLine(e))));
    }
  }
  root.appendChild(section(t("blocks"), table([t("height"), t("time"), "n", "hash", t("cosigners"), "", t("entries")], blockRows, { id: "blocks" })));
  window.__xinyiLastVotes = last;

  // Role-gated entry view.
  const pos = h("input", { id: "entry-pos", type: "number", min: 0, value: 0, size: 6 });
  const out = h("div", { id: "entry-out" });
  const show = async () => {
    out.replaceChildren(t("checking"));
    try {
      const r = await api.signedGet(`/v1/entries/${Number(pos.value)}`);
      const kids = [h("p", {}, `${t("position")} ${r.position} · ${t("height")} ${r.height} · id `, h("code", {}, r.id))];
      if (r.redacted) {
        kids.push(h("p", { class: "note", "data-redacted": "yes" }, t("redacted")), h("p", {}, "leaf ", h("code", {}, r.leaf_hash)));
      } else {
        const inc = await api.verifyFinal(trust, api.entryBytes(r.entry), r)
          .then((x) => badge(true, `⊂ ${x.size}`), (e) => badge(false, errorLine(codeOf(e), detailOf(e))));
        kids.push(h("p", {}, r.kind, " ", inc), h("pre", {}, JSON.stringify(r.body, null, 2)));
      }
      out.replaceChildren(...kids);
    } catch (e) {
      out.replaceChildren(errLine(e));
    }
  };
  root.appendChild(section(t("entry_view"), h("label", {}, t("position"), " ", pos), " ", h("button", { id: "entry-go", onclick: show }, t("show")), out));

  // Repair SLA (auditors and validators).
  const sla = h("div", { id: "sla" });
  root.appendChild(section(t("sla"), sla));
  api.signedGet("/v1/repairs").then(
    (r) => sla.replaceChildren(h("p", {}, `${r.repairs.filter((x) => x.overdue).length} ${t("overdue")}, ${r.repairs.filter((x) => x.one_sided).length} ${t("one_sided")}`),
      repairTable(r.repairs.filter((x) => x.status !== "applied" && x.status !== "rejected" || x.overdue).map(repairRow))),
    (e) => sla.replaceChildren(e.code === "api.missing_auth" || e.code === "api.forbidden" ? h("p", { class: "note" }, t("needs_priv")) : errLine(e)));
}

// ---------- operator ----------

const samples = {};
let opsTimer = null;
const CHARTED = ["xinyi_height", "xinyi_log_entries", "xinyi_mempool_depth", "xinyi_queries_served_total", "xinyi_queries_denied_total", "xinyi_entries_committed_total"];

async function opsPage(root) {
  const box = h("div", { id: "ops" });
  root.appendChild(box);
  const draw = async () => {
    try {
      const [hl, mt] = await Promise.all([api.health(), api.getText("/metrics")]);
      const m = parseMetrics(mt);
      for (const k of CHARTED) {
        (samples[k] = samples[k] || []).push(m[k] ?? 0);
        if (samples[k].length > 60) samples[k].shift();
      }
      const http = Object.entries(m).filter(([k]) => k.startsWith("xinyi_http_requests_total"));
      const peers = Array.isArray(hl.peers) ? hl.peers : [];
      box.replaceChildren(
        section(t("health"), table(["status", "org", "role", t("height"), t("log_size"), t("mempool"), t("time")],
          [h("tr", {}, h("td", { id: "health-status" }, hl.status), h("td", {}, hl.org), h("td", {}, hl.role), h("td", {}, hl.height), h("td", {}, hl.log_size), h("td", {}, hl.mempool), h("td", {}, fmtTime(hl.time_ms)))])),
        section(t("peers"), peers.length ? table(["org", "connected", "blocked"], peers.map((p) => h("tr", {}, h("td", {}, p.org), h("td", {}, p.connected ? "✓" : "✗"), h("td", {}, p.blocked ? "✗" : "")))) : h("p", { class: "note" }, t("solo"))),
        section(t("consensus"), h("p", { class: "note" }, t("consensus.note")),
          table(["validator", t("height")], Object.entries(window.__xinyiLastVotes || { [hl.org]: hl.height }).map(([v, ht]) => h("tr", {}, h("td", {}, v), h("td", {}, ht))))),
        section(t("metrics"), h("div", { class: "charts" }, CHARTED.map((k) => sparkline(samples[k], { label: k.replace("xinyi_", "") }))),
          table(["http", "n"], http.map(([k, v]) => h("tr", {}, h("td", {}, k.replace("xinyi_http_requests_total", "")), h("td", {}, v))))));
    } catch (e) {
      box.replaceChildren(errLine(e));
    }
  };
  await draw();
  opsTimer = setInterval(draw, 2000);
}

// ---------- routing ----------

const PAGES = { firm: firmPage, bank: bankPage, audit: auditPage, ops: opsPage };

export async function route() {
  if (opsTimer) { clearInterval(opsTimer); opsTimer = null; }
  const name = (location.hash.replace(/^#\/?/, "") || "audit").split("?")[0];
  const page = PAGES[name] || auditPage;
  document.documentElement.lang = getLang();
  document.title = t("title");
  for (const a of document.querySelectorAll("nav a")) {
    a.textContent = t("nav." + a.dataset.page);
    a.classList.toggle("current", a.dataset.page === name);
  }
  document.getElementById("lang").textContent = t("lang");
  document.getElementById("app-title").textContent = t("title");
  const root = h("div", { class: "page", "data-page": name });
  main().replaceChildren(root);
  try {
    await page(root);
  } catch (e) {
    root.appendChild(errLine(e));
  }
  root.setAttribute("data-ready", "yes");
}

async function start() {
  if (!(await supportsEd25519())) {
    main().replaceChildren(errLine({ code: "ui.no_webcrypto_ed25519" }));
    return;
  }
  document.getElementById("lang").addEventListener("click", () => { setLang(getLang() === "zh-CN" ? "en" : "zh-CN"); route(); });
  window.addEventListener("hashchange", route);
  await api.restore();
  route();
}

async function supportsEd25519() {
  try {
    await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    return true;
  } catch (_) {
    return false;
  }
}

start();

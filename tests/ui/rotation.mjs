// The web console across a firm-key rotation (specs/privacy.md §8), in a real Chromium, against
// a node of a 4-validator testnet whose firm key was rotated (started by tests/tests/ui.rs):
//  1. the firm signs in with its one key file; the page finds the epoch to authenticate with,
//     shows its new tag and checks each tag's registration against its key of that epoch;
//  2. its access list holds the accesses under both tags, each verified, and is proven complete
//     (one proof per tag against one certified block);
//  3. it grants a consent in the page (signed under the new tag with the epoch-1 key) and
//     revokes one granted before the rotation (signed under the old tag with the old key).
// Environment: XINYI_URL, XINYI_KEYS, XINYI_CLI, XINYI_GENESIS, XINYI_FIRM, XINYI_STATE,
// XINYI_SHOTS, XINYI_OLD_TAG, XINYI_NEW_TAG, XINYI_OLD_CONSENT, XINYI_ACCESSES (JSON array of the
// firm's access positions), CHROMIUM. Prints a JSON summary as its last line.

import fs from "node:fs";
import * as lib from "./lib.mjs";
import { assert, env, settled, step } from "./lib.mjs";

const URL0 = env("XINYI_URL");
const KEYS = env("XINYI_KEYS");
const FIRM = env("XINYI_FIRM");
const SHOTS = env("XINYI_SHOTS");
const OLD_TAG = env("XINYI_OLD_TAG");
const NEW_TAG = env("XINYI_NEW_TAG");
const OLD_CONSENT = env("XINYI_OLD_CONSENT");
const ACCESSES = JSON.parse(env("XINYI_ACCESSES"));
fs.mkdirSync(SHOTS, { recursive: true });
const xinyi = lib.cli({ url: URL0, keys: KEYS, bin: env("XINYI_CLI"), genesis: env("XINYI_GENESIS"), state: env("XINYI_STATE") });

const summary = {};
const ctx = await lib.launch(process.env.CHROMIUM || "/usr/bin/chromium");
try {
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));

  step("1. the firm signs in; the page shows its new tag, each registration bound to its epoch key");
  await lib.open(page, URL0, "#/firm");
  await lib.signIn(page, KEYS, `firm-${FIRM}`, FIRM);
  const tag = (await page.textContent("#firm-tag")).trim();
  assert(tag === NEW_TAG, `the page shows tag ${tag}, not the new tag ${NEW_TAG}`);
  await page.waitForSelector("#firm-tag-binding [data-verified]", { timeout: 60000 });
  const binding = await page.$eval("#firm-tag-binding [data-verified]", (e) => e.dataset.verified + " " + e.title);
  assert(binding.startsWith("yes"), `registrations bound to the firm's epoch keys: ${binding}`);

  step("2. the access list spans both tags, every row verified, proven complete");
  const rows = await settled(page, "#access-log tr.access");
  summary.rows = rows.map(({ position, kind, verified }) => ({ position, kind, verified }));
  const positions = rows.map((r) => r.position).sort((a, b) => a - b);
  assert(JSON.stringify(positions) === JSON.stringify([...ACCESSES].sort((a, b) => a - b)),
    `access rows ${JSON.stringify(positions)} are the firm's accesses ${JSON.stringify(ACCESSES)}`);
  assert(rows.every((r) => r.verified === "yes"), `every access verified: ${JSON.stringify(summary.rows)}`);
  await page.waitForSelector("#completeness [data-complete]", { timeout: 60000 });
  assert(await page.$eval("#completeness [data-complete]", (e) => e.dataset.complete) === "yes",
    `access list proven complete: ${await page.textContent("#completeness")}`);

  step("3. grant in the page under the new tag; revoke a pre-rotation consent under the old one");
  await page.selectOption("#grant-bank", "bank-a");
  await page.click("#grant-go");
  await page.waitForSelector("#granted-id, #grant-result .error", { timeout: 60000 });
  assert(await page.$("#granted-id"), `grant in the page: ${await page.textContent("#grant-result")}`);
  const granted = (await page.textContent("#granted-id")).trim();
  const g = xinyi("bank-a", ["consent", "show", granted]);
  assert(g.firm === NEW_TAG, `the page's consent is under the new tag: ${JSON.stringify(g)}`);
  await lib.open(page, URL0, "#/firm");
  await page.click(`button.revoke[data-consent="${OLD_CONSENT}"]`);
  await page.waitForSelector(`tr.consent[data-consent="${OLD_CONSENT}"][data-revoked="yes"]`, { timeout: 60000 });
  const o = xinyi("bank-a", ["consent", "show", OLD_CONSENT]);
  assert(o.firm === OLD_TAG && o.revoked === true, `the old consent is revoked under the old tag: ${JSON.stringify(o)}`);
  summary.granted = granted;
  await lib.shot(page, SHOTS, summary, "firm-rotated");
  assert(errors.length === 0, `page errors: ${errors.join("; ")}`);
} finally {
  await lib.close(ctx);
}
console.log(JSON.stringify(summary));

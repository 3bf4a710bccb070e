// Shared by the browser scripts (console.mjs, rotation.mjs): environment, the `xinyi` CLI,
// Chromium through playwright-core, and page helpers keyed to the console's data attributes.

import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`environment variable ${k} is required`);
  return v;
};
export const step = (s) => console.error(`== ${s}`);
export function assert(c, msg) {
  if (!c) throw new Error(`assertion failed: ${msg}`);
}

/** `xinyi --node URL --genesis G --key KEYS/<key>.key --json ARGS`, parsed; throws on failure. */
export function cli({ url, keys, bin, genesis, state }) {
  return (key, args, { allowFail = false } = {}) => {
    const full = ["--node", url, "--genesis", genesis, "--key", path.join(keys, `${key}.key`), "--json", ...args];
    try {
      return JSON.parse(execFileSync(bin, full, { env: { ...process.env, XINYI_STATE: state }, encoding: "utf8" }));
    } catch (e) {
      if (allowFail) return { failed: true, stdout: String(e.stdout || ""), stderr: String(e.stderr || "") };
      throw new Error(`xinyi ${args.join(" ")} failed: ${e.stderr || e}`);
    }
  };
}

/** Headless Chromium with a fresh profile directory (playwright passes it as --user-data-dir). */
export async function launch(executablePath) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "xinyi-chromium-"));
  profiles.set(await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    locale: "zh-CN",
    viewport: { width: 1280, height: 900 },
  }), profile);
  return [...profiles.keys()].at(-1);
}
const profiles = new Map();

/** Closes a browser from [`launch`] and removes its profile directory. */
export async function close(ctx) {
  await ctx.close();
  fs.rmSync(profiles.get(ctx), { recursive: true, force: true });
  profiles.delete(ctx);
}

let loads = 0;
/** Loads `base/ui` at `hash` and waits for the page to be ready. */
export async function open(page, base, hash) {
  // A new query string each time: a full load, never a same-document hash change.
  await page.goto(`${base}/ui/?load=${++loads}${hash}`);
  await page.waitForSelector(`.page[data-page="${hash.replace("#/", "")}"][data-ready="yes"]`, { timeout: 60000 });
}

/** Signs in with the key file `keys/<keyName>.key` as `id`. */
export async function signIn(page, keys, keyName, id) {
  await page.setInputFiles("#signin-file", path.join(keys, `${keyName}.key`));
  await page.fill("#signin-id", id);
  await page.click("#signin-go");
  await page.waitForSelector(`[data-signed-in]`, { timeout: 30000 });
  await page.waitForSelector(`.page[data-ready="yes"]`, { timeout: 60000 });
}

/** Waits until no verdict in `selector` is still "checking"; the rows with their verdicts. */
export async function settled(page, selector) {
  await page.waitForFunction((sel) => {
    const rows = document.querySelectorAll(sel);
    return rows.length > 0 && [...rows].every((r) => r.querySelector("[data-verified]"));
  }, selector, { timeout: 60000 });
  return page.$$eval(selector, (rows) => rows.map((r) => ({
    position: Number(r.dataset.position), kind: r.dataset.kind, id: r.dataset.id,
    verified: r.querySelector("[data-verified]").dataset.verified, text: r.textContent,
  })));
}

/** A full-page screenshot `dir/<name>.png`, recorded in `summary.shots`. */
export async function shot(page, dir, summary, name) {
  const file = path.join(dir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  summary.shots = [...(summary.shots || []), file];
}

// Drives Debian's Chromium for the tests: one JSON command per line on
// stdin, one JSON reply per line on stdout ({"ok":true,...} or
// {"ok":false,"error":...}). Each `open` starts its own browser, so each
// page has its own fake camera and microphone files.
//   {"op":"open","id":"a","url":URL,"y4m":FILE,"wav":FILE[,"width":W,"height":H][,"init":JS]}
//     (`init` runs in the page before its own scripts)
//   {"op":"eval","id":"a","js":EXPRESSION}        -> {"value":...}
//   {"op":"click","id":"a","selector":CSS}
//   {"op":"select","id":"a","selector":CSS,"value":V}
//   {"op":"fill","id":"a","selector":CSS,"value":TEXT}
//   {"op":"screenshot","id":"a","path":FILE}
//   {"op":"logs","id":"a"}                         -> {"value":[...]}
//   {"op":"close","id":"a"}  /  {"op":"quit"}
import { chromium } from "playwright-core";
import readline from "node:readline";

const pages = new Map();

function flags(c) {
  const f = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
  ];
  if (c.y4m) f.push(`--use-file-for-fake-video-capture=${c.y4m}`);
  if (c.wav) f.push(`--use-file-for-fake-audio-capture=${c.wav}`);
  return f;
}

function get(id) {
  const p = pages.get(id);
  if (!p) throw new Error(`no page ${id}`);
  return p;
}

async function handle(c) {
  switch (c.op) {
    case "open": {
      const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: flags(c) });
      const page = await browser.newPage({ viewport: { width: c.width || 960, height: c.height || 600 } });
      const logs = [];
      page.on("console", (m) => logs.push(m.text()));
      page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
      pages.set(c.id, { browser, page, logs });
      if (c.init) await page.addInitScript(c.init);
      await page.goto(c.url);
      return {};
    }
    case "eval":
      return { value: await get(c.id).page.evaluate(c.js) };
    case "click":
      await get(c.id).page.click(c.selector);
      return {};
    case "select":
      await get(c.id).page.selectOption(c.selector, c.value);
      return {};
    case "fill":
      await get(c.id).page.fill(c.selector, c.value);
      return {};
    case "screenshot":
      await get(c.id).page.screenshot({ path: c.path });
      return {};
    case "logs":
      return { value: get(c.id).logs };
    case "close": {
      const p = get(c.id);
      pages.delete(c.id);
      await p.browser.close();
      return {};
    }
    case "quit":
      for (const p of pages.values()) await p.browser.close().catch(() => {});
      process.stdout.write(JSON.stringify({ ok: true }) + "\n");
      process.exit(0);
    default:
      throw new Error(`unknown op ${c.op}`);
  }
}

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  let reply;
  try {
    reply = { ok: true, ...(await handle(JSON.parse(line))) };
  } catch (e) {
    reply = { ok: false, error: String(e && e.message ? e.message : e) };
  }
  // -Infinity and NaN are not JSON: say so rather than null.
  process.stdout.write(JSON.stringify(reply, (_, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v)) + "\n");
}
for (const p of pages.values()) await p.browser.close().catch(() => {});

// Drives Debian's Chromium through a tessera room and prints what it saw,
// as JSON on stdout. Used by tests/browser.rs.
//   node run.mjs --ws ws://127.0.0.1:PORT/mqtt --room R --peer P --y4m FILE
//                --points "x,y;x,y" [--frames 30] [--timeout 60000]
import { chromium } from "playwright-core";
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const points = (args.points || "").split(";").filter(Boolean).map((p) => p.split(",").map(Number));
const wantFrames = Number(args.frames || 30);
const timeout = Number(args.timeout || 60000);

const files = {
  "/page.html": [path.join(here, "page.html"), "text/html"],
  "/mqtt.min.js": [path.join(here, "node_modules/mqtt/dist/mqtt.min.js"), "text/javascript"],
};
const server = http.createServer((req, res) => {
  const f = files[new URL(req.url, "http://x").pathname];
  if (!f) { res.writeHead(404); return res.end(); }
  res.writeHead(200, { "content-type": f[1] });
  fs.createReadStream(f[0]).pipe(res);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const port = server.address().port;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    `--use-file-for-fake-video-capture=${args.y4m}`,
    "--autoplay-policy=no-user-gesture-required",
  ],
});
let result = { ok: false };
try {
  const page = await browser.newPage();
  const logs = [];
  page.on("console", (m) => logs.push(m.text()));
  const q = new URLSearchParams({ ws: args.ws, room: args.room, peer: args.peer });
  await page.goto(`http://127.0.0.1:${port}/page.html?${q}`);
  const deadline = Date.now() + timeout;
  let first = null;
  while (Date.now() < deadline) {
    const p = await page.evaluate((pts) => window.probe(pts), points);
    if (p.framesDecoded >= wantFrames && p.width) { first = p; break; }
    await new Promise((r) => setTimeout(r, 200));
  }
  let second = null;
  if (first) {
    // It keeps decoding: read again once at least another 10 frames are in.
    while (Date.now() < deadline) {
      const p = await page.evaluate((pts) => window.probe(pts), points);
      if (p.framesDecoded >= first.framesDecoded + 10) { second = p; break; }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  const last = await page.evaluate((pts) => window.probe(pts), points);
  result = { ok: !!(first && second), first, second, last, logs };
} catch (e) {
  result = { ok: false, error: String(e) };
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(result));

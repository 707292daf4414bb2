// How the UI copes with a big cluster: scripts/ui-test --fake serves the UI over a synthetic
// cluster (webui TestUIFakeCluster: 100 nodes, a π job of 20,000 chunks, 50 more a second) and
// this opens it with the job in view for WATCH seconds. Prints and writes figures.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () { let resolve, reject; const promise = new Promise((a, b) => { resolve = a; reject = b; }); return { promise, resolve, reject }; };
}
const { chromium } = await import('playwright-core');
import { writeFileSync } from 'node:fs';

const url = process.env.FAKE_URL, art = process.env.ARTIFACTS, watch = Number(process.env.WATCH || 15) * 1000;
const browser = await chromium.launchPersistentContext(process.env.PROFILE, {
  executablePath: process.env.CHROMIUM, headless: true, viewport: { width: 1280, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
});
let code = 0;
const figures = {};
try {
  const page = browser.pages()[0] || await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  const cdp = await browser.newCDPSession(page);
  await cdp.send('Network.enable');
  let received = 0;
  cdp.on('Network.dataReceived', (e) => { received += e.encodedDataLength || e.dataLength || 0; });
  const t0 = Date.now();
  await page.goto(url + '/#job=big', { waitUntil: 'load' });
  await page.waitForFunction(() => /chunks committed/.test(document.getElementById('timeline-text').textContent), null, { timeout: 30000 });
  figures.first_view_ms = Date.now() - t0;
  figures.load_bytes = received;
  await page.evaluate(() => {
    window.__long = []; new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push(e.duration); }).observe({ type: 'longtask' });
    window.__gaps = []; let last = performance.now();
    const f = (t) => { window.__gaps.push(t - last); last = t; requestAnimationFrame(f); }; requestAnimationFrame(f);
    window.hydra.stats.renderMs.length = 0;
  });
  const b0 = received, t1 = Date.now();
  await new Promise((r) => setTimeout(r, watch));
  const secs = (Date.now() - t1) / 1000;
  const m = await page.evaluate(() => {
    const q = (a, f) => { const s = [...a].sort((x, y) => x - y); return s.length ? +s[Math.min(s.length - 1, Math.floor(f * s.length))].toFixed(1) : 0; };
    return {
      frames: window.__gaps.length, frame_gap_p50_ms: q(window.__gaps, 0.5), frame_gap_p95_ms: q(window.__gaps, 0.95), frame_gap_max_ms: +Math.max(...window.__gaps).toFixed(1),
      long_tasks: window.__long.length, longest_task_ms: Math.round(Math.max(0, ...window.__long)),
      render_p50_ms: q(window.hydra.stats.renderMs, 0.5), render_p95_ms: q(window.hydra.stats.renderMs, 0.95), renders: window.hydra.stats.renderMs.length,
      dom_elements: document.getElementsByTagName('*').length, cluster_rows: document.querySelectorAll('#nodes tbody tr').length,
      timeline: document.getElementById('timeline-text').textContent,
    };
  });
  Object.assign(figures, m, { seconds: secs, bytes_per_second: Math.round((received - b0) / secs), errors });
  await page.screenshot({ path: art + '/fake-100-nodes.png', fullPage: true });
  if (errors.length) { code = 1; console.error('ui-fake: console errors', errors); }
} catch (e) {
  code = 1; console.error('ui-fake: FAILED:', e.message);
} finally {
  await browser.close().catch(() => {});
}
writeFileSync(art + '/figures-fake.json', JSON.stringify(figures, null, 2));
console.log('ui-fake: figures:', JSON.stringify(figures));
process.exit(code);

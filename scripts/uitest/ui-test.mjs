// Browser test of the Hydra web UI, run by scripts/ui-test against a real 3-node cluster.
// Environment: NODES (JSON [{http, pid, log}]), TOKEN, ARTIFACTS (dir), CHROMIUM, PROFILE.
// Exits non-zero on the first failed check; prints figures and writes ARTIFACTS/figures.json.
// UI_TEST_KEEP_GOING=1: the checks of the page's fixes (checkFix) go on after a failure, so that a
// run against the page before them shows every one they catch (the run still fails).
if (!Promise.withResolvers) { // playwright-core may expect Node 22
  Promise.withResolvers = function () { let resolve, reject; const promise = new Promise((a, b) => { resolve = a; reject = b; }); return { promise, resolve, reject }; };
}
const { chromium } = await import('playwright-core');
import { writeFileSync, appendFileSync, openSync, closeSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { loadavg } from 'node:os';

const nodes = JSON.parse(process.env.NODES);
const token = process.env.TOKEN;
const art = process.env.ARTIFACTS;
const figures = {};
const failures = [];
const log = (...a) => console.log('ui-test:', ...a);
function check(ok, what) { if (!ok) { failures.push(what); throw new Error('check failed: ' + what); } log('ok -', what); }
const keepGoing = process.env.UI_TEST_KEEP_GOING === '1';
function checkFix(ok, what) {
  if (ok || !keepGoing) return check(ok, what);
  failures.push(what); console.error('ui-test: FAILED (going on):', what);
}
// attempt runs a step's action, and says what went wrong instead of throwing (for checkFix).
const attempt = (p) => p.then(() => '', (e) => e.message.split('\n')[0]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function status(http) { const r = await fetch(http + '/api/v1/status'); return r.json(); }

// Pick a follower to open, and know every node's peer ID.
const ids = {};
for (const n of nodes) { n.id = (await status(n.http)).self.id; ids[n.id] = n; }
const st0 = await status(nodes[0].http);
const leader0 = st0.leader;
const follower = nodes.find((n) => n.id !== leader0);
const origin = new URL(follower.http).origin;
log('leader', leader0.slice(-8), '- opening follower', follower.id.slice(-8), follower.http);

const context = await chromium.launchPersistentContext(process.env.PROFILE, {
  executablePath: process.env.CHROMIUM, headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run',
    '--disable-component-update', '--disable-sync'],
  viewport: { width: 1280, height: 900 },
});
const consoleErrors = [], requests = [];
let outage = false; // the page's node is down on purpose: Chromium logs the failed requests
let refusing = false; // the test refuses the page's history pages on purpose (step 4c)
let refusingCancel = false; // the test answers a cancel 404 on purpose (step 4e)
let readAuth = false; // read-auth is on (step 6b): reads without the cookie are refused
function watch(page, label) {
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // The test provokes a 400 (a bad field), a 401 (no token) and a 403 (a viewer's token) on
    // purpose: Chromium logs those.
    const loc = m.location() || {};
    if (/status of 40[013]/.test(m.text()) && /\/api\/v1\/(jobs|modules)$/.test(loc.url || '')) return;
    if (outage && /net::ERR_(CONNECTION_REFUSED|CONNECTION_RESET|EMPTY_RESPONSE|INCOMPLETE_CHUNKED_ENCODING)/.test(m.text())) return;
    if (refusing && /status of 404/.test(m.text()) && /\/chunks\?/.test(loc.url || '')) return;
    if (refusingCancel && /status of 404/.test(m.text()) && /\/cancel$/.test(loc.url || '')) return;
    if (readAuth && /status of 401/.test(m.text())) return;
    consoleErrors.push(label + ': ' + m.text() + ' ' + (loc.url || ''));
  });
  page.on('pageerror', (e) => consoleErrors.push(label + ': ' + e.message));
  page.on('request', (r) => requests.push(r.url()));
}
let exitCode = 0;
const restarted = []; // nodes this script started again: stopped at the end
let frozen = 0; // a node stopped with SIGSTOP, to be continued
try {
  const page = context.pages()[0] || await context.newPage();
  watch(page, 'main');
  // Count every byte the page receives (documents, fetches and the event stream) through CDP.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  let received = 0;
  cdp.on('Network.dataReceived', (e) => { received += e.encodedDataLength || e.dataLength || 0; });
  cdp.on('Network.responseReceived', () => {});

  // 1. Open the follower's UI with the token: it is kept for the session and stripped from the URL.
  await page.goto(follower.http + '/?token=' + token, { waitUntil: 'load' });
  await page.waitForFunction(() => !location.search.includes('token'));
  check(await page.evaluate(() => sessionStorage.getItem('hydra-token')) === token, 'token stored in sessionStorage and stripped from the URL');
  await page.evaluate(() => { window.__noReload = true; });
  await page.waitForSelector('#nodes tbody tr[data-role=leader]');
  await page.waitForFunction(() => document.querySelectorAll('#nodes tbody tr').length === 3);
  const weight = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    let b = nav ? nav.decodedBodySize : 0; const files = [[location.pathname, b]];
    for (const e of performance.getEntriesByType('resource')) if (!e.name.includes('/api/')) { b += e.decodedBodySize; files.push([new URL(e.name).pathname, e.decodedBodySize]); }
    return { bytes: b, files };
  });
  figures.page_weight_bytes = weight.bytes;
  figures.page_files = weight.files;
  log('page weight', weight.bytes, 'bytes uncompressed', JSON.stringify(weight.files));
  check(weight.bytes <= 300 * 1024, 'page weight ≤ 300 KB');

  // 1b. Figures are shown with their units and enough digits: a slow job's rate is not "0 rows/s".
  const shown = await page.evaluate(() => [[0.42, 'rows/s'], [5.34, 'rows/s'], [812, 'B'], [2.5e9, 'samples/s'], [12345, 'px/s'], [NaN, 'rows/s']]
    .map(([v, u]) => window.hydra.fmt.si(v, u)));
  check(JSON.stringify(shown) === JSON.stringify(['0.42 rows/s', '5.3 rows/s', '812 B', '2.5 Gsamples/s', '12.3 kpx/s', '—']), 'numbers are shown with their units and digits: ' + shown.join(', '));

  // 1c. A job whose done units went down (a failed audit requeued chunks) has no negative rate.
  const rateAfterDrop = await page.evaluate(() => {
    const j = { id: 'rate-test', state: 'running', done_units: 1000 };
    window.hydra.sample(j);
    window.hydra.sample({ ...j, done_units: 2000 });
    window.hydra.sample({ ...j, done_units: 500 });
    const r = window.hydra.rateOf({ ...j, done_units: 500 });
    window.hydra.state.rates.delete('rate-test');
    return Number.isNaN(r) ? 'NaN' : r;
  });
  check(rateAfterDrop === 'NaN' || rateAfterDrop >= 0, 'no negative rate after done units went down: ' + rateAfterDrop);

  // 2. The coordinator is marked: the one the page's node names now (an election since the start
  // would have moved it from leader0; the page hears of it a moment after its node).
  let marked, named;
  for (const tEnd = Date.now() + 10000; ;) {
    named = (await status(follower.http)).leader;
    marked = await page.$eval('#nodes tbody tr[data-role=leader]', (tr) => [tr.dataset.nodeId, tr.cells[3].textContent]).catch(() => []);
    if (marked[0] === named || Date.now() > tEnd) break;
    await sleep(100);
  }
  check(marked[0] === named && marked[1] === 'leader (coordinator)', `the coordinator is marked "leader (coordinator)" (${marked.join(' ')}; the node names ${named})`);
  await page.screenshot({ path: art + '/1-cluster.png', fullPage: true });

  // 2b. A fresh cluster's empty job list says what it is for and how to fill it (it was a bare
  // table header).
  await page.waitForSelector('#jobs-empty', { state: 'visible', timeout: 10000 }).catch(() => {});
  const emptyNote = await page.$eval('#jobs-empty', (e) => e.checkVisibility() ? e.textContent : '(hidden)').catch(() => '(none)');
  check(/^No jobs yet\. .*hydra submit/.test(emptyNote), 'a fresh cluster\'s empty job list explains itself: ' + emptyNote);

  // 3. A form error shows the API's 400 message next to the field.
  await page.fill('#f-width', '0');
  await page.click('#submit-btn');
  await page.waitForFunction(() => document.getElementById('e-width').textContent.startsWith('width:'));
  const formErr = await page.textContent('#e-width');
  log('form error:', formErr);
  // The API's own words (webui/jobreq.go), not a message of the page's.
  check(/^width: 0 is outside 1–16384$/.test(formErr.trim()), 'the API\'s 400 message is shown next to its field');

  // 4. Submit a Mandelbrot job through the form and watch it paint.
  const W = 1200, H = 900;
  await page.fill('#f-name', 'ui-test');
  await page.fill('#f-width', String(W));
  await page.fill('#f-height', String(H));
  await page.fill('#f-max_iter', '3000');
  const r0 = received, t0 = Date.now();
  await page.click('#submit-btn');
  await page.waitForFunction(() => /Submitted job/.test(document.getElementById('submit-msg').textContent));
  const jobId = (await page.textContent('#submit-msg')).match(/job (\S+)\./)[1];
  log('submitted', jobId);
  await page.waitForSelector('#jobs-empty', { state: 'hidden', timeout: 10000 }).catch(() => {});
  check(await page.isHidden('#jobs-empty'), 'the empty-list note is gone once there is a job');
  let midShot = false, rateSaid = '', speedsSaid = [];
  for (;;) {
    const p = await page.$eval(`#jobs tr[data-job-id="${jobId}"] .pct`, (e) => e.textContent).catch(() => '');
    // The job's rate and the nodes' Mandelbrot speeds, as the page shows them while it runs.
    if (!rateSaid) {
      const t = await page.$eval(`#jobs tr[data-job-id="${jobId}"]`, (tr) => tr.cells[3].textContent).catch(() => '—');
      if (t !== '—') rateSaid = t;
    }
    for (const t of await page.$$eval('#nodes tbody tr', (trs) => trs.map((tr) => tr.cells[6].textContent))) if (!/samples|items/.test(t) && t !== '—') speedsSaid.push(t);
    if (!midShot && parseFloat(p) >= 30) { midShot = true; await page.screenshot({ path: art + '/2-painting.png', fullPage: true }); }
    if (p === '100.0 %') break;
    // The compute processes run at idle priority: other load on the machine starves them (two
    // busy loops at normal priority leave the job at about 70 % after 2 minutes). Said with the
    // machine's load, so that such a failure reads as what it is.
    if (Date.now() - t0 > 120000) check(false, `job reaches 100 % within 2 minutes (at ${p || '?'}; load average ${loadavg().map((x) => x.toFixed(1)).join(' ')})`);
    await sleep(100);
  }
  const runMs = Date.now() - t0;
  // One unit for Mandelbrot work on the whole page: the API gives a node's speed in pixels a
  // second, and the job's rate (rows a second from its progress) was shown in rows/s beside it.
  log('Mandelbrot job rate', JSON.stringify(rateSaid), 'node speeds', JSON.stringify(speedsSaid.slice(-3)));
  checkFix(/^[\d.]+ [kMGT]?px\/s$/.test(rateSaid) && speedsSaid.length > 0 && speedsSaid.every((t) => /^[\d.]+ [kMGT]?px\/s$/.test(t)),
    `a Mandelbrot job's rate is in px/s like its nodes' speeds: "${rateSaid}" / "${speedsSaid[speedsSaid.length - 1]}"`);
  // All units in; the job is done once their audits cleared them (docs/audits.md): a moment later.
  let stDone;
  for (const tEnd = Date.now() + 60000; ;) {
    stDone = await (await fetch(`${follower.http}/api/v1/jobs/${jobId}`)).json();
    if (stDone.state === 'done' || Date.now() > tEnd) break;
    await sleep(200);
  }
  check(stDone.state === 'done' && stDone.done_units === stDone.total_units,
    `progress reached 100 % (${(runMs / 1000).toFixed(1)} s) and the API says the job is done (${stDone.state}, ${stDone.done_units}/${stDone.total_units})`);
  // Wait until every row is painted, then compare pixels with the node's own result.png.
  await page.waitForFunction(([W, H]) => {
    const c = document.getElementById('mandel'); if (c.width !== W || c.height !== H) return false;
    const d = c.getContext('2d').getImageData(0, 0, W, H).data;
    for (let y = 0; y < H; y += 7) if (d[(y * W + (y % W)) * 4 + 3] === 0) return false;
    return true;
  }, [W, H], { timeout: 30000 });
  const bytesDuring = received - r0;
  figures.bytes_per_second_while_job_runs = Math.round(bytesDuring / (runMs / 1000));
  figures.job_seconds = runMs / 1000;
  // The final palette: the page re-equalises it over every row's counts (as result.png's) and
  // repaints the canvas with it in the same task. Waited for, not slept for: under load the
  // "done" event, the last rows or the repaint may come late.
  await page.waitForFunction(([id, W, H]) => {
    const v = window.hydra.state.view;
    return v && v.id === id && v.job.state === 'done' && v.mandel && v.mandel.lutN === W * H;
  }, [jobId, W, H], { timeout: 30000 });
  const px = await page.evaluate(async ([W, H, id]) => {
    const c = document.getElementById('mandel');
    const a = c.getContext('2d').getImageData(0, 0, W, H).data;
    let opaque = 0; const colours = new Set();
    for (let i = 0; i < a.length; i += 4) { if (a[i + 3] === 255) opaque++; if (i % 397 === 0) colours.add((a[i] << 16) | (a[i + 1] << 8) | a[i + 2]); }
    const img = new Image(); img.src = '/api/v1/jobs/' + id + '/result.png'; await img.decode();
    const o = new OffscreenCanvas(W, H).getContext('2d'); o.drawImage(img, 0, 0);
    const b = o.getImageData(0, 0, W, H).data;
    let diff = 0; for (let i = 0; i < a.length; i++) if (Math.abs(a[i] - b[i]) > 2) { diff++; }
    return { opaque, colours: colours.size, diff };
  }, [W, H, jobId]);
  log('canvas:', JSON.stringify(px));
  check(px.opaque === W * H, `every pixel of the ${W}×${H} canvas is painted`);
  check(px.colours > 20, 'the canvas shows a picture (many colours), not a flat fill');
  check(px.diff < W * H * 4 * 0.001, 'the canvas matches result.png (same palette) to within 0.1 %');
  await page.screenshot({ path: art + '/3-done.png', fullPage: true });
  // Node colouring toggles.
  await page.check('#by-node');
  const byNode = await page.evaluate(([W, H]) => {
    const a = document.getElementById('mandel').getContext('2d').getImageData(0, 0, W, H).data;
    return [a[0], a[1], a[2]];
  }, [W, H]);
  log('node-coloured pixel', byNode);
  await page.screenshot({ path: art + '/4-by-node.png', fullPage: true });
  await page.uncheck('#by-node');
  const paints = await page.evaluate(() => window.hydra.stats.paints);
  const lat = paints.map((p) => p.commitToPaint).sort((a, b) => a - b);
  const q = (f) => lat.length ? lat[Math.min(lat.length - 1, Math.floor(f * lat.length))] : NaN;
  figures.commit_to_paint_ms = { n: lat.length, median: q(0.5), p95: q(0.95), max: lat[lat.length - 1] };
  log('commit → stripe painted (ms):', JSON.stringify(figures.commit_to_paint_ms));
  check(lat.length > 0, 'stripes were painted live as chunks were committed');
  // Browser and cluster share this machine's clock: a stripe is painted after its commit (within
  // the cluster clock's few milliseconds of noise). The page's clock, read from activities, ran
  // behind by the activity's latency (a median of −76 ms), or by the snapshot activity's age (CI
  // saw a stripe painted 7.3 s before its commit); it is read from the node's stamped pings now.
  checkFix(lat[0] > -50, `no stripe painted before its commit (earliest ${lat[0]} ms)`);

  // 4a. A finished Mandelbrot job with more than 4 MiB of counts (1100×1000) opened in the page is
  // painted with row fetches of at most 4 MiB each: a larger fetch takes one of the node's render
  // slots, and is refused 429 while they are busy (docs/api.md, Render slots). The page fetched the
  // job's accepted rows (GET …/result) as one range, however large: from a node without chunk
  // history (X-Hydra-History: none, played here), all 4.4 MB of them in one request.
  const BW = 1100, BH = 1000, maxFetch = 4 << 20;
  const bigRes = await fetch(follower.http + '/api/v1/jobs', { method: 'POST', headers: { Authorization: 'Bearer ' + token },
    body: JSON.stringify({ kind: 'mandelbrot', name: 'over 4 MiB', width: BW, height: BH, center_x: -0.5, center_y: 0, span: 3, max_iter: 50 }) });
  const big = await bigRes.json();
  check(bigRes.status === 201, `a ${BW}×${BH} Mandelbrot job submitted: HTTP ${bigRes.status} ${big.id || JSON.stringify(big)}`);
  for (const tEnd = Date.now() + 60000; ;) {
    const v = await (await fetch(`${follower.http}/api/v1/jobs/${big.id}`)).json();
    if (v.state === 'done') break;
    if (Date.now() > tEnd) check(false, `the ${BW}×${BH} job is done within 60 s (${v.state})`);
    await sleep(200);
  }
  const bigFetches = [];
  const onBig = (r) => { const m = r.url().match(/\/jobs\/([^/]+)\/result\.raw\?rows=(\d+)-(\d+)/); if (m && m[1] === big.id) bigFetches.push([+m[2], +m[3]]); };
  page.on('request', onBig);
  const held = `**/api/v1/jobs/${big.id}/chunks*`;
  await page.route(held, (route) => route.fulfill({ status: 200, contentType: 'application/json', headers: { 'X-Hydra-History': 'none' },
    body: JSON.stringify({ job: big.id, first: 0, next: 0, sent: Date.now(), nodes: [], chunks: [] }) }));
  await page.waitForSelector(`#jobs tr[data-job-id="${big.id}"] button.link`, { timeout: 30000 });
  await page.click(`#jobs tr[data-job-id="${big.id}"] button.link`);
  const bigPainted = await attempt(page.waitForFunction(([W, H]) => {
    const c = document.getElementById('mandel'); if (c.width !== W || c.height !== H) return false;
    const d = c.getContext('2d').getImageData(0, 0, W, H).data;
    for (let y = 0; y < H; y += 7) if (d[(y * W + (y % W)) * 4 + 3] === 0) return false;
    return true;
  }, [BW, BH], { timeout: 60000 }));
  await page.unroute(held);
  page.off('request', onBig);
  const biggest = Math.max(0, ...bigFetches.map(([a, b]) => (b - a) * BW * 4));
  log('rows fetched for the finished job:', JSON.stringify(bigFetches));
  checkFix(bigPainted === '' && bigFetches.length > 0 && biggest <= maxFetch,
    `a finished job of ${BW * BH * 4} bytes of counts is painted with row fetches of at most 4 MiB (largest ${biggest} bytes${bigPainted ? '; ' + bigPainted : ''})`);

  // 4b. A WebAssembly job through the form: a forbidden module is refused next to the file
  // picker; the C example (collatz.wasm, reduce max) uploads, runs, and its page shows the exact
  // result and every node's share.
  await page.check('input[name=kind][value=wasm]');
  // No file chosen: refused before anything is uploaded, and said as such next to the picker (the
  // page said "the module was not accepted").
  await page.setInputFiles('#f-module', []);
  const uploadsBefore = requests.filter((u) => u.endsWith('/api/v1/modules')).length;
  await page.click('#submit-btn');
  await page.waitForFunction(() => document.getElementById('e-module').textContent !== '', null, { timeout: 10000 });
  const noFile = [await page.textContent('#e-module'), await page.textContent('#submit-msg')];
  checkFix(/choose a .*file first/.test(noFile.join(' ')) && !/not accepted/.test(noFile[1]) && requests.filter((u) => u.endsWith('/api/v1/modules')).length === uploadsBefore,
    `with no module chosen the form says to choose one first, uploading nothing: "${noFile[0]}" / "${noFile[1]}"`);
  await page.setInputFiles('#f-module', new URL('../../compute/wasm/testdata/readfile.wasm', import.meta.url).pathname);
  await page.click('#submit-btn');
  await page.waitForFunction(() => document.getElementById('e-module').textContent !== '', null, { timeout: 20000 });
  const refusal = await page.textContent('#e-module');
  check(/path_open/.test(refusal), 'a module that opens files is refused at upload, the reason next to the file picker: ' + refusal.slice(0, 90));
  await page.setInputFiles('#f-module', new URL('../../examples/collatz/collatz.wasm', import.meta.url).pathname);
  await page.fill('#f-name', 'ui-wasm');
  await page.fill('#f-items', '3000000');
  await page.selectOption('#f-reduce', 'max');
  await page.click('#submit-btn');
  await page.waitForFunction(() => /Submitted job/.test(document.getElementById('submit-msg').textContent), null, { timeout: 60000 });
  const wasmId = (await page.textContent('#submit-msg')).match(/job (\S+)\./)[1];
  await page.waitForFunction(() => /over 3,000,000 of 3,000,000 items$/.test(document.getElementById('wasm-result').textContent), null, { timeout: 120000 });
  const wasmRes = await page.textContent('#wasm-result');
  // The longest Collatz trajectory from 1..3,000,000 starts at 2,298,025 (559 steps): max = steps<<40 | n.
  check(wasmRes.startsWith('max = ' + ((559n << 40n) | 2298025n) + ' '), 'the job page shows the exact WebAssembly result: ' + wasmRes);
  const shares = await page.$$eval('#shares tbody tr', (trs) => trs.map((tr) => parseFloat(tr.cells[2].textContent)));
  const total = shares.reduce((a, b) => a + b, 0);
  check(shares.length >= 1 && Math.abs(total - 100) < 0.5, `the job page shows each node's share (${shares.map((s) => s.toFixed(1) + ' %').join(', ')})`);
  await page.screenshot({ path: art + '/4b-wasm.png', fullPage: true });
  // A concat job (compute/wasm/testdata/emit.wasm: item i emits i*i and a newline): once done,
  // its row in the list offers result.bin, as its job view does, and it is the job's output.
  await page.setInputFiles('#f-module', new URL('../../compute/wasm/testdata/emit.wasm', import.meta.url).pathname);
  await page.fill('#f-name', 'ui-concat');
  await page.fill('#f-items', '1000');
  await page.selectOption('#f-reduce', 'concat');
  await page.click('#submit-btn');
  await page.waitForFunction(() => /Submitted job/.test(document.getElementById('submit-msg').textContent), null, { timeout: 60000 });
  const concatId = (await page.textContent('#submit-msg')).match(/job (\S+)\./)[1];
  await page.waitForSelector(`#jobs tr[data-job-id="${concatId}"][data-state=done]`, { timeout: 120000 });
  const binLink = `#jobs tr[data-job-id="${concatId}"] a:text-is("result.bin")`;
  const binErr = await attempt(page.waitForSelector(binLink, { state: 'visible', timeout: 5000 }));
  let binOK = false;
  if (!binErr) {
    const got = await page.$eval(binLink, async (a) => (await fetch(a.href)).text());
    binOK = got === Array.from({ length: 1000 }, (_, i) => i * i + '\n').join('');
  }
  checkFix(!binErr && binOK, 'a finished concat job\'s row in the list offers its result.bin' + (binErr ? ': ' + binErr : binOK ? '' : ': not the job\'s output'));
  await page.selectOption('#f-reduce', 'sum');
  await page.check('input[name=kind][value=mandelbrot]');

  // 4c. Restart the node that serves the page while a π job runs on the other two: the page
  // reconnects by itself, and the job's view ends up with every chunk of the job's history,
  // those accepted while the node was down included (the new stream brings only the present).
  const restartRes = await fetch(follower.http + '/api/v1/jobs', { method: 'POST', headers: { Authorization: 'Bearer ' + token },
    body: JSON.stringify({ kind: 'pi', name: 'ui-restart', samples: 100000000000000, seed: '11' }) });
  const rj = await restartRes.json();
  check(restartRes.status === 201, 'π job submitted for the restart: ' + rj.id);
  await page.click(`#jobs tr[data-job-id="${rj.id}"] button.link`);
  await page.waitForFunction(() => window.hydra.state.view && window.hydra.state.view.log.bySeq.size > 0, null, { timeout: 60000 });
  // The π view states the estimate as a number with its standard error (it was only on the
  // chart, under the cursor), and its x axis counts samples (uPlot labelled them as 1970 dates).
  await page.waitForFunction(() => /^π ≈ 3\.\d+ ± \S+ \(standard error\) from [\d.]+( [kMGT])? samples so far$/.test((document.getElementById('pi-result') || {}).textContent), null, { timeout: 30000 })
    .catch(() => {});
  const piSaid = await page.$eval('#pi-result', (e) => e.textContent).catch(() => '(none)');
  check(/^π ≈ 3\.\d+ ± \S+ \(standard error\) from [\d.]+( [kMGT])? samples so far$/.test(piSaid), 'the π view states the estimate and its standard error: ' + piSaid);
  check(await page.evaluate(() => window.hydra.state.view.plot && window.hydra.state.view.plot.scales.x.time === false), 'the π chart\'s x axis is a sample count, not a time');
  // Away from the chart its legend shows the latest values (it showed "--" until hovered).
  await page.mouse.move(0, 0);
  await page.waitForFunction(() => /^3\.\d+$/.test((document.querySelector('#pi-chart .u-legend .u-series:nth-child(2) .u-value') || {}).textContent), null, { timeout: 5000 }).catch(() => {});
  const legendSaid = await page.$$eval('#pi-chart .u-legend .u-series .u-value', (vs) => vs.map((v) => v.textContent));
  checkFix(legendSaid.length === 5 && legendSaid.every((v) => v !== '--') && /^3\.\d+$/.test(legendSaid[1]), 'the π chart\'s legend shows the latest values when not hovered: ' + legendSaid.join(' | '));
  const other = nodes.find((n) => n !== follower && n.id !== leader0) || nodes.find((n) => n !== follower);
  const seenBefore = await page.evaluate(() => Math.max(...window.hydra.state.view.log.bySeq));
  outage = true;
  process.kill(follower.pid, 'SIGKILL');
  log('killed the page\'s node', follower.id.slice(-8), 'pid', follower.pid);
  await page.waitForFunction(() => /reconnecting/.test(document.getElementById('conn').textContent), null, { timeout: 30000 });
  // Chunks accepted while it is down: the other nodes' history moves past what the page saw.
  for (const tEnd = Date.now() + 60000; ;) {
    const h = await (await fetch(`${other.http}/api/v1/jobs/${rj.id}/chunks?from=${seenBefore + 1}&limit=10`)).json();
    if (h.chunks.length >= 2) break;
    if (Date.now() > tEnd) check(false, 'chunks were accepted while the page\'s node was down');
    await sleep(200);
  }
  // The restarted node may not know the job until a leader has caught it up: the page's first
  // history page after the restart is refused as such a node refuses it (404), and the page must
  // ask again rather than take the history as read.
  let refused = 0;
  refusing = true;
  const chunkPages = /\/api\/v1\/jobs\/[^/]+\/chunks\?/;
  await page.route(chunkPages, (route) => refused++ === 0
    ? route.fulfill({ status: 404, contentType: 'application/json', body: JSON.stringify({ error: 'no such job: ' + JSON.stringify(rj.id) }) })
    : route.continue());
  const logFd = openSync(follower.log, 'a');
  const child = spawn(follower.cmd[0], follower.cmd.slice(1), { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  restarted.push(child);
  appendFileSync(process.env.RESTARTED_PIDS, child.pid + '\n');
  follower.pid = child.pid;
  log('restarted the page\'s node, pid', child.pid);
  await page.waitForFunction(() => /^live$/.test(document.getElementById('conn').textContent), null, { timeout: 60000 });
  outage = false;
  log('the page is live again on its restarted node');
  await fetch(`${follower.http}/api/v1/jobs/${rj.id}/cancel`, { method: 'POST', headers: { Authorization: 'Bearer ' + token }, body: '{}' });
  for (const tEnd = Date.now() + 20000; refused < 2 && Date.now() < tEnd;) await sleep(100);
  check(refused >= 2, `a refused history page is asked for again (${refused} requests)`);
  const history = [];
  for (let from = 0, tEnd = Date.now() + 60000; ;) {
    const r = await fetch(`${follower.http}/api/v1/jobs/${rj.id}/chunks?from=${from}&limit=20000`);
    if (!r.ok) { // not caught up yet
      if (Date.now() > tEnd) { check(false, `the restarted node serves the job's history: HTTP ${r.status} ${await r.text()}`); break; }
      await sleep(200);
      continue;
    }
    const h = await r.json();
    for (const c of h.chunks) history.push(c[0]);
    if (!h.chunks.length || h.chunks[h.chunks.length - 1][0] + 1 >= h.next) break;
    from = h.chunks[h.chunks.length - 1][0] + 1;
  }
  const missing = await page.waitForFunction((seqs) => {
    const have = window.hydra.state.view.log.bySeq;
    const miss = seqs.filter((q) => !have.has(q));
    return miss.length === 0 ? [] : false;
  }, history, { timeout: 20000 }).then(() => [], () => page.evaluate((seqs) => seqs.filter((q) => !window.hydra.state.view.log.bySeq.has(q)), history));
  check(missing.length === 0, `after the restart the job view holds all ${history.length} chunks of the job's history` +
    (missing.length ? `; missing ${missing.length}, e.g. #${missing.slice(0, 5).join(', #')}` : ''));
  check(await page.evaluate(() => window.__noReload === true), 'without a reload');
  // The job was cancelled: its estimate is all it will have, and no longer says "so far".
  const piFinal = /^π ≈ 3\.\d+ ± \S+ \(standard error\) from [\d.]+( [kMGT])? samples$/;
  await page.waitForFunction((re) => new RegExp(re).test(document.getElementById('pi-result').textContent), piFinal.source, { timeout: 30000 }).catch(() => {});
  const piEnd = await page.textContent('#pi-result');
  checkFix(piFinal.test(piEnd), 'the cancelled π job\'s estimate does not say "so far": ' + piEnd);
  await page.unroute(chunkPages);
  refusing = false;
  await page.screenshot({ path: art + '/4c-restarted.png', fullPage: true });

  // 4c'. A π job that ends while none of its chunks runs gets no chart point after it: its
  // estimate stops saying "so far" when the job's state arrives, not at a next point that never
  // comes (it said "so far" for good). The cluster cannot be made to hold its chunks back at a
  // chosen moment, so this page's event stream is answered by the test with the node's status and
  // the job above (its chunk history is the node's, unrouted): first as it was while it ran, then,
  // once the page shows its estimate "so far", cancelled, with no chunk accepted since.
  const pe = await context.newPage();
  watch(pe, 'pi-end');
  let endedJob;
  for (const tEnd = Date.now() + 30000; ;) {
    endedJob = await (await fetch(`${follower.http}/api/v1/jobs/${rj.id}`)).json();
    if (endedJob.state === 'cancelled' || Date.now() > tEnd) break;
    await sleep(200);
  }
  const stEnd = await status(follower.http);
  const frame = (ev, d) => 'event: ' + ev + '\ndata: ' + JSON.stringify(d) + '\n\n';
  const cancelGate = Promise.withResolvers();
  let peStreams = 0;
  await pe.route(/\/api\/v1\/events$/, async (route) => {
    const first = peStreams++ === 0;
    if (!first) await cancelGate.promise;
    const job = first ? { ...endedJob, state: 'running' } : endedJob;
    await route.fulfill({ status: 200, contentType: 'text/event-stream', body: (first ? 'retry: 200\n' : 'retry: 60000\n') + frame('status', stEnd) + frame('jobs', [job]) }).catch(() => {});
  });
  await pe.goto(follower.http + '/#job=' + encodeURIComponent(rj.id), { waitUntil: 'load' });
  // The view has read the job's history (a later read would draw the chart again anyway).
  const soFar = await pe.waitForFunction(() => { const v = window.hydra.state.view; return v && v.historyRead && v.log.bySeq.size > 0 &&
    / so far$/.test(document.getElementById('pi-result').textContent); }, null, { timeout: 30000 }).then(() => true, () => false);
  check(soFar && endedJob.state === 'cancelled', `the running π job's estimate says "so far" (${await pe.textContent('#pi-result')}; the job is ${endedJob.state} now)`);
  cancelGate.resolve();
  await pe.waitForFunction(() => window.hydra.state.jobs.size === 1 && [...window.hydra.state.jobs.values()][0].state === 'cancelled', null, { timeout: 30000 });
  const endSaid = await pe.waitForFunction((re) => new RegExp(re).test(document.getElementById('pi-result').textContent), piFinal.source, { timeout: 5000 }).then(() => '', () => 'still ');
  checkFix(endSaid === '', 'a π job cancelled while none of its chunks runs stops saying "so far" at once: ' + endSaid + await pe.textContent('#pi-result'));
  await pe.screenshot({ path: art + '/4c-pi-ended.png', fullPage: true });
  await pe.close();

  // 4d. Freeze the page's node (SIGSTOP): its stream stalls without closing, which an
  // EventSource does not notice. The page says it is reconnecting once it hears no event for
  // its stall bound (20 s; the node pings every 5 s), and is live again when the node runs.
  const connectsFrozen = await page.evaluate(() => window.hydra.stats.connects);
  process.kill(follower.pid, 'SIGSTOP');
  frozen = follower.pid;
  const tf = Date.now();
  const noticed = await page.waitForFunction(() => /reconnecting/.test(document.getElementById('conn').textContent), null, { timeout: 40000 }).then(() => true, () => false);
  figures.stall_noticed_after_ms = Date.now() - tf;
  process.kill(follower.pid, 'SIGCONT');
  frozen = 0;
  check(noticed, `a stalled stream is noticed: "reconnecting…" ${figures.stall_noticed_after_ms} ms after the node froze`);
  await page.waitForFunction(() => /^live$/.test(document.getElementById('conn').textContent), null, { timeout: 60000 });
  check(await page.evaluate((n) => window.hydra.stats.connects > n, connectsFrozen), 'the page is live again on a new stream once its node runs');

  // 4e. A cancel whose job is deleted at the same moment: the answer is no job ({id, state}, the
  // job gone before the node could read it back) or a 404. The page says so and leaves the row
  // as the list last had it (it showed "undefined" there until the next list update); a real
  // cancel then goes through.
  let cj, cjStatus;
  for (const tEnd = Date.now() + 30000; ;) { // the page's node was frozen just now: it may not hear a leader yet (503)
    const r = await fetch(follower.http + '/api/v1/jobs', { method: 'POST', headers: { Authorization: 'Bearer ' + token },
      body: JSON.stringify({ kind: 'mandelbrot', name: 'ui-stop', width: 4000, height: 4000, center_x: -0.5, center_y: 0, span: 3, max_iter: 100000 }) });
    cj = await r.json(); cjStatus = r.status;
    if (r.status !== 503 || Date.now() > tEnd) break;
    await sleep(200);
  }
  check(cjStatus === 201, `a Mandelbrot job submitted to cancel: HTTP ${cjStatus} ${JSON.stringify(cj).slice(0, 200)}`);
  const cRow = `#jobs tr[data-job-id="${cj.id}"]`;
  await page.waitForSelector(cRow + ' button:text-is("Cancel")', { timeout: 30000 });
  const rowText = () => page.$eval(cRow, (tr) => [tr.dataset.state, tr.cells[0].textContent]);
  const [, subBefore] = await rowText();
  const cancelRoute = /\/api\/v1\/jobs\/[^/]+\/cancel$/;
  // What became of a Cancel is said in its job's row, beside the button pressed (it was said
  // beside the Submit form, far from the row in a long list): cancelSaid is [in the row, by the form].
  const cancelSaid = (p, row) => p.evaluate((sel) => [(document.querySelector(sel) || {}).textContent || '', document.getElementById('submit-msg').textContent], row + ' .row-msg');
  const cancelSaidSomewhere = (p, row) => p.waitForFunction((sel) => !/^(Cancelling…)?$/.test((document.querySelector(sel) || {}).textContent || '') ||
    document.getElementById('submit-msg').textContent !== '', row + ' .row-msg', { timeout: 30000 });
  const clearCancelSaid = (p, row) => p.evaluate((sel) => { for (const e of [document.querySelector(sel), document.getElementById('submit-msg')]) if (e) e.textContent = ''; }, row + ' .row-msg');
  const cancelAnswered = async (status, body) => {
    await page.route(cancelRoute, (route) => route.fulfill({ status, contentType: 'application/json', body: JSON.stringify(body) }));
    await clearCancelSaid(page, cRow);
    await page.click(cRow + ' button:text-is("Cancel")');
    await cancelSaidSomewhere(page, cRow);
    await page.unroute(cancelRoute);
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))); // a render
    const [inRow, byForm] = await cancelSaid(page, cRow);
    return [inRow || byForm, inRow, byForm, ...(await rowText())];
  };
  const [gone, goneRow, goneForm, goneState, goneSub] = await cancelAnswered(200, { id: cj.id, state: 'cancelled' });
  check(/no longer has/.test(gone) && !/undefined/.test(goneSub) && goneSub === subBefore && goneState !== 'cancelled',
    `a cancel answered without the job says so and leaves the row to the next list update: "${gone}" / ${goneState} "${goneSub}"`);
  checkFix(goneRow !== '' && goneForm === '', `a Cancel's answer is said in its job's row, not beside the Submit form: row "${goneRow}", form "${goneForm}"`);
  refusingCancel = true;
  const [no, noRow, noForm, noState, noSub] = await cancelAnswered(404, { error: 'no such job: ' + JSON.stringify(cj.id) });
  refusingCancel = false;
  check(/Not cancelled: this node has no (such )?job/.test(no) && goneSub === noSub && noState !== 'cancelled', `a cancel answered 404 says the job is gone: "${no}"`);
  checkFix(noRow !== '' && noForm === '', `a Cancel's error is said in its job's row, not beside the Submit form: row "${noRow}", form "${noForm}"`);
  await clearCancelSaid(page, cRow);
  await page.click(cRow + ' button:text-is("Cancel")');
  await page.waitForFunction(([sel, id]) => (document.querySelector(sel) || {}).textContent === 'Cancelled.' ||
    document.getElementById('submit-msg').textContent === 'Cancelled ' + id + '.', [cRow + ' .row-msg', cj.id]);
  await page.waitForSelector(cRow + '[data-state=cancelled]', { timeout: 30000 });
  check(!/undefined/.test((await rowText())[1]), 'a real cancel then goes through and the row shows the cancelled job');
  const [doneRow, doneForm] = await cancelSaid(page, cRow);
  checkFix(doneRow === 'Cancelled.' && doneForm === '', `a real cancel is said in its job's row: row "${doneRow}", form "${doneForm}"`);

  // 4f. At 1280×800 the node and job tables fit their box: nothing scrolls out of view and no
  // cell's text is cut off (the Speed column showed "339 M…", the Audits column was scrolled out).
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  const fit = await page.evaluate(() => ['nodes', 'jobs'].map((id) => {
    const t = document.getElementById(id), box = t.parentElement, cut = [];
    for (const c of t.querySelectorAll('th, td, button.link')) {
      if (!c.checkVisibility()) continue;
      const r = c.getBoundingClientRect(), b = box.getBoundingClientRect();
      if (c.scrollWidth > c.clientWidth + 1 || r.right > b.right + 1) cut.push(c.textContent.slice(0, 40) + ' (' + c.scrollWidth + ' > ' + c.clientWidth + ')');
    }
    return { id, over: box.scrollWidth - box.clientWidth, cut, speeds: id === 'nodes' ? [...t.tBodies[0].rows].map((tr) => tr.cells[6].textContent) : [] };
  }));
  log('tables at 1280 px:', JSON.stringify(fit).slice(0, 400));
  await page.screenshot({ path: art + '/4f-1280.png' });
  checkFix(fit.every((f) => f.over <= 0 && f.cut.length === 0),
    'at 1280×800 the node and job tables fit with no cell cut off: ' + fit.map((f) => f.id + ' overflow ' + f.over + ' px, cut: ' + (f.cut.slice(0, 3).join('; ') || 'none')).join(' · '));
  await page.setViewportSize({ width: 1280, height: 900 });

  // 4g. Many jobs: the event stream lists the newest 200 and says how many there are (it sent
  // every job, about 50 MB at 100,000); "Show older jobs" (by keyboard) shows the listed ones not
  // shown, then pages older ones with GET /api/v1/jobs?before=; a link to a job older than the
  // listed ones opens it.
  const LISTED = 200;
  let oldSubmitted = 0;
  for (let i = 0; i < LISTED + 30; i += 10) {
    const batch = await Promise.all(Array.from({ length: 10 }, async (_, k) => {
      for (const tEnd = Date.now() + 30000; ;) {
        const r = await fetch(follower.http + '/api/v1/jobs', { method: 'POST', headers: { Authorization: 'Bearer ' + token },
          body: JSON.stringify({ kind: 'pi', name: 'ui-many-' + (i + k), samples: 1000, seed: String(i + k) }) });
        if (r.status !== 503 || Date.now() > tEnd) return r.status;
        await sleep(200);
      }
    }));
    oldSubmitted += batch.filter((c) => c === 201).length;
  }
  check(oldSubmitted === LISTED + 30, `${LISTED + 30} small π jobs submitted (${oldSubmitted})`);
  const allJobs = await (await fetch(follower.http + '/api/v1/jobs')).json();
  const oldest = allJobs[allJobs.length - 1].id;
  // The page's list and count, as the stream's last frames have them (no other job is submitted meanwhile).
  await page.waitForFunction((n) => window.hydra.state.total === n && window.hydra.state.order.length === 200, allJobs.length, { timeout: 30000 })
    .catch(() => {});
  const listedNow = await page.evaluate(() => [window.hydra.state.total, window.hydra.state.order.length, document.querySelectorAll('#jobs tbody tr').length,
    document.getElementById('jobs-more').textContent]);
  checkFix(listedNow[0] === allJobs.length && listedNow[1] === LISTED && listedNow[2] === 50 && listedNow.at(-1).includes(`the newest 50 of ${allJobs.length} jobs`),
    `with ${allJobs.length} jobs the stream lists the newest ${LISTED} and says how many (total, listed, rows, note: ${JSON.stringify(listedNow)})`);
  await page.focus('#jobs-older').catch(() => {});
  await page.keyboard.press('Enter');
  await page.waitForFunction((n) => document.querySelectorAll('#jobs tbody tr').length === n, LISTED, { timeout: 10000 }).catch(() => {});
  checkFix(await page.$$eval('#jobs tbody tr', (r) => r.length) === LISTED && await page.evaluate(() => document.activeElement.id) === 'jobs-older',
    `"Show older jobs" by keyboard shows the ${LISTED} listed jobs first, and keeps the focus`);
  await page.keyboard.press('Enter');
  await page.waitForSelector(`#jobs tr[data-job-id="${oldest}"]`, { timeout: 10000 }).catch(() => {});
  const olderNow = await page.evaluate(() => [document.querySelectorAll('#jobs tbody tr').length, (document.getElementById('jobs-older') || {}).hidden,
    document.getElementById('jobs-more').textContent]);
  checkFix(olderNow[0] === allJobs.length && olderNow[1] && olderNow[2].includes(`all ${allJobs.length} jobs`) && await page.$(`#jobs tr[data-job-id="${oldest}"]`) !== null,
    `pressed again it fetches the older jobs: the oldest (${oldest}) is shown, all ${allJobs.length}, and no more to show (${JSON.stringify(olderNow)})`);
  const deep = await context.newPage();
  watch(deep, 'deep');
  await deep.goto(follower.http + '/#job=' + oldest, { waitUntil: 'load' });
  await deep.waitForFunction((id) => !document.getElementById('job-sec').hidden && window.hydra.state.selected === id, oldest, { timeout: 10000 }).catch(() => {});
  checkFix(await deep.evaluate((id) => !document.getElementById('job-sec').hidden && window.hydra.state.selected === id, oldest),
    'a link to a job older than the listed ones opens it');
  await deep.close();
  for (const tEnd = Date.now() + 120000; ;) { // the small jobs end before the coordinator is killed
    const left = (await (await fetch(follower.http + '/api/v1/jobs?state=queued,running')).json()).filter((j) => j.name.startsWith('ui-many-')).length;
    if (left === 0) break;
    if (Date.now() > tEnd) check(false, `the ${LISTED + 30} small π jobs end within 120 s (${left} left)`);
    await sleep(500);
  }

  // 5. SIGKILL the coordinator: the new one is marked without a reload. The coordinator as the
  // page's node names it now, not leader0: after an election since the start, killing leader0
  // would kill a follower, and the checks below would pass without a failover.
  // leaderOf(n, not): the leader node n names, once it names one other than `not` (30 s).
  const leaderOf = async (n, not, what) => {
    for (const tEnd = Date.now() + 30000; ;) {
      const l = (await status(n.http)).leader;
      if (l && ids[l] && l !== not) return l;
      if (Date.now() > tEnd) check(false, what + ' within 30 s (' + (l || 'no leader') + ')');
      await sleep(100);
    }
  };
  let coord = await leaderOf(follower, '', 'the page\'s node names a coordinator');
  if (coord === follower.id) {
    // An election since the start made the page's node the coordinator (it wins one after 4c
    // and 4d): freeze it until the other two elect one of them, so that the kill below is a
    // failover the page watches from a node that stays up.
    const bystander = nodes.find((n) => n !== follower);
    process.kill(follower.pid, 'SIGSTOP');
    frozen = follower.pid;
    await leaderOf(bystander, follower.id, 'the other nodes elect a coordinator while the page\'s node is frozen');
    process.kill(follower.pid, 'SIGCONT');
    frozen = 0;
    coord = await leaderOf(follower, follower.id, 'the page\'s node follows the new coordinator');
    log('the page\'s node was the coordinator (leader0', leader0.slice(-8) + ' before): moved to', coord.slice(-8));
  }
  // The page marks it before the kill: the check after the kill is then about the new one.
  await page.waitForFunction((c) => { const tr = document.querySelector('#nodes tbody tr[data-role=leader]'); return tr && tr.dataset.nodeId === c; }, coord, { timeout: 30000 });
  const leaderNode = ids[coord];
  const tk = Date.now();
  process.kill(leaderNode.pid, 'SIGKILL');
  log('killed the coordinator', coord.slice(-8), 'pid', leaderNode.pid);
  await page.waitForFunction((old) => { const tr = document.querySelector('#nodes tbody tr[data-role=leader]'); return tr && tr.dataset.nodeId !== old; }, coord, { timeout: 30000 });
  figures.new_leader_shown_after_ms = Date.now() - tk;
  const newLeader = await page.$eval('#nodes tbody tr[data-role=leader]', (tr) => tr.dataset.nodeId);
  const stNow = await status(follower.http);
  check(newLeader === stNow.leader && newLeader !== coord, `the new coordinator is marked (${figures.new_leader_shown_after_ms} ms after the kill)`);
  check(await page.evaluate(() => window.__noReload === true), 'without a reload');
  const shownOffline = await page.waitForFunction((old) => { const tr = document.querySelector(`#nodes tbody tr[data-node-id="${old}"]`); return tr && /offline/.test(tr.cells[4].textContent); }, coord, { timeout: 30000 }).then(() => true, () => false);
  check(shownOffline, 'the killed coordinator is shown offline within 30 s');
  await page.screenshot({ path: art + '/5-new-leader.png', fullPage: true });

  // 6. Without the token an action is refused, and the page says so.
  const anon = await context.newPage();
  watch(anon, 'anon');
  await anon.goto(follower.http + '/', { waitUntil: 'load' });
  check(/Read-only/.test(await anon.textContent('#access')) && /DATA\/api-token/.test(await anon.textContent('#access')), 'without a token the page says it is read-only and how to get one');
  // Submit and Cancel without a token: the page says, in its own words, that they need an admin
  // token and where to get one, before sending anything (it sent them, and showed the node's 401,
  // which tells a command line which header to send).
  const anonWrites = [];
  anon.on('request', (r) => { if (r.method() !== 'GET') anonWrites.push(r.method() + ' ' + new URL(r.url()).pathname); });
  const before = (await (await fetch(follower.http + '/api/v1/jobs')).json()).length;
  await anon.click('#submit-btn');
  await anon.waitForFunction(() => document.getElementById('submit-msg').textContent !== '');
  const said = await anon.textContent('#submit-msg');
  const after = (await (await fetch(follower.http + '/api/v1/jobs')).json()).length;
  check(after === before, 'an action without the token submits nothing');
  // The page's words: what a person does here, not the header a command line sends.
  const adminWords = (t) => /needs an admin token/.test(t) && /hydra token create --role admin/.test(t) && !/Bearer|Authorization/.test(t);
  const pageWords = (t) => adminWords(t) && /enter one under Token/.test(t);
  checkFix(pageWords(said) && anonWrites.length === 0, 'Submit without a token says, before sending, that it needs an admin token and how to get one: ' + said + (anonWrites.length ? ' (sent ' + anonWrites.join(', ') + ')' : ''));
  // postAdmin: a write with the admin token, again while the node answers 503 (just after the
  // coordinator's kill it may not know the new one yet).
  const postAdmin = async (path, body) => {
    for (const tEnd = Date.now() + 30000; ;) {
      const r = await fetch(follower.http + path, { method: 'POST', headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      if (r.status !== 503 || Date.now() > tEnd) return [r.status, await r.json()];
      await sleep(200);
    }
  };
  const [heldStatus, hj] = await postAdmin('/api/v1/jobs', { kind: 'pi', name: 'ui-anon', samples: 100000000000000, seed: '3' });
  check(heldStatus === 201, 'a π job submitted for the page without a token to cancel: HTTP ' + heldStatus + ' ' + hj.id);
  const anonCancel = `#jobs tr[data-job-id="${hj.id}"] button:text-is("Cancel")`;
  await anon.waitForSelector(anonCancel, { timeout: 30000 });
  const anonRow = `#jobs tr[data-job-id="${hj.id}"]`;
  await clearCancelSaid(anon, anonRow);
  anonWrites.length = 0;
  await anon.click(anonCancel);
  await cancelSaidSomewhere(anon, anonRow);
  const [cancelRow, cancelForm] = await cancelSaid(anon, anonRow);
  const saidCancel = cancelRow || cancelForm;
  await postAdmin(`/api/v1/jobs/${hj.id}/cancel`, {});
  checkFix(pageWords(saidCancel) && /^Cancelling a job/.test(saidCancel) && anonWrites.length === 0, 'Cancel without a token says so before sending: ' + saidCancel + (anonWrites.length ? ' (sent ' + anonWrites.join(', ') + ')' : ''));
  checkFix(cancelRow !== '' && cancelForm === '', `Cancel without a token says so in its job's row, not beside the Submit form: row "${cancelRow}", form "${cancelForm}"`);
  await anon.screenshot({ path: art + '/6-read-only.png', fullPage: true });

  // Approve and Deny without a token, for a node waiting for approval. None waits in this
  // cluster (--admit lan): the page's event stream is answered with the node's status and one.
  const pend = await context.newPage();
  watch(pend, 'pending');
  const stPend = await status(follower.http);
  stPend.pending = [{ id: '12D3KooWFakePendingNode', fingerprint: 'ABCD-EFGH', name: 'ui-waiting', addrs: ['/ip4/127.0.0.1/tcp/9'] }];
  await pend.route(/\/api\/v1\/events$/, (route) => route.fulfill({ status: 200, contentType: 'text/event-stream', body: 'retry: 60000\nevent: status\ndata: ' + JSON.stringify(stPend) + '\n\n' }));
  const pendWrites = [];
  pend.on('request', (r) => { if (r.method() !== 'GET') pendWrites.push(r.method() + ' ' + new URL(r.url()).pathname); });
  pend.on('dialog', (d) => d.dismiss().catch(() => {}));
  await pend.goto(follower.http + '/', { waitUntil: 'load' });
  await pend.waitForSelector('#pending-list button:text-is("Approve")', { timeout: 10000 });
  for (const b of ['Approve', 'Deny']) {
    await pend.evaluate(() => { const m = document.getElementById('pending-msg'); if (m) m.textContent = ''; });
    const err = await attempt(pend.click(`#pending-list button:text-is("${b}")`, { timeout: 5000 }));
    await pend.waitForFunction(() => (document.getElementById('pending-msg') || {}).textContent, null, { timeout: 3000 }).catch(() => {});
    const t = await pend.$eval('#pending-msg', (e) => e.textContent).catch(() => '(no message)');
    checkFix(!err && pageWords(t) && pendWrites.length === 0, `${b} without a token says so before sending: ` + (err || t));
  }
  await pend.screenshot({ path: art + '/6-pending.png', fullPage: true });
  await pend.close();

  // A viewer's token, entered under Token: a write is refused (403), and the page says that it
  // needs an admin token, not the node's words.
  const [vrStatus, viewer] = await postAdmin('/api/v1/tokens', { role: 'viewer' });
  check(vrStatus === 201 && viewer.token, 'a viewer credential created: HTTP ' + vrStatus);
  const vp = await context.newPage();
  watch(vp, 'viewer');
  await vp.goto(follower.http + '/', { waitUntil: 'load' });
  const entered = await attempt(vp.fill('#token-in', viewer.token, { timeout: 5000 })
    .then(() => Promise.all([vp.waitForEvent('framenavigated', { timeout: 10000 }), vp.click('#token-form button')]))
    .then(() => vp.waitForLoadState('load')));
  if (entered) await vp.goto(follower.http + '/?token=' + viewer.token, { waitUntil: 'load' }); // the page before a token could be entered
  await vp.waitForFunction(() => /Actions enabled/.test(document.getElementById('access').textContent), null, { timeout: 10000 });
  checkFix(!entered && await vp.evaluate((t) => sessionStorage.getItem('hydra-token') === t, viewer.token), 'a token entered under Token is kept for the tab' + (entered ? ': ' + entered : ''));
  await vp.click('#submit-btn');
  await vp.waitForFunction(() => !/^(Submitting…)?$/.test(document.getElementById('submit-msg').textContent), null, { timeout: 30000 });
  const saidViewer = await vp.textContent('#submit-msg');
  checkFix(/may only read/.test(saidViewer) && adminWords(saidViewer), 'a viewer\'s Submit refused (403) says it needs an admin token: ' + saidViewer);
  await vp.close();
  await fetch(follower.http + '/api/v1/tokens/' + viewer.id, { method: 'DELETE', headers: { Authorization: 'Bearer ' + token } });
  // A phone-sized screen.
  await anon.setViewportSize({ width: 390, height: 844 });
  await anon.screenshot({ path: art + '/7-phone.png', fullPage: true });
  const overflow = await anon.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, 'no horizontal page overflow on a 390 px wide screen (tables scroll inside their box)');

  // 6a. A page opened on an idle cluster has the cluster's clock at once. The snapshot's activity
  // is whatever the node last heard, up to 10 s old on an idle cluster (the leader republishes an
  // unchanged one that seldom): a page that read the cluster's clock from it ran that far behind
  // until the next one came, and drew in-flight bars and stripes seconds off (a stripe painted 7.3 s
  // before its commit). The stream's first event is a ping stamped as it is sent: browser and
  // cluster share this machine's clock, so the page's cluster clock is the browser's at once.
  let idle = { age: NaN, skew: NaN };
  for (let tries = 0; tries < 3 && !(idle.age >= 2000); tries++) {
    const quiet = await page.waitForFunction(() => { const a = window.hydra.state.activity; return a && Date.now() - Date.parse(a.at) > 2500; },
      null, { timeout: 30000, polling: 50 }).then(() => true, () => false);
    check(quiet, 'the cluster is idle: its last activity is 2.5 s old within 30 s');
    const ip = await context.newPage();
    watch(ip, 'idle');
    await ip.goto(follower.http + '/', { waitUntil: 'load' });
    await ip.evaluate(async () => { window.__clock = (await import('/assets/timeline.js')).clusterClock; });
    const stamped = await ip.waitForFunction(() => window.__clock.base !== undefined && window.hydra.state.activity, null, { timeout: 15000 }).then(() => true, () => false);
    check(stamped, 'a page opened on an idle cluster hears the cluster\'s time from its stream at once');
    // age: how old the activity the page holds is (nothing fresher came: the old page's clock
    // would be at least that far behind); skew: the page's cluster clock minus the browser's.
    idle = await ip.evaluate(() => ({ age: Date.now() - Date.parse(window.hydra.state.activity.at), skew: window.__clock.now() - Date.now(), stamps: window.__clock.lags.length }));
    await ip.close();
    log('page opened on an idle cluster:', JSON.stringify(idle));
  }
  figures.idle_page_clock_ms = idle;
  check(idle.age >= 2000, `a page opened while the cluster's last activity is old (${idle.age} ms; an activity came meanwhile three times)`);
  checkFix(Math.abs(idle.skew) < 500, `a page opened on an idle cluster (its last activity ${(idle.age / 1000).toFixed(1)} s old) has the cluster's clock at once: ${idle.skew.toFixed(0)} ms off the browser's, which shares its machine`);

  // 6b. Under read-auth the ?token= link sets an HttpOnly read cookie, which the page cannot
  // clear: "Forget token" has the node expire it (it lasted until the browser session ended).
  await anon.close();
  const readAuthSet = async (on) => {
    const r = await fetch(follower.http + '/api/v1/config', { method: 'PUT', headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
      body: JSON.stringify({ set: ['read-auth=' + on] }) });
    check(r.ok, `read-auth=${on} set: HTTP ${r.status}`);
    for (const tEnd = Date.now() + 30000; (await fetch(follower.http + '/api/v1/status')).status !== (on ? 401 : 200);) {
      if (Date.now() > tEnd) check(false, `the page's node applies read-auth=${on} within 30 s`);
      await sleep(100);
    }
  };
  readAuth = true;
  const mainConnects = await page.evaluate(() => window.hydra.stats.connects);
  await readAuthSet(true);
  // The main page holds the token: its stream, ended now, takes the read cookie with it and opens
  // again. Waited for, so that it does not set the cookie again just after "Forget token" below.
  await page.waitForFunction((c) => window.hydra.stats.connects > c && /^live$/.test(document.getElementById('conn').textContent),
    mainConnects, { timeout: 15000 }).catch(() => {});
  const ra = await context.newPage();
  watch(ra, 'read-auth');
  // The page's event streams as the network sees them: open (answered 200, not ended yet), and
  // the statuses of those that were answered.
  const raCdp = await context.newCDPSession(ra);
  await raCdp.send('Network.enable');
  const streams = new Set(), live = new Set(), answered = [];
  raCdp.on('Network.requestWillBeSent', (e) => { if (e.type === 'EventSource') streams.add(e.requestId); });
  raCdp.on('Network.responseReceived', (e) => {
    if (!streams.has(e.requestId)) return;
    answered.push(e.response.status);
    if (e.response.status === 200) live.add(e.requestId);
  });
  for (const ev of ['Network.loadingFinished', 'Network.loadingFailed']) raCdp.on(ev, (e) => live.delete(e.requestId));
  await ra.goto(follower.http + '/?token=' + token, { waitUntil: 'load' });
  await ra.waitForFunction(() => /^live$/.test(document.getElementById('conn').textContent), null, { timeout: 30000 });
  for (const tEnd = Date.now() + 10000; live.size !== 1 && Date.now() < tEnd;) await sleep(100);
  check(live.size === 1, `the page has one event stream open (${live.size})`);
  const readCookie = async () => (await context.cookies(origin)).find((c) => c.name === 'hydra_read');
  check((await readCookie() || {}).httpOnly === true, 'under read-auth the ?token= link sets the HttpOnly read cookie');
  const answeredBefore = answered.length;
  await ra.click('#access button:has-text("Forget token")');
  await ra.waitForFunction(() => /Read-only/.test(document.getElementById('access').textContent));
  let cookieLeft = await readCookie();
  for (const tEnd = Date.now() + 10000; cookieLeft && Date.now() < tEnd; cookieLeft = await readCookie()) await sleep(100);
  check(!cookieLeft && /Read-only/.test(await ra.textContent('#access')), 'after "Forget token" the page is read-only and the read cookie is gone');
  check(await ra.evaluate(async () => (await fetch('/api/v1/status')).status) === 401, 'the page\'s reads are refused again');
  // The stream opened with the cookie is closed (the node would go on serving it: it checks the
  // stream's credential, not the browser's cookies), and the one opened again without it is refused.
  for (const tEnd = Date.now() + 10000; live.size > 0 && Date.now() < tEnd;) await sleep(100);
  check(live.size === 0, `after "Forget token" the page has no event stream open (${live.size} still open after 10 s)`);
  for (const tEnd = Date.now() + 10000; !answered.slice(answeredBefore).includes(401) && Date.now() < tEnd;) await sleep(100);
  check(answered.slice(answeredBefore).includes(401), 'the stream opened again without the cookie is refused (401): ' + answered.slice(answeredBefore).join(','));
  const connSaid = await ra.waitForFunction(() => /^needs a token$/.test(document.getElementById('conn').textContent) &&
    /Refused: the node answered 401/.test(document.getElementById('access').textContent), null, { timeout: 10000 }).then(() => true, () => false);
  check(connSaid, 'the page says it needs a token, not "live": ' + await ra.textContent('#conn'));
  // Refused, it stops asking (it opened its stream again every 2 s, into 401s for ever) and says
  // that reading needs a viewer token, with its Token field; no new stream in 7 s (more than three
  // of its old retries).
  const streamsRefused = streams.size;
  for (const tEnd = Date.now() + 7000; streams.size === streamsRefused && Date.now() < tEnd;) await sleep(100);
  const accessSaid = await ra.textContent('#access');
  checkFix(streams.size === streamsRefused && /viewer token/.test(accessSaid) && /hydra token create --role viewer/.test(accessSaid) && await ra.isVisible('#token-in'),
    `refused (401), the page stops opening its event stream and says a viewer token is needed: ${streams.size - streamsRefused} stream(s) opened again in 7 s; "${accessSaid.slice(0, 200)}"`);
  await ra.screenshot({ path: art + '/6b-forgotten.png', fullPage: true });
  // A viewer token entered under Token starts the stream again (the page opens its ?token= link).
  const [rvStatus, rv] = await postAdmin('/api/v1/tokens', { role: 'viewer' });
  check(rvStatus === 201 && rv.token, 'a viewer credential created: HTTP ' + rvStatus);
  await ra.fill('#token-in', rv.token);
  await Promise.all([ra.waitForEvent('framenavigated', { timeout: 10000 }), ra.click('#token-form button')]);
  await ra.waitForLoadState('load');
  const liveAgain = await ra.waitForFunction(() => /^live$/.test(document.getElementById('conn').textContent), null, { timeout: 30000 }).then(() => true, () => false);
  for (const tEnd = Date.now() + 10000; live.size !== 1 && Date.now() < tEnd;) await sleep(100);
  check(liveAgain && live.size === 1, `with a viewer token entered under Token the page is live again (${await ra.textContent('#conn')}, ${live.size} stream(s) open)`);
  await fetch(follower.http + '/api/v1/tokens/' + rv.id, { method: 'DELETE', headers: { Authorization: 'Bearer ' + token } });
  await raCdp.detach();
  await ra.close();
  await readAuthSet(false);
  await page.waitForFunction(() => /^live$/.test(document.getElementById('conn').textContent), null, { timeout: 60000 });
  readAuth = false;

  // 6c. A tab that holds a token but no read cookie (it got its token while read-auth was off, when
  // the link sets none): read-auth turned on ends its stream, and the page asks for the cookie with
  // its token, and backs off while the stream is refused still (it reopened it every 2 s into 401s
  // for ever). A page stopped on a 401 notices read-auth turned off (it did only on a reload): it
  // asks again once a minute (the pages' clocks are fast-forwarded here: Playwright's clock is the
  // context's, installed from here on for every page, and runs with real time until then).
  await context.clearCookies({ name: 'hydra_read' });
  await context.clock.install();
  const stopped = await context.newPage();
  watch(stopped, 'stopped');
  await stopped.goto(follower.http + '/', { waitUntil: 'load' });
  const tc = await context.newPage();
  watch(tc, 'token-no-cookie');
  const tcCdp = await context.newCDPSession(tc);
  await tcCdp.send('Network.enable');
  const tcStreams = new Set(), tcRefused = [];
  tcCdp.on('Network.requestWillBeSent', (e) => { if (e.type === 'EventSource') tcStreams.add(e.requestId); });
  tcCdp.on('Network.responseReceived', (e) => { if (tcStreams.has(e.requestId) && e.response.status === 401) tcRefused.push(Date.now()); });
  await tc.goto(follower.http + '/?token=' + token, { waitUntil: 'load' });
  for (const p of [stopped, tc]) await p.waitForFunction(() => /^live$/.test(document.getElementById('conn').textContent), null, { timeout: 30000 });
  check(!(await readCookie()), 'with read-auth off the ?token= link sets no read cookie');
  // First no page gets the cookie (as when cookies are blocked; the test's main page holds the
  // token too, and its cookie would let the page without a token read): the tab backs off.
  const cookieURL = /\/healthz\?token=/;
  await context.route(cookieURL, (r) => r.fulfill({ status: 200, contentType: 'application/json', body: '{"status":"ok"}' }));
  readAuth = true;
  await readAuthSet(true);
  for (const tEnd = Date.now() + 15000; !tcRefused.length && Date.now() < tEnd;) await sleep(100);
  check(tcRefused.length > 0, 'read-auth on: the token tab\'s stream without the cookie is refused (401)');
  await sleep(Math.max(0, tcRefused[0] + 9000 - Date.now())); // a window to count refusals in, not a synchronisation
  const inWindow = tcRefused.filter((t) => t < tcRefused[0] + 9000).length;
  checkFix(inWindow <= 3, `a token tab whose stream is refused backs off (2, 4, 8 s…): ${inWindow} refused streams in 9 s (every 2 s: 5)`);
  const stoppedSaid = await stopped.waitForFunction(() => /^needs a token$/.test(document.getElementById('conn').textContent), null, { timeout: 15000 }).then(() => true, () => false);
  check(stoppedSaid, 'read-auth on: a page without a token stops and says it needs one: ' + await stopped.textContent('#conn'));
  // Then it can: it takes the cookie with its token and is live again.
  await context.unroute(cookieURL);
  const tcLive = await tc.waitForFunction(() => /^live$/.test(document.getElementById('conn').textContent), null, { timeout: 45000 }).then(() => true, () => false);
  checkFix(tcLive && (await readCookie() || {}).httpOnly === true,
    `a token tab without the read cookie takes it with its token and is live again under read-auth (${await tc.textContent('#conn')}, ${tcRefused.length} refused streams)`);
  await tcCdp.detach();
  await tc.close();
  await context.clearCookies({ name: 'hydra_read' });
  await readAuthSet(false);
  await context.clock.fastForward('01:05');
  const backLive = await stopped.waitForFunction(() => /^live$/.test(document.getElementById('conn').textContent), null, { timeout: 15000 }).then(() => true, () => false);
  checkFix(backLive && !/Refused/.test(await stopped.textContent('#access')),
    `a page stopped on a 401 is live again within a minute of read-auth turned off (${await stopped.textContent('#conn')})`);
  await stopped.close();
  readAuth = false;

  // 6d. A browser whose clock is hours off draws the chunks in flight by the cluster's clock: they
  // were drawn to the browser's, hours long (ahead) or negative (behind).
  const [skStatus, skJob] = await postAdmin('/api/v1/jobs', { kind: 'pi', name: 'ui-skew', samples: 100000000000, seed: '11' });
  check(skStatus === 201, 'a π job submitted to watch in flight: HTTP ' + skStatus + ' ' + skJob.id);
  for (const hours of [3, -3]) {
    await context.clock.setSystemTime(Date.now() + hours * 3600e3); // Date only: timers and performance.now() run on
    const sk = await context.newPage();
    watch(sk, `clock ${hours} h off`);
    await sk.goto(follower.http + '/#job=' + skJob.id, { waitUntil: 'load' });
    const inFlight = await sk.waitForFunction((id) => { const v = window.hydra.state.view; return v && v.id === id && v.timeline.live.size > 0; }, skJob.id, { timeout: 30000 }).then(() => true, () => false);
    check(inFlight, `the job's page (browser clock ${hours} h off) has chunks in flight`);
    const drawn = await sk.evaluate(() => {
      const tl = window.hydra.state.view.timeline, bars = [], hatched = tl.hatched;
      tl.hatched = function (g, x0, x1, ...rest) { bars.push([x0, x1]); return hatched.call(this, g, x0, x1, ...rest); };
      tl.dirty = true; tl.drawn = -1e9; tl.draw(); tl.hatched = hatched;
      const [t0, t1] = tl.span();
      return { bars, spanMs: t1 - t0, sx: tl.geom.sx };
    });
    const secs = drawn.bars.map(([x0, x1]) => (x1 - x0) / drawn.sx / 1000);
    checkFix(secs.length > 0 && drawn.spanMs < 600000 && secs.every((s) => s > -1 && s < 60),
      `with the browser's clock ${hours} h off the timeline spans ${(drawn.spanMs / 1000).toFixed(0)} s and its in-flight bars last ${secs.map((s) => s.toFixed(1)).join(', ')} s`);
    await sk.screenshot({ path: art + `/6d-clock-${hours}h.png`, fullPage: true });
    await sk.close();
  }
  await context.clock.setSystemTime(Date.now());
  await postAdmin('/api/v1/jobs/' + skJob.id + '/cancel', {});

  // 7. Optional figures on a big π job: bytes per second to the open page, chunks per second,
  // main-thread long tasks, and the estimate drawn.
  if (process.env.PI_SAMPLES) {
    await page.evaluate(() => {
      window.__long = []; new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push(e.duration); }).observe({ type: 'longtask', buffered: false });
    });
    const r = await fetch(follower.http + '/api/v1/jobs', { method: 'POST', headers: { Authorization: 'Bearer ' + token }, body: JSON.stringify({ kind: 'pi', name: 'ui-figures', samples: Number(process.env.PI_SAMPLES), seed: '7' }) });
    const pj = await r.json();
    check(r.status === 201, 'π job submitted for figures: ' + pj.id);
    await page.click(`#jobs tr[data-job-id="${pj.id}"] button.link`);
    const watch = Number(process.env.PI_WATCH || 30) * 1000, t1 = Date.now(), b1 = received;
    let v;
    while (Date.now() - t1 < watch) {
      await sleep(1000);
      v = await (await fetch(follower.http + '/api/v1/jobs/' + pj.id)).json();
      if (v.state === 'done') break;
    }
    const secs = (Date.now() - t1) / 1000, chunks = v.nodes.reduce((a, n) => a + n.chunks, 0);
    const long = await page.evaluate(() => window.__long);
    figures.pi_job = { samples: v.total_units, done_units: v.done_units, state: v.state, chunks, seconds: secs,
      chunks_per_second: +(chunks / secs).toFixed(1), bytes_per_second: Math.round((received - b1) / secs),
      long_tasks: long.length, longest_task_ms: Math.round(Math.max(0, ...long)),
      timeline: await page.textContent('#timeline-text') };
    log('π job figures:', JSON.stringify(figures.pi_job));
    await page.screenshot({ path: art + '/8-pi.png', fullPage: true });
    await page.evaluate((id) => fetch('/api/v1/jobs/' + id + '/cancel', { method: 'POST', headers: { Authorization: 'Bearer ' + sessionStorage.getItem('hydra-token') }, body: '{}' }), pj.id);
  }

  // 8. No console errors, and no request left the node.
  const foreign = requests.filter((u) => !u.startsWith(origin + '/') && !u.startsWith('data:'));
  check(foreign.length === 0, `all ${requests.length} requests went to the node (${origin})` + (foreign.length ? ': ' + foreign.slice(0, 5).join(' ') : ''));
  check(consoleErrors.length === 0, 'no console errors' + (consoleErrors.length ? ': ' + consoleErrors.slice(0, 5).join(' | ') : ''));
} catch (e) {
  exitCode = 1;
  console.error('ui-test: FAILED:', e.message);
  for (const p of context.pages()) await p.screenshot({ path: art + '/failure-' + Math.random().toString(36).slice(2, 6) + '.png', fullPage: true }).catch(() => {});
  if (consoleErrors.length) console.error('console errors:', consoleErrors);
} finally {
  await context.close().catch(() => {});
  if (frozen) { try { process.kill(frozen, 'SIGCONT'); } catch {} }
  for (const c of restarted) c.kill('SIGKILL');
}
figures.failures = failures;
if (failures.length) { // UI_TEST_KEEP_GOING=1 went on past them: the run still fails
  exitCode = 1;
  console.error('ui-test: FAILED:', failures.length, 'check(s):\n  ' + failures.join('\n  '));
}
writeFileSync(art + '/figures.json', JSON.stringify(figures, null, 2));
log('figures:', JSON.stringify({ ...figures, page_files: undefined }));
process.exit(exitCode);

// One job's live view: the Mandelbrot image painted stripe by stripe (or the π estimate
// converging), and the timeline of its chunks. Fed by app.js with the job's events.
import { Timeline, clusterClock } from './timeline.js';
import { nodeColour, nodeRGB } from './colours.js';

export { nodeColour, clusterClock };

// FINISHED: the states a job ends in (compute.JobState.Finished; webui TestUIFinishedStates
// holds the two together): the page's one list of them.
export const FINISHED = new Set(['done', 'cancelled', 'failed']);

const $ = (id) => document.getElementById(id);

// The palette of result.png (webui/png.go): clip-limited histogram-equalised counts blended with their log,
// on a continuous gradient; never escaped is black, not computed (0) transparent.
const STOPS = [[0, 0, 7, 100], [0.16, 32, 107, 203], [0.42, 237, 255, 255], [0.6425, 255, 170, 0], [0.8575, 0, 2, 0], [1, 0, 7, 100]];
function gradient(t) {
  t = Math.min(Math.max(t, 0), 1);
  for (let i = 1; i < STOPS.length; i++) {
    const a = STOPS[i - 1], b = STOPS[i];
    if (t > b[0] && i < STOPS.length - 1) continue;
    let u = (t - a[0]) / (b[0] - a[0]); u = u * u * (3 - 2 * u);
    const mix = (x, y) => Math.round(x + (y - x) * u);
    return (255 << 24) | (mix(a[3], b[3]) << 16) | (mix(a[2], b[2]) << 8) | mix(a[1], b[1]); // ABGR for a little-endian Uint32Array
  }
  return 255 << 24;
}
function palette(hist, maxIter) {
  // Keep in step with mandelPalette in webui/png.go (scripts/ui-test compares the two).
  const CLIP = 1 / 48;
  const lut = new Uint32Array(maxIter + 1);
  lut[maxIter] = 255 << 24;
  let escaped = 0; for (let n = 1; n < maxIter; n++) escaped += hist[n];
  const step = new Float64Array(maxIter);
  let total = 0;
  for (let n = 1; n < maxIter && escaped > 0; n++) { step[n] = Math.min(hist[n] / escaped, CLIP); total += step[n]; }
  const logMax = Math.log(Math.max(maxIter, 2));
  let below = 0;
  for (let n = 1; n < maxIter; n++) {
    const eq = total > 0 ? (below + step[n] / 2) / total : 0;
    below += step[n];
    lut[n] = gradient(0.85 * eq + 0.15 * (Math.log(n) / logMax));
  }
  return lut;
}

const MAX_LIVE_PIXELS = 4096 * 4096; // larger images: download the PNG
const MAX_FETCH_ROWS_BYTES = 4 << 20;
const HISTORY_RETRY_MS = 2000; // a history page refused: asked again after this long while the view is open

// siCount is a count with an SI prefix: 2.5 G, 812, 10 M.
function siCount(v) {
  const [d, p] = v >= 1e12 ? [1e12, ' T'] : v >= 1e9 ? [1e9, ' G'] : v >= 1e6 ? [1e6, ' M'] : v >= 1e3 ? [1e3, ' k'] : [1, ''];
  return +(v / d).toPrecision(3) + p;
}

// piDigits is an estimate with the digits its standard error se leaves meaningful (one more
// than the first uncertain one), at least 2 decimals and at most 15.
function piDigits(e, se) {
  const d = se > 0 ? Math.ceil(-Math.log10(se)) + 1 : 15;
  return e.toFixed(Math.min(15, Math.max(2, d)));
}

// Chunk records of a job, by sequence number: [seq, start, end, nodeID, secs, committedMs, hits].
// Records mostly arrive in order (history pages, then events): appending is the common case,
// and the list is re-sorted only after an out-of-order arrival.
class ChunkLog {
  constructor() { this.bySeq = new Set(); this.list = []; this.unsorted = false; this.version = 0; this.maxSeq = -1; }
  add(c) { // c: a chunks event or GET …/chunks answer
    const out = [];
    for (const r of c.chunks) {
      const rec = { seq: r[0], start: r[1], end: r[2], node: r[3] >= 0 ? c.nodes[r[3]] : '', secs: r[4], at: r[5], hits: r[6] || 0 };
      if (rec.seq >= 0) {
        if (this.bySeq.has(rec.seq)) continue;
        this.bySeq.add(rec.seq);
        if (rec.seq > this.maxSeq) this.maxSeq = rec.seq;
        const last = this.list[this.list.length - 1];
        if (last && last.seq > rec.seq) this.unsorted = true;
      }
      this.list.push(rec); out.push(rec);
    }
    if (out.length) this.version++;
    return out;
  }
  sorted() {
    if (this.unsorted) { this.list.sort((a, b) => (a.seq < 0) - (b.seq < 0) || a.seq - b.seq); this.unsorted = false; }
    return this.list;
  }
}

export class JobView {
  constructor(job, ctx) {
    this.job = job; this.ctx = ctx; this.id = job.id; this.log = new ChunkLog(); this.dead = false; this.piPoints = [];
    this.timeline = new Timeline($('timeline'), $('tip'), $('timeline-text'), job);
    $('job-title').textContent = (job.name ? job.name + ' · ' : '') + job.id;
    $('mandel-box').hidden = job.kind !== 'mandelbrot';
    $('pi-box').hidden = job.kind !== 'pi';
    $('wasm-box').hidden = job.kind !== 'wasm';
    $('wasm-result').textContent = '';
    $('pi-result').textContent = '';
    this.sharesKey = '';
    if (job.kind === 'mandelbrot') this.initMandel(job);
    if (job.kind === 'pi') this.initPi();
    this.loadHistory();
  }
  destroy() {
    this.dead = true;
    clearTimeout(this.retry);
    if (this.ro) this.ro.disconnect();
    if (this.plot) { this.plot.destroy(); this.plot = null; }
    this.timeline.destroy();
    this.byNode && (this.byNode.onchange = null);
    $('legend').replaceChildren();
  }

  // resync fetches the chunks accepted after the last one this view holds (all of them if the
  // history was not read to its end): called when the event stream opens again, whose events
  // bring only what is accepted from then on.
  resync() { if (!this.dead) this.loadHistory(this.historyRead ? this.log.maxSeq + 1 : 0); }

  async loadHistory(from = 0) {
    // The past: GET …/chunks, paged; events bring the present (duplicates are dropped by seq).
    this.historyRead = false;
    clearTimeout(this.retry);
    try {
      for (let page = 0; page < 50 && !this.dead; page++) {
        const r = await fetch('/api/v1/jobs/' + encodeURIComponent(this.id) + '/chunks?from=' + from + '&limit=20000');
        if (!r.ok) { // the node does not know the job yet (a leader has not caught it up since it started) or is failing: again soon
          const at = from;
          this.retry = setTimeout(() => { if (!this.dead) this.loadHistory(at); }, HISTORY_RETRY_MS);
          return;
        }
        if (r.headers.get('X-Hydra-History') === 'none') { this.timeline.noHistory = true; this.timeline.dirty = true; break; }
        const text = await r.text(); this.ctx.stats.bytes += text.length;
        const c = JSON.parse(text);
        this.onChunks(c, true);
        if (!c.chunks.length || c.next <= from) break;
        from = c.chunks[c.chunks.length - 1][0] + 1;
        if (from >= c.next) break;
      }
    } catch { return; } // the node went away mid-read: resync() reads it again once the stream is back
    this.historyRead = true;
    if (this.mandel && !this.dead) this.loadAccepted();
  }

  onJob(j) {
    if (!j) return;
    const was = this.job.state; this.job = j; this.timeline.job = j;
    if (j.pi && j.pi.samples) { // progress events carry the estimate: the chart's fallback without history
      const last = this.piPoints[this.piPoints.length - 1];
      if (!last || last.n < j.pi.samples) { this.piPoints.push({ n: j.pi.samples, h: j.pi.hits }); if (this.piPoints.length > 4000) this.piPoints.splice(0, 2); this.piDirty = true; }
    }
    if (this.mandel && j.state === 'done' && was !== 'done') { this.loadAccepted(); requestAnimationFrame(() => this.repaint()); }
  }
  onActivity(a) { this.timeline.onActivity(a, this.id); }
  onChunks(c, history) {
    const recs = this.log.add(c);
    if (!recs.length) return;
    this.timeline.setChunks(this.log.sorted());
    if (this.mandel) for (const r of recs) this.queueRows(r.start, r.end, history ? 0 : r.at, history ? 0 : c.sent);
    if (this.plotData !== undefined) this.piDirty = true;
  }

  render() {
    if (this.dead) return;
    const j = this.job, u = { pi: 'samples', wasm: 'items' }[j.kind] || 'rows';
    $('job-summary').textContent = `${j.state} · ${j.done_units.toLocaleString()} of ${j.total_units.toLocaleString()} ${u} · ` +
      `${(j.compute_seconds || 0).toFixed(1)} s of compute on ${(j.nodes || []).length} node(s) · ` +
      `${(j.audited_units || 0).toLocaleString()} ${u} audited` + (j.redone_units ? ` · ${j.redone_units.toLocaleString()} redone after failed audits` : '') +
      // Done is not counted until checked (docs/audits.md): why a job at 100 % still runs.
      (!FINISHED.has(j.state) && j.done_units > (j.cleared_units || 0) ? ` · ${(j.done_units - (j.cleared_units || 0)).toLocaleString()} ${u} wait for their audit` : '') +
      (j.disputes ? ` · ${j.disputes} chunk(s) in dispute wait for a third node` : '');
    // A job that ended says so at once, not at a next chart point that may never come (cancelled
    // or failed while none of its chunks ran, done once its last audit cleared).
    if (this.piFinal !== undefined && this.piFinal !== FINISHED.has(j.state)) { this.piDirty = true; this.piAt = 0; }
    if (this.piDirty && performance.now() - (this.piAt || 0) > 400) { this.piAt = performance.now(); this.renderPi(); }
    const reason = $('job-reason'); reason.hidden = !j.reason; reason.textContent = j.reason ? 'Failed: ' + j.reason : '';
    this.renderShares();
    if (j.kind === 'wasm') this.renderWasm();
    this.timeline.draw();
  }

  // ---- Mandelbrot ----
  initMandel(j) {
    const W = j.width, H = j.height;
    const cv = $('mandel');
    this.byNode = $('by-node');
    this.byNode.onchange = () => this.repaint();
    if (W * H > MAX_LIVE_PIXELS) {
      cv.width = 1; cv.height = 1; cv.hidden = true;
      $('mandel-note').textContent = `${W}×${H} is too large to paint live here: download the PNG when it is done.`;
      return;
    }
    cv.hidden = false; cv.width = W; cv.height = H; $('mandel-note').textContent = `${W}×${H}, max_iter ${j.max_iter}`;
    const g = cv.getContext('2d');
    g.clearRect(0, 0, W, H);
    this.mandel = {
      W, H, M: j.max_iter, g, img: g.createImageData(W, H),
      counts: new Uint32Array(W * H), have: new Uint8Array(H), rowNode: new Array(H).fill(''), rowSeq: new Int32Array(H).fill(-1),
      hist: new Float64Array(j.max_iter + 1), histN: 0, lutN: -1, lut: null,
      queue: [], inflight: 0, dirtyLo: H, dirtyHi: 0, lutAt: 0, timings: [],
    };
    this.px = new Uint32Array(this.mandel.img.data.buffer);
  }
  async loadAccepted() {
    const r = await fetch('/api/v1/jobs/' + encodeURIComponent(this.id) + '/result');
    if (!r.ok || this.dead || !this.mandel) return;
    const v = await r.json();
    for (const a of v.accepted_rows || []) this.queueRows(a.start, a.end, 0, 0);
  }
  queueRows(a, b, committed, sent) {
    const m = this.mandel; if (!m) return;
    let need = false; for (let y = a; y < b; y++) if (!m.have[y]) { need = true; break; }
    if (!need) return;
    m.queue.push({ a, b, committed, sent });
    this.pump();
  }
  pump() {
    const m = this.mandel;
    // A fetch is at most MAX_FETCH_ROWS_BYTES, so that the node serves it at once: a larger one
    // takes one of its few render slots and is refused 429 while they are busy (webui/render.go).
    const maxRows = Math.max(1, Math.floor(MAX_FETCH_ROWS_BYTES / (m.W * 4)));
    while (m.inflight < 3 && m.queue.length) {
      m.queue.sort((x, y) => x.a - y.a);
      // Merge adjacent ranges into one request (bounded).
      let { a, b } = m.queue[0]; const marks = [m.queue.shift()];
      while (m.queue.length && m.queue[0].a <= b && (m.queue[0].b - a) * m.W * 4 <= MAX_FETCH_ROWS_BYTES) { const q = m.queue.shift(); b = Math.max(b, q.b); marks.push(q); }
      while (a < b && m.have[a]) a++;
      while (b > a && m.have[b - 1]) b--;
      if (a >= b) continue;
      // One chunk (or the accepted rows read after a reconnect) may hold more: the rest waits.
      if (b - a > maxRows) { m.queue.push({ a: a + maxRows, b, committed: 0, sent: 0 }); b = a + maxRows; }
      m.inflight++;
      this.fetchRows(a, b, marks).finally(() => { m.inflight--; if (!this.dead) this.pump(); });
    }
  }
  async fetchRows(a, b, marks) {
    const m = this.mandel;
    const r = await fetch('/api/v1/jobs/' + encodeURIComponent(this.id) + '/result.raw?rows=' + a + '-' + b);
    if (this.dead) return;
    if (!r.ok) { // "try again" (docs/api.md): asked again, not left unpainted until the job is done
      if (r.status === 429 || r.status === 503) setTimeout(() => { if (!this.dead) this.queueRows(a, b, 0, 0); }, HISTORY_RETRY_MS);
      return;
    }
    const buf = await r.arrayBuffer(); this.ctx.stats.bytes += buf.byteLength;
    const rows = new Uint32Array(buf);
    for (let y = a; y < b; y++) {
      const off = (y - a) * m.W;
      if (off + m.W > rows.length || m.have[y]) continue;
      let any = false;
      for (let x = 0; x < m.W; x++) if (rows[off + x]) { any = true; break; }
      if (!any) continue; // not accepted yet on this replica: a later event brings it
      m.counts.set(rows.subarray(off, off + m.W), y * m.W);
      for (let x = 0; x < m.W; x++) m.hist[Math.min(rows[off + x], m.M)]++;
      m.histN += m.W; m.have[y] = 1;
      m.dirtyLo = Math.min(m.dirtyLo, y); m.dirtyHi = Math.max(m.dirtyHi, y + 1);
    }
    const fetched = performance.now();
    requestAnimationFrame(() => this.paint(marks, fetched));
  }
  paint(marks, fetched) {
    const m = this.mandel; if (!m || this.dead) return;
    const now = clusterClock.now(); // a chunk's commit time is the cluster's (timeline.js)
    // Re-equalise the palette when the histogram has grown by a quarter (at most once a second,
    // and always once the job is complete): then every row is repainted.
    if (!m.lut || (m.histN > m.lutN * 1.25 && now - m.lutAt > 1000) || (this.job.state === 'done' && m.histN === m.W * m.H && m.lutN !== m.histN)) {
      m.lut = palette(m.hist, m.M); m.lutN = m.histN; m.lutAt = now; m.dirtyLo = 0; m.dirtyHi = m.H;
    }
    if (m.dirtyHi > m.dirtyLo) { this.paintRows(m.dirtyLo, m.dirtyHi); m.dirtyLo = m.H; m.dirtyHi = 0; }
    for (const q of marks) if (q.committed) {
      this.ctx.stats.paints.push({ job: this.id, rows: q.b - q.a, commitToPaint: now - q.committed, sentToPaint: now - q.sent, fetchToPaint: performance.now() - fetched });
      if (this.ctx.stats.paints.length > 5000) this.ctx.stats.paints.splice(0, 1000);
    }
  }
  rowOwners() {
    const m = this.mandel;
    m.rowNode.fill(''); m.rowSeq.fill(-1);
    let k = 0;
    for (const r of this.log.sorted()) { k++; for (let y = r.start; y < Math.min(r.end, m.H); y++) { m.rowNode[y] = r.node; m.rowSeq[y] = k; } }
  }
  paintRows(lo, hi) {
    const m = this.mandel, px = this.px, W = m.W, lut = m.lut, byNode = this.byNode.checked;
    if (byNode) this.rowOwners();
    for (let y = lo; y < hi; y++) {
      const o = y * W;
      if (!m.have[y]) { px.fill(0, o, o + W); continue; }
      if (!byNode) { for (let x = 0; x < W; x++) px[o + x] = lut[Math.min(m.counts[o + x], m.M)]; continue; }
      const [r0, g0, b0] = m.rowNode[y] ? nodeRGB(m.rowNode[y]) : [128, 128, 128];
      const shade = (m.rowSeq[y] & 1) ? 0.8 : 1; // alternate chunks, so stripe borders show
      for (let x = 0; x < W; x++) {
        const c = lut[Math.min(m.counts[o + x], m.M)];
        const lum = (((c & 255) * 0.3 + ((c >> 8) & 255) * 0.59 + ((c >> 16) & 255) * 0.11) / 255) * 0.6 + 0.4;
        const k = lum * shade;
        px[o + x] = (255 << 24) | (Math.round(b0 * k) << 16) | (Math.round(g0 * k) << 8) | Math.round(r0 * k);
      }
    }
    m.g.putImageData(m.img, 0, 0, 0, lo, W, hi - lo);
    if (byNode) this.legend();
  }
  repaint() { const m = this.mandel; if (!m || !m.lut) return; m.dirtyLo = 0; m.dirtyHi = m.H; this.paint([], performance.now()); }
  legend() {
    const lg = $('legend'); lg.replaceChildren();
    const names = new Map(((this.ctx.status() || {}).nodes || []).map((n) => [n.id, n.name]));
    const seen = new Set(this.log.sorted().map((r) => r.node).filter(Boolean));
    for (const id of seen) {
      const s = document.createElement('span'); const sw = document.createElement('span'); sw.className = 'sw'; sw.style.background = nodeColour(id);
      s.append(sw, names.get(id) || id.slice(-8)); lg.append(s);
    }
  }

  // ---- per-node shares (every kind) ----
  renderShares() {
    const nodes = this.job.nodes || [];
    const names = new Map(((this.ctx.status() || {}).nodes || []).map((n) => [n.id, n.name]));
    const key = JSON.stringify(nodes) + names.size;
    if (key === this.sharesKey) return;
    this.sharesKey = key;
    const rows = nodes.map((n) => {
      const tr = document.createElement('tr'); tr.dataset.node = n.node;
      const cells = [n.name || names.get(n.node) || n.node.slice(-8), n.units.toLocaleString(),
        ((n.share || 0) * 100).toFixed(1) + ' %', (n.chunks || 0).toLocaleString(), (n.compute_seconds || 0).toFixed(1)];
      cells.forEach((c, i) => { const td = document.createElement('td'); if (i) td.className = 'r'; td.textContent = c; tr.append(td); });
      return tr;
    });
    $('shares').tBodies[0].replaceChildren(...rows);
  }

  // ---- WebAssembly: the reduced value, fetched while it changes ----
  async renderWasm() {
    const j = this.job, key = j.state + ':' + j.done_units;
    if (key === this.wasmKey || this.wasmBusy) return;
    this.wasmBusy = true;
    try {
      const h = this.ctx.token && this.ctx.token() ? { Authorization: 'Bearer ' + this.ctx.token() } : {};
      const r = await fetch('/api/v1/jobs/' + encodeURIComponent(this.id) + '/result', { headers: h });
      if (!r.ok || this.dead) return;
      const v = await r.json();
      this.wasmKey = key;
      const out = $('wasm-result'); out.replaceChildren();
      out.append(`${v.reduce} = ${v.value} over ${Number(v.done_items).toLocaleString()} of ${Number(v.items).toLocaleString()} items` + (v.complete ? '' : ' (so far)'));
      if (v.result_bin) {
        const a = document.createElement('a'); a.className = 'btn'; a.href = v.result_bin; a.download = 'hydra-' + this.id + '.bin'; a.textContent = 'result.bin';
        out.append(' ', a);
      }
    } finally { this.wasmBusy = false; }
  }

  // ---- π ----
  initPi() {
    this.plotData = null; this.piDirty = true;
  }
  renderPi() {
    this.piDirty = false;
    if (typeof uPlot === 'undefined') return;
    const xs = [], est = [], lo = [], hi = [], pi = [];
    let n = 0, h = 0;
    const add = (n, h) => {
      const p = h / n, e = 4 * p, s = 4 * Math.sqrt(p * (1 - p) / n);
      xs.push(n); est.push(e); lo.push(e - 2 * s); hi.push(e + 2 * s); pi.push(Math.PI);
    };
    const recs = this.log.sorted();
    if (recs.length && recs[0].node) { // from the chunk history: every chunk's hits, in commit order
      const step = Math.max(1, Math.floor(recs.length / 4000)); // bounded points, whatever the job
      for (let i = 0; i < recs.length; i++) {
        const r = recs[i];
        n += r.end - r.start; h += r.hits;
        if (i % step === 0 || i === recs.length - 1) add(n, h);
      }
    } else for (const q of this.piPoints) add(q.n, q.h); // from progress events since the page opened
    if (!xs.length) return;
    const e = est[est.length - 1], se = (hi[hi.length - 1] - e) / 2, N = xs[xs.length - 1];
    this.piFinal = FINISHED.has(this.job.state); // a cancelled job's accepted samples are all it will have
    $('pi-result').textContent = `π ≈ ${piDigits(e, se)} ± ${se.toPrecision(2)} (standard error) from ${siCount(N)} samples` +
      (this.piFinal ? '' : ' so far');
    const data = [xs, est, lo, hi, pi];
    if (!this.plot) {
      const box = $('pi-chart');
      const css = getComputedStyle(document.documentElement);
      const acc = css.getPropertyValue('--acc').trim() || '#1f5fbf';
      this.plot = new uPlot({
        width: Math.max(280, box.clientWidth), height: 300,
        // time: false: the x values are sample counts, which uPlot would otherwise label as dates.
        scales: { x: { time: false, distr: 3 }, y: { auto: true } },
        axes: [{ label: 'samples (log)', stroke: css.getPropertyValue('--mut'), values: (u, splits) => splits.map((v) => v == null ? '' : siCount(v)) }, { label: 'estimate', stroke: css.getPropertyValue('--mut'), size: 70 }],
        series: [{ label: 'samples' }, { label: 'estimate', stroke: acc, width: 2 },
          { label: '−2σ', stroke: 'transparent' }, { label: '+2σ', stroke: 'transparent' }, { label: 'π', stroke: '#888', dash: [4, 4] }],
        bands: [{ series: [3, 2], fill: acc + '33' }],
        // The legend shows the values under the cursor, and "--" without one: away from the chart
        // it shows the latest point instead (the estimate now, its band and the samples).
        hooks: { setLegend: [(u) => { if (u.legend.idx == null) latestInLegend(u); }] },
      }, data, box);
      latestInLegend(this.plot);
      this.ro = new ResizeObserver(() => this.plot && this.plot.setSize({ width: Math.max(280, box.clientWidth), height: 300 }));
      this.ro.observe(box);
    } else { this.plot.setData(data); if (this.plot.cursor.idx == null) latestInLegend(this.plot); }
  }
}

// latestInLegend shows the last point's values in a chart's legend; false: no setLegend hook
// again (it calls this).
function latestInLegend(u) {
  const n = u.data[0].length;
  if (n) u.setLegend({ idx: n - 1 }, false);
}

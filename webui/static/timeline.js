// A job's timeline on a canvas: one lane per node, one bar per chunk, from its start (commit
// time minus compute seconds) to its commit; bar height grows with the chunk's size. Chunks in
// flight (from the coordinator's activity) are hatched, backup copies outlined in orange, and
// leases that vanished without their node committing them (lost, or reassigned to another
// node) hatched in red. Tens of thousands of bars are fine: one canvas, redrawn when needed.
import { nodeColour } from './colours.js';

const LANE = 18, LABEL = 96, AXIS = 18, MAX_LOST = 2000;

// clusterClock is the cluster's clock as this page can tell it. Lease and commit times (an
// activity's `at` and its leases' `issued`, a chunk's `at`) are stamped by the cluster's clock
// (docs/design.md §2, Time); the browser's own may be minutes or hours off, and in-flight bars
// drawn to Date.now() came out hours long, or negative. The node stamps its "ping" events, the
// first event of every stream among them, with the cluster's time as it knows it when it sends
// them (webui/events.go, Clock); a ping arrives after its stamp, never before, so the smallest
// (arrival − stamp) over the last pings is the nearest to the offset, within the node → page
// latency (milliseconds). An activity's `at` is no such stamp: it is whatever the node last
// heard, seconds or minutes old on an idle cluster, and a page that read it as fresh put the
// cluster's clock that far back (a stripe painted 7 s before its commit). Arrivals are read on the
// page's monotonic clock, so a browser clock set or stepped meanwhile does not matter either.
// Before any stamp the browser's clock stands in.
const STAMPS = 12; // a minute of pings: a node's estimate that moves back is followed within it
export const clusterClock = {
  lags: [], base: undefined,
  // observe takes a ping's stamp (its `now`) on its arrival (app.js, as each one comes in).
  observe(stamp) {
    const t = typeof stamp === 'string' ? Date.parse(stamp) : NaN;
    if (!(t > 0)) return; // none: a ping without a stamp
    this.lags.push(performance.now() - t); if (this.lags.length > STAMPS) this.lags.shift();
    this.base = Math.min(...this.lags);
  },
  // now is the cluster's time in milliseconds since the epoch.
  now() { return this.base === undefined ? Date.now() : performance.now() - this.base; },
};

export class Timeline {
  constructor(canvas, tip, text, job) {
    this.cv = canvas; this.tip = tip; this.text = text; this.job = job;
    this.recs = []; this.live = new Map(); this.lost = []; this.backups = new Set();
    this.lanes = new Map(); this.dirty = true; this.cursor = -1; this.names = new Map();
    this.onMove = (e) => this.hover(e.offsetX, e.offsetY);
    this.onLeave = () => { this.tip.hidden = true; };
    this.onKey = (e) => this.key(e);
    canvas.addEventListener('mousemove', this.onMove);
    canvas.addEventListener('mouseleave', this.onLeave);
    canvas.addEventListener('keydown', this.onKey);
    canvas.setAttribute('aria-label', 'Timeline of the job\'s chunks; arrow keys step through them');
    this.ro = new ResizeObserver(() => { this.dirty = true; this.draw(); });
    this.ro.observe(canvas.parentElement);
  }
  destroy() {
    this.cv.removeEventListener('mousemove', this.onMove);
    this.cv.removeEventListener('mouseleave', this.onLeave);
    this.cv.removeEventListener('keydown', this.onKey);
    this.ro.disconnect(); this.tip.hidden = true; clearTimeout(this.later); this.recs = []; this.live.clear();
  }
  lane(node) { if (!this.lanes.has(node)) { this.lanes.set(node, this.lanes.size); this.dirty = true; } return this.lanes.get(node); }
  setChunks(recs) {
    // Without the node's chunk history records carry no node: only in-flight leases are drawn.
    this.noHistory = recs.some((r) => !r.node);
    this.recs = this.noHistory ? recs.filter((r) => r.node) : recs;
    for (const r of this.recs) this.lane(r.node);
    this.dirty = true;
  }
  onActivity(a, job) {
    const now = clusterClock.now(), seen = new Set();
    for (const l of a.leases || []) {
      if (l.job !== job) continue;
      seen.add(l.id);
      if (!this.live.has(l.id)) this.live.set(l.id, { id: l.id, node: l.node, start: l.start, end: l.end, issued: Date.parse(l.issued), backup: !!l.backup, probe: !!l.probe });
      if (l.backup) this.backups.add(l.id);
      this.lane(l.node);
    }
    for (const [id, l] of this.live) if (!seen.has(id)) { this.live.delete(id); l.gone = now; this.lost.push(l); if (this.lost.length > MAX_LOST) this.lost.shift(); }
    this.dirty = true;
  }
  // lostLeases: leases gone for over 3 s that their node did not commit (any overlap counts).
  lostLeases() {
    const now = clusterClock.now(), out = [];
    if (this.noHistory) return out;
    for (const l of this.lost) {
      if (now - l.gone < 3000) continue;
      if (l.done === undefined) l.done = this.recs.some((r) => r.node === l.node && r.start < l.end && l.start < r.end);
      if (!l.done) out.push(l);
    }
    return out;
  }
  span() {
    let t0 = Infinity, t1 = -Infinity;
    for (const r of this.recs) { t0 = Math.min(t0, r.at - r.secs * 1000); t1 = Math.max(t1, r.at); }
    for (const l of this.live.values()) { t0 = Math.min(t0, l.issued); t1 = Math.max(t1, clusterClock.now()); }
    if (this.job && this.job.state === 'running') t1 = Math.max(t1, clusterClock.now());
    if (!isFinite(t0)) { t0 = clusterClock.now() - 1000; t1 = clusterClock.now(); }
    return [t0, Math.max(t1, t0 + 1000)];
  }
  draw() {
    // Redraw when something changed, and while chunks are in flight (time moves) at most 4 times a
    // second: 20,000 bars cost a few milliseconds.
    const t = performance.now();
    if (!this.dirty && !this.live.size) return;
    if (t - (this.drawn || 0) < 250) { if (!this.later) this.later = setTimeout(() => { this.later = null; this.draw(); }, 260); return; }
    this.drawn = t;
    this.dirty = false;
    const st = window.hydra && window.hydra.state.status;
    if (st) for (const n of st.nodes) this.names.set(n.id, n.name);
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(300, this.cv.parentElement.clientWidth - 2), h = AXIS + Math.max(1, this.lanes.size) * LANE + 4;
    if (this.cv.width !== Math.round(w * dpr) || this.cv.height !== Math.round(h * dpr)) {
      this.cv.width = Math.round(w * dpr); this.cv.height = Math.round(h * dpr); this.cv.style.height = h + 'px';
    }
    const g = this.cv.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const css = getComputedStyle(document.documentElement);
    const fg = css.getPropertyValue('--mut').trim() || '#666', line = css.getPropertyValue('--line').trim() || '#ddd';
    const [t0, t1] = this.span(), sx = (w - LABEL - 8) / (t1 - t0);
    const X = (t) => LABEL + (t - t0) * sx;
    this.geom = { t0, sx, X };
    // axis: seconds since the first chunk started
    g.font = '11px system-ui, sans-serif'; g.fillStyle = fg; g.strokeStyle = line; g.lineWidth = 1;
    const secs = (t1 - t0) / 1000, step = niceStep(secs / Math.max(2, (w - LABEL) / 90));
    for (let s = 0; s <= secs + 1e-9; s += step) { const x = X(t0 + s * 1000); g.fillText(fmtS(s), x + 2, 12); g.beginPath(); g.moveTo(x + 0.5, AXIS - 4); g.lineTo(x + 0.5, h); g.stroke(); }
    for (const [node, i] of this.lanes) {
      const y = AXIS + i * LANE;
      g.fillStyle = fg; g.fillText(trim(this.names.get(node) || (node ? node.slice(-8) : '?'), 14), 4, y + 13);
      g.strokeStyle = line; g.beginPath(); g.moveTo(LABEL, y + LANE - 0.5); g.lineTo(w, y + LANE - 0.5); g.stroke();
    }
    let maxSize = 1; for (const r of this.recs) maxSize = Math.max(maxSize, r.end - r.start);
    const lost = this.lostLeases();
    const reassigned = (r) => lost.some((l) => l.node !== r.node && r.start < l.end && l.start < r.end);
    const barH = (size) => 3 + (LANE - 6) * Math.sqrt(size / maxSize);
    let colour = '', k = 0;
    const mark = lost.length > 0 && lost.length <= 200; // outline chunks that took over a lost lease
    const cols = new Map(), laneOf = this.lanes;
    for (const r of this.recs) {
      const y = AXIS + laneOf.get(r.node) * LANE, bh = barH(r.end - r.start);
      const x0 = X(r.at - r.secs * 1000), x1 = Math.max(X(r.at), x0 + 1);
      let c = cols.get(r.node); if (!c) { c = nodeColour(r.node); cols.set(r.node, c); }
      if (c !== colour) { g.fillStyle = colour = c; }
      g.globalAlpha = (k++ & 1) ? 0.75 : 1; // alternate, so neighbours stay apart
      g.fillRect(x0, y + LANE - 2 - bh, Math.max(1, x1 - x0 - 0.5), bh);
      if (mark && reassigned(r)) { g.globalAlpha = 1; g.strokeStyle = '#c62828'; g.strokeRect(x0, y + LANE - 2 - bh, Math.max(1, x1 - x0), bh); g.fillStyle = colour; }
    }
    g.globalAlpha = 1;
    this.barH = barH;
    const now = clusterClock.now();
    for (const l of this.live.values()) this.hatched(g, X(l.issued), X(now), AXIS + this.lanes.get(l.node) * LANE, nodeColour(l.node), l.backup ? '#e07b00' : null);
    for (const l of lost) this.hatched(g, X(l.issued), X(l.gone), AXIS + this.lanes.get(l.node) * LANE, '#c62828', '#c62828');
    const nodes = new Set(this.recs.map((r) => r.node)).size;
    let lo = Infinity, hi = 0, dlo = Infinity, dhi = 0;
    for (const r of this.recs) { const s = r.end - r.start; lo = Math.min(lo, s); hi = Math.max(hi, s); dlo = Math.min(dlo, r.secs); dhi = Math.max(dhi, r.secs); }
    this.text.textContent = this.recs.length
      ? `${this.recs.length.toLocaleString()} chunks committed by ${nodes} node(s); sizes ${lo.toLocaleString()}–${hi.toLocaleString()} units, ` +
        `${dlo.toFixed(2)}–${dhi.toFixed(2)} s each; ${this.live.size} in flight, ${this.backups.size} backup copies seen, ${lost.length} lost or reassigned.`
      : this.noHistory ? 'This node keeps no chunk history: only chunks in flight are shown.' : 'No chunk committed yet.';
  }
  hatched(g, x0, x1, y, colour, outline) {
    const w = Math.max(2, x1 - x0);
    g.save(); g.beginPath(); g.rect(x0, y + 3, w, LANE - 6); g.clip();
    g.strokeStyle = colour; g.lineWidth = 1.5;
    for (let x = x0 - LANE; x < x0 + w; x += 5) { g.beginPath(); g.moveTo(x, y + LANE); g.lineTo(x + LANE, y); g.stroke(); }
    g.restore();
    g.strokeStyle = outline || colour; g.lineWidth = outline ? 2 : 1; g.strokeRect(x0, y + 3, w, LANE - 6); g.lineWidth = 1;
  }
  bar(r) { // a chunk's box on the canvas as last drawn
    const { X } = this.geom, bh = this.barH(r.end - r.start), y = AXIS + this.lanes.get(r.node) * LANE + LANE - 2 - bh;
    const x0 = X(r.at - r.secs * 1000);
    return { r, x0, x1: Math.max(X(r.at), x0 + 1), y, h: bh };
  }
  hover(x, y) {
    if (!this.geom || !this.barH) return;
    const lane = Math.floor((y - AXIS) / LANE);
    let hit = null;
    for (let i = this.recs.length - 1; i >= 0 && !hit; i--) {
      const r = this.recs[i];
      if (this.lanes.get(r.node) !== lane) continue;
      const b = this.bar(r);
      if (x >= b.x0 - 1 && x <= b.x1 + 1) hit = b;
    }
    if (!hit) { this.tip.hidden = true; return; }
    this.show(hit);
  }
  show(b) {
    const r = b.r;
    this.tip.textContent = `${this.names.get(r.node) || r.node.slice(-8)}\nchunk #${r.seq}: units [${r.start.toLocaleString()}, ${r.end.toLocaleString()})\n` +
      `${(r.end - r.start).toLocaleString()} units in ${r.secs.toFixed(2)} s\ncommitted ${new Date(r.at).toLocaleTimeString()}`;
    this.tip.hidden = false;
    this.tip.style.left = Math.min(b.x1 + 8, this.cv.clientWidth - 220) + 'px';
    this.tip.style.top = b.y + 'px';
  }
  key(e) {
    const n = this.recs.length; if (!n || !this.geom) return;
    const map = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1, PageDown: 50, PageUp: -50 };
    if (e.key === 'Home') this.cursor = 0; else if (e.key === 'End') this.cursor = n - 1;
    else if (map[e.key]) this.cursor = Math.min(n - 1, Math.max(0, (this.cursor < 0 ? 0 : this.cursor + map[e.key])));
    else if (e.key === 'Escape') { this.tip.hidden = true; return; } else return;
    e.preventDefault();
    this.show(this.bar(this.recs[this.cursor]));
  }
}

function niceStep(x) { const p = Math.pow(10, Math.floor(Math.log10(Math.max(x, 1e-3)))); for (const m of [1, 2, 5, 10]) if (m * p >= x) return m * p; return 10 * p; }
function fmtS(s) { return s >= 60 ? Math.floor(s / 60) + 'm' + String(Math.round(s % 60)).padStart(2, '0') : (Math.round(s * 100) / 100) + 's'; }
function trim(s, n) { return s.length > n ? s.slice(0, n - 1) + '…' : s; }

// Hydra web UI: cluster, jobs, live job views. Everything comes from the node that served
// this page: GET /api/v1/events (server-sent events, at most ~10 frames a second) keeps the
// state; job details and images are fetched from the same origin.
import { JobView, nodeColour, FINISHED, clusterClock } from './job.js';

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text != null) e.textContent = text; return e; };
const setText = (e, t) => { t = String(t); if (e.textContent !== t) e.textContent = t; };

// Stats for tests and curious people: window.hydra.
const stats = { events: 0, frames: 0, bytes: 0, connects: 0, paints: [], renderMs: [] };

const S = {
  status: null, activity: null,
  jobs: new Map(),          // id → job view: the listed jobs, the older ones shown, the one in view
  order: [],                // ids of the jobs the event stream lists (the newest 200), newest first
  older: [],                // ids of older jobs fetched with "Show older", newest first, after order
  total: null,              // how many jobs the cluster holds (the jobcount event; null: unsaid)
  work: null,               // node id → its work summed over every job (the work event; null: unsaid)
  listed: false,            // a jobs event came
  olderEnd: false,          // the last page of older jobs came back short: there are no more
  rates: new Map(),         // id → [{t, done}] recent progress samples
  selected: null, view: null,
  token: null,
  showAll: false,
};

// ---- access token ----------------------------------------------------------------------
function initToken() {
  const u = new URL(location.href);
  const t = u.searchParams.get('token');
  if (t) {
    sessionStorage.setItem('hydra-token', t.trim());
    u.searchParams.delete('token');
    history.replaceState(null, '', u.pathname + (u.search ? u.search : '') + u.hash);
  }
  S.token = sessionStorage.getItem('hydra-token') || null;
  renderAccess();
}

function renderAccess(refused) {
  const a = $('access');
  a.replaceChildren();
  if (S.token && !refused) {
    a.className = 'access ok';
    a.append('Actions enabled: this tab holds the cluster\'s API token. ');
    const b = el('button', null, 'Forget token');
    b.onclick = forgetToken;
    a.append(b);
    return;
  }
  a.className = 'access';
  if (refused) a.append(el('strong', null, refused + ' '));
  a.append('Read-only: submitting and cancelling jobs need the cluster\'s API token. Open the URL that ');
  a.append(el('code', null, 'hydra node'));
  a.append(' printed at start (it ends in ');
  a.append(el('code', null, '/?token=…'));
  a.append('), or read ');
  a.append(el('code', null, 'DATA/api-token'));
  a.append(' on any node and open ');
  a.append(el('code', null, location.origin + '/?token=<token>'));
  a.append(', or paste it here: ');
  // The token goes through the ?token= link, as the printed URL does: kept for the tab, and under
  // read-auth the node sets its read cookie.
  const f = el('form', 'token-form'); f.id = 'token-form';
  const lab = el('label', null, 'Token '); lab.htmlFor = 'token-in';
  const inp = el('input'); inp.id = 'token-in'; inp.type = 'password'; inp.autocomplete = 'off'; inp.spellcheck = false;
  f.append(lab, inp, ' ', el('button', null, 'Use token'));
  f.onsubmit = (ev) => {
    ev.preventDefault();
    const t = inp.value.trim(); if (!t) return;
    location.assign(location.pathname + '?token=' + encodeURIComponent(t) + location.hash);
  };
  a.append(f);
}

// needToken says, in the page's words, that an action needs an admin token and how to get one:
// before sending it when the tab holds none, and when the node refused it (401, 403). The API's
// own message is for the command line (it says which header to send).
const HOW_ADMIN = 'hydra token create --role admin prints one; every member keeps one in DATA/api-token';
function needToken(action) {
  return action + ' needs an admin token: enter one under Token at the top of the page (' + HOW_ADMIN + ').';
}
// refusal is the page's words for a 401 or 403 answer to action, or null for another answer.
function refusal(r, action) {
  if (r.status === 403) return 'Refused: this tab\'s token may only read. ' + action + ' needs an admin token: choose Forget token, then enter an admin one (' + HOW_ADMIN + ').';
  if (r.status === 401) return S.token ? 'Refused: the node does not accept this tab\'s token (revoked, expired or mistyped?). ' + needToken(action) : 'Refused. ' + needToken(action);
  return null;
}

// needReadToken is the page's words for an event stream refused 401: even reading needs a token.
function needReadToken() {
  return 'Refused: the node answered 401: ' + (S.token ? 'it does not accept this tab\'s token (revoked, expired or mistyped?), and ' : '') +
    'this cluster needs a token even to read (read-auth). Live updates are stopped: enter a viewer token under Token to see the cluster ' +
    '(hydra token create --role viewer prints one; an admin token acts too).';
}

// forgetToken drops the tab's token, and has the node expire the read cookie that a ?token=
// link sets under read-auth (HttpOnly: the page cannot clear it, and it would last until the
// browser session ends).
// The event stream open now was opened with the cookie, and the node checks a stream's credential,
// not the browser's cookie jar: it is closed and opened again without it, which under read-auth
// the node refuses (the page then says it needs a token instead of going on with live data).
async function forgetToken() {
  sessionStorage.removeItem('hydra-token'); S.token = null; renderAccess();
  const r = await api('DELETE', '/api/v1/read-cookie');
  if (!r.ok) renderAccess('Token forgotten, but the node did not clear its read cookie (' + ((r.body && r.body.error) || r.status) + '): it lasts until the browser closes.');
  es.close(); connect();
}

// api calls the node's API; every call carries the token (reads need it when the cluster's
// read-auth setting is on). It resolves to {ok, status, body}.
async function api(method, path, body, type = 'application/json') {
  const h = {};
  if (body !== undefined) h['Content-Type'] = type;
  if (S.token) h['Authorization'] = 'Bearer ' + S.token;
  let r;
  try {
    r = await fetch(path, { method, headers: h, body });
  } catch (e) {
    return { ok: false, status: 0, body: { error: 'cannot reach this node: ' + e.message } };
  }
  const text = await r.text();
  stats.bytes += text.length;
  let j = null;
  try { j = text ? JSON.parse(text) : null; } catch { j = { error: text.slice(0, 300) }; }
  if (r.status === 401) renderAccess('Refused: the node answered 401: ' + (S.token ? 'it does not accept this tab\'s token.' : method === 'GET' ? 'this cluster needs a token even to read (read-auth).' : 'this needs a token.'));
  return { ok: r.ok, status: r.status, body: j };
}

// ---- event stream ------------------------------------------------------------------------
let es = null, opens = 0, heard = 0;
// streamRefused: the node answered the stream 401, and the page waits for a token (no retries,
// no stall watchdog), asking again every RECHECK_MS whether it may read (read-auth turned off).
let streamRefused = false, recheck = null;
// retryMs: the wait before reopening a stream the browser gave up on (an HTTP error), doubled
// after each one that did not open, up to RECHECK_MS, and back to RETRY_MS once one opens.
const RETRY_MS = 2000, RECHECK_MS = 60000;
let retryMs = RETRY_MS, retryAt = 0;
// STALL_MS without a word (the node sends a "ping" event every 5 s, webui/events.go) means the
// stream is dead though not closed — the node hung or was suspended, a connection dropped
// silently: the page says so and opens a new one. EventSource itself would wait forever.
const STALL_MS = 20000;
function connect() {
  streamRefused = false; clearTimeout(recheck);
  const me = es = new EventSource('/api/v1/events');
  stats.connects++;
  heard = performance.now();
  // Pings carry the cluster's time as the node sends them (the first event of the stream is
  // one): the page's cluster clock is read from these only (timeline.js).
  es.addEventListener('ping', (ev) => {
    heard = performance.now();
    let d; try { d = JSON.parse(ev.data); } catch { return; }
    if (d && typeof d === 'object') clusterClock.observe(d.now);
  });
  const on = (name, fn) => es.addEventListener(name, (ev) => {
    heard = performance.now();
    stats.events++; stats.bytes += ev.data.length + name.length + 16;
    let d; try { d = JSON.parse(ev.data); } catch { return; }
    fn(d);
    schedule();
  });
  es.onopen = () => {
    heard = performance.now(); retryMs = RETRY_MS;
    setConn(true);
    // A stream opened again (the node restarted, or dropped this page for falling behind)
    // brings the present only: the open job view fetches the chunks it missed meanwhile.
    if (opens++ && S.view) S.view.resync();
  };
  es.onerror = async () => {
    if (me !== es) return; // a stream closed since (forgetToken, the stall watchdog)
    setConn(false);
    if (me.readyState !== EventSource.CLOSED) return; // EventSource retries by itself
    // An HTTP error: EventSource gives up, and we try again later, but not after a 401: under
    // read-auth this page has no credential the node accepts, and asking again would only be
    // refused again, for ever. The page says a viewer token is needed, under the Token field,
    // which opens the page again with it (and so a new stream), and asks again once a minute
    // whether it may read (read-auth turned off).
    const r = await api('GET', '/api/v1/status');
    if (me !== es) return;
    if (r.status === 401) {
      streamRefused = true;
      setConn(false, 'needs a token');
      renderAccess(needReadToken());
      recheck = setTimeout(recheckReads, RECHECK_MS);
      return;
    }
    // The tab's token reads, but an EventSource cannot send it: under read-auth its stream needs the
    // read cookie, which a ?token= request sets (the tab may have got its token while read-auth was
    // off, when no cookie is set). Ask for it; if the stream is refused still (cookies blocked, say,
    // or another error), wait twice as long each time, up to a minute.
    if (S.token && r.ok) await fetch('/healthz?token=' + encodeURIComponent(S.token), { cache: 'no-store' }).catch(() => {});
    const wait = retryMs; retryMs = Math.min(2 * retryMs, RECHECK_MS);
    retryAt = performance.now() + wait; // the stall watchdog leaves the stream be until then
    setTimeout(() => { if (me === es && me.readyState === EventSource.CLOSED) connect(); }, wait);
  };
  on('status', (d) => { S.status = d; });
  on('activity', (d) => { S.activity = d; if (S.view) S.view.onActivity(d); });
  on('jobcount', (d) => { if (Number.isFinite(d.total)) S.total = d.total; });
  on('work', (d) => { if (Array.isArray(d)) S.work = new Map(d.map((w) => [w.node, { chunks: w.chunks, secs: w.compute_seconds }])); });
  on('jobs', (list) => {
    // The list is the newest jobs only (docs/api.md, Events). A job that left it was deleted, or,
    // while there are more jobs than it lists, newer ones pushed it out: then it is older than
    // every job listed now, and it stays on the page among the older jobs if those are shown.
    const listed = new Set(list.map((j) => j.id)), last = list[list.length - 1];
    const more = S.total != null && S.total > list.length;
    const gone = new Set(), out = [];
    for (const id of S.order) {
      if (listed.has(id)) continue;
      const j = S.jobs.get(id);
      if (more && j && last && Date.parse(j.submitted_at) <= Date.parse(last.submitted_at)) out.push(id); else gone.add(id);
    }
    S.order = list.map((j) => { S.jobs.set(j.id, j); sample(j); return j.id; });
    S.older = [...(S.older.length ? out : []), ...S.older].filter((id) => !listed.has(id) && !gone.has(id));
    S.listed = true;
    if (S.selected && gone.has(S.selected)) select(null);
    prune();
    if (S.view) S.view.onJob(S.jobs.get(S.selected));
  });
  on('job', (j) => {
    // Every job's changes come, listed or not: only those the page shows are kept.
    if (!S.jobs.has(j.id)) return;
    S.jobs.set(j.id, j); sample(j);
    if (S.view && S.selected === j.id) S.view.onJob(j);
  });
  on('progress', (p) => {
    const j = S.jobs.get(p.id); if (!j) return;
    Object.assign(j, p); sample(j);
    if (S.view && S.selected === p.id) S.view.onJob(j);
  });
  on('chunks', (c) => { if (S.view && S.selected === c.job) S.view.onChunks(c); });
}

// recheckReads asks whether this page may read now (a page stopped on a 401): once it may —
// read-auth was turned off, a credential restored — it opens its stream again. Still refused, it
// changes nothing on the page (a token being typed under Token stays) and asks again later.
async function recheckReads() {
  if (!streamRefused) return;
  const h = S.token ? { Authorization: 'Bearer ' + S.token } : {};
  const r = await fetch('/api/v1/status', { headers: h, cache: 'no-store' }).catch(() => null);
  if (!streamRefused) return;
  if (r && r.ok) { renderAccess(); es.close(); connect(); return; }
  recheck = setTimeout(recheckReads, RECHECK_MS);
}

// setConn shows the state of the event stream: live, or why not (reconnecting… by default).
function setConn(ok, why) {
  const c = $('conn');
  c.className = 'conn ' + (ok ? 'ok' : 'bad');
  setText(c, ok ? 'live' : (why || 'reconnecting…'));
}

// ---- rendering (batched into one animation frame) ------------------------------------------
let pending = false;
function schedule() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false; stats.frames++;
    const t = performance.now();
    renderCluster(); renderJobs(); if (S.view) S.view.render();
    stats.renderMs.push(performance.now() - t); if (stats.renderMs.length > 1000) stats.renderMs.shift();
  });
}

const fmt = {
  // si: 2.5 Gsamples/s, 812 B; below 100 without a prefix a rate keeps its decimals (0.42 rows/s,
  // 5.3 rows/s: a slow Mandelbrot job is not at "0 rows/s").
  si(v, unit) {
    if (!isFinite(v)) return '—';
    const a = Math.abs(v);
    const [d, s] = a >= 1e12 ? [1e12, 'T'] : a >= 1e9 ? [1e9, 'G'] : a >= 1e6 ? [1e6, 'M'] : a >= 1e3 ? [1e3, 'k'] : [1, ''];
    const x = a / d, digits = d > 1 ? (x >= 100 ? 0 : 1) : (x >= 100 || Number.isInteger(v) ? 0 : x >= 1 ? 1 : 2);
    return (v / d).toFixed(digits) + ' ' + s + unit;
  },
  dur(s) {
    if (!isFinite(s) || s < 0) return '—';
    if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' m ' + String(Math.floor(s % 60)).padStart(2, '0') + ' s';
    return Math.floor(s / 3600) + ' h ' + String(Math.floor((s % 3600) / 60)).padStart(2, '0') + ' m';
  },
};
const unitShort = { pi: 'samples', mandelbrot: 'rows', wasm: 'items' };
// Rates are work per second, as the API gives a node's (compute.UnitWork): π samples, Mandelbrot
// pixels (a row is its width), WebAssembly items. A job's rate is shown in the same unit.
const rateUnit = { pi: 'samples', mandelbrot: 'px', wasm: 'items' };
// jobRate is a job's rate in rateUnit: its units (rows for Mandelbrot) per second times their work.
function jobRate(j, unitsPerSec) { return j.kind === 'mandelbrot' ? unitsPerSec * j.width : unitsPerSec; }
const roleLabel = { leader: 'leader (coordinator)', voter: 'voter', nonvoter: 'non-voter', none: 'not a member' };

// renderPending lists the nodes waiting for approval, with approve and deny buttons (admins).
let pendingKey = '';
function renderPending(st) {
  const list = st.pending || [];
  const key = JSON.stringify(list.map((p) => [p.id, p.fingerprint, p.name])) + (S.token ? '1' : '0');
  const am = $('admit-mode');
  am.hidden = st.admit !== 'lan';
  setText(am, 'Admission: nodes asking from the LAN are approved automatically (--admit lan).');
  if (key === pendingKey) return;
  pendingKey = key;
  $('pending').hidden = list.length === 0;
  const ul = $('pending-list');
  ul.replaceChildren();
  for (const p of list) {
    const li = el('li');
    li.append(el('code', 'fp', p.fingerprint), ' ', el('strong', null, p.name || '(no name)'), ' ', el('span', 'muted', (p.addrs || [])[0] || ''), ' ');
    const ok = el('button', null, 'Approve');
    ok.onclick = () => admitAction('approve', 'Approving a node', p);
    const no = el('button', null, 'Deny');
    no.onclick = () => admitAction('deny', 'Denying a node', p);
    li.append(ok, ' ', no);
    ul.append(li);
  }
}

// admitAction approves or denies a node waiting for approval, and says how it went under the list
// (without a token: what it needs, before sending).
async function admitAction(op, action, p) {
  const msg = $('pending-msg');
  msg.className = 'msg bad';
  if (!S.token) { setText(msg, needToken(action)); return; }
  if (op === 'deny' && !confirm('Refuse ' + p.fingerprint + ' for good?')) return;
  msg.className = 'msg'; setText(msg, (op === 'deny' ? 'Denying ' : 'Approving ') + p.fingerprint + '…');
  const r = await api('POST', '/api/v1/' + op, JSON.stringify({ fingerprint: p.fingerprint }));
  msg.className = r.ok ? 'msg ok' : 'msg bad';
  setText(msg, r.ok ? (op === 'deny' ? 'Denied ' : 'Approved ') + p.fingerprint + '.' : refusal(r, action) || op + ' refused: ' + ((r.body && r.body.error) || r.status));
}

const rowsByNode = new Map();
function renderCluster() {
  const st = S.status; if (!st) return;
  renderPending(st);
  setText($('cluster-name'), st.cluster ? '· ' + st.cluster : '');
  const self = st.nodes.find((n) => n.id === st.self.id);
  setText($('self'), 'this page is served by ' + (st.self.name || st.self.id.slice(-8)) + (self && self.role === 'leader' ? ' (the coordinator)' : ''));
  setText($('cluster-count'), '· ' + st.nodes.filter((n) => n.online).length + ' of ' + st.nodes.length + ' online');
  const act = S.activity || {};
  const leases = new Map();
  for (const l of act.leases || []) { if (!leases.has(l.node)) leases.set(l.node, []); leases.get(l.node).push(l); }
  // Over every job (the work event); from a node without it, over the listed jobs (the newest
  // 200), not the older ones this page happens to show.
  let contrib = S.work;
  if (!contrib) {
    contrib = new Map();
    for (const id of S.order) for (const c of (S.jobs.get(id) || {}).nodes || []) {
      const o = contrib.get(c.node) || { chunks: 0, secs: 0 }; o.chunks += c.chunks; o.secs += c.compute_seconds; contrib.set(c.node, o);
    }
  }
  const nodes = [...st.nodes].sort((a, b) => (b.id === st.leader) - (a.id === st.leader) || (b.online - a.online) || a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  const tb = $('nodes').tBodies[0];
  const seen = new Set();
  nodes.forEach((n, i) => {
    seen.add(n.id);
    let r = rowsByNode.get(n.id);
    if (!r) {
      const tr = el('tr'); tr.dataset.nodeId = n.id;
      const cells = []; for (let k = 0; k < 9; k++) { const td = el('td'); if (k === 2 || k === 6 || k === 7) td.className = 'r'; tr.append(td); cells.push(td); }
      for (const k of [6, 7, 8]) cells[k].classList.add('lines'); // speeds, work, audits: a line each
      const name = el('span'), badge = el('span', 'self', 'this node'); cells[0].append(el('span', 'sw'), name, badge);
      cells[0].firstChild.style.background = nodeColour(n.id);
      r = { tr, cells, name, badge, st: el('span', 'st') }; cells[4].append(r.st);
      rowsByNode.set(n.id, r);
    }
    const leader = n.id === st.leader;
    const role = leader ? 'leader' : n.role;
    r.tr.className = leader ? 'leader' : '';
    r.tr.dataset.role = role;
    setText(r.name, n.name || n.id.slice(-8)); r.name.title = n.id;
    r.badge.hidden = n.id !== st.self.id;
    setText(r.cells[1], (n.os || '?') + '/' + (n.arch || '?'));
    setText(r.cells[2], n.cores || '—');
    setText(r.cells[3], roleLabel[role] || role); r.cells[3].className = leader ? 'role-leader' : '';
    const state = n.online ? (n.state || 'idle') : 'offline';
    let label = state;
    if (n.online && n.reason) label += ': ' + n.reason;
    if (n.online && n.power === 'battery' && n.reason !== 'on battery') label += ' · on battery';
    setText(r.st, label); r.st.className = 'st st-' + state;
    const ls = leases.get(n.id) || [];
    setText(r.cells[5], ls.length ? ls.map((l) => jobName(l.job) + ' [' + l.start + ', ' + l.end + ')' + (l.backup ? ' backup' : '')).join('; ') : '—');
    const na = (act.nodes || {})[n.id];
    const rates = na && na.rates ? Object.entries(na.rates).filter(([, v]) => v > 0).map(([k, v]) => fmt.si(v, (rateUnit[k] || k) + '/s')) : [];
    setText(r.cells[6], rates.join('\n') || '—'); // one kind a line: the column stays narrow
    const c = contrib.get(n.id);
    setText(r.cells[7], c ? c.chunks + ' chunks\n' + fmt.dur(c.secs) : '—');
    const au = n.audit || { state: 'new', passed: 0, failed: 0 };
    setText(r.cells[8], au.state + '\n' + au.passed + ' passed · ' + au.failed + ' failed');
    r.cells[8].className = 'lines' + (au.state === 'quarantined' ? ' st-paused' : '');
    if (tb.children[i] !== r.tr) tb.insertBefore(r.tr, tb.children[i] || null);
  });
  for (const [id, r] of rowsByNode) if (!seen.has(id)) { r.tr.remove(); rowsByNode.delete(id); }
}

// prune forgets the jobs the page neither lists nor shows nor has in view.
function prune() {
  const keep = new Set([...S.order, ...S.older]);
  if (S.selected) keep.add(S.selected);
  for (const id of [...S.jobs.keys()]) if (!keep.has(id)) { S.jobs.delete(id); S.rates.delete(id); }
}

function jobName(id) { const j = S.jobs.get(id); return j && j.name ? j.name : id.slice(0, 8); }

// sample keeps recent (time, done) points of a job for its rate and ETA.
function sample(j) {
  const now = performance.now() / 1000;
  let a = S.rates.get(j.id); if (!a) { a = []; S.rates.set(j.id, a); }
  // Done units go down when a failed audit requeues a node's chunks: the samples before then
  // would give a negative rate, so the rate starts again from here.
  if (a.length && j.done_units < a[a.length - 1].done) a.length = 0;
  if (!a.length || a[a.length - 1].done !== j.done_units) a.push({ t: now, done: j.done_units });
  while (a.length > 2 && now - a[0].t > 15) a.shift();
}
function rateOf(j) {
  const a = S.rates.get(j.id) || [];
  if (j.state !== 'running' || a.length < 2) return NaN;
  const f = a[0], l = a[a.length - 1], now = performance.now() / 1000;
  return (l.done - f.done) / Math.max(l.t - f.t, now - l.t > 5 ? now - f.t : 0.001); // a stall lowers it
}

const MAX_JOB_ROWS = 50;
const OLDER_PAGE = 200; // jobs a "Show older" fetches at a time (GET /api/v1/jobs?limit=&before=)
const rowsByJob = new Map();
function renderJobs() {
  const tb = $('jobs').tBodies[0];
  const ids = S.showAll ? [...S.order, ...S.older] : S.order.slice(0, MAX_JOB_ROWS);
  const seen = new Set();
  ids.forEach((id, i) => {
    const j = S.jobs.get(id); if (!j) return;
    seen.add(id);
    let r = rowsByJob.get(id);
    if (!r) r = makeJobRow(j);
    const k = { pi: 'π', wasm: 'WebAssembly' }[j.kind] || 'Mandelbrot';
    setText(r.name, (j.name || id) + ' ');
    setText(r.sub, k + ' · ' + (j.kind === 'pi' ? fmt.si(j.total_units, 'samples')
      : j.kind === 'wasm' ? fmt.si(j.total_units, 'items') + ', ' + j.reduce : j.width + '×' + j.height + ', ' + j.max_iter + ' it'));
    r.tr.dataset.state = j.state;
    setText(r.state, j.state);
    r.state.title = j.reason || '';
    r.fill.style.transform = 'scaleX(' + (j.progress || 0) + ')';
    r.barWrap.setAttribute('aria-valuenow', Math.round((j.progress || 0) * 100));
    setText(r.pct, (Math.floor((j.progress || 0) * 1000) / 10).toFixed(1) + ' %');
    const rate = rateOf(j);
    setText(r.rate, fmt.si(jobRate(j, rate), (rateUnit[j.kind] || unitShort[j.kind]) + '/s'));
    const left = j.total_units - j.done_units;
    setText(r.eta, j.state === 'done' ? 'done' : rate > 0 ? fmt.dur(left / rate) : '—');
    r.cancel.hidden = FINISHED.has(j.state);
    r.png.hidden = r.raw.hidden = j.kind !== 'mandelbrot';
    r.bin.hidden = !(j.kind === 'wasm' && j.reduce === 'concat' && j.state === 'done');
    r.tr.classList.toggle('sel', S.selected === id);
    if (tb.children[i] !== r.tr) tb.insertBefore(r.tr, tb.children[i] || null);
  });
  for (const [id, r] of rowsByJob) if (!seen.has(id)) { r.tr.remove(); rowsByJob.delete(id); }
  // A fresh cluster: say what the empty table is for, once the node has said it has no jobs.
  const empty = $('jobs-empty'), none = S.status !== null && S.order.length === 0;
  if (empty.hidden === none) empty.hidden = !none;
  renderMore(ids.length);
}

// The line under the job list: how many of the cluster's jobs are shown, and "Show older jobs"
// while there are more: it shows the rest of the listed ones, then fetches older pages.
let moreUI = null;
function renderMore(shown) {
  if (!moreUI) {
    const note = el('span'); note.setAttribute('role', 'status'); note.setAttribute('aria-live', 'polite');
    const btn = el('button', null, 'Show older jobs'); btn.id = 'jobs-older'; btn.onclick = showOlder;
    const err = el('span', 'msg bad');
    $('jobs-more').append(note, ' ', btn, ' ', err);
    moreUI = { note, btn, err };
  }
  const known = S.order.length + S.older.length, total = Math.max(S.total ?? known, known);
  setText(moreUI.note, total > MAX_JOB_ROWS || shown < total ? 'Showing ' + (shown === total ? 'all ' + total : 'the newest ' + shown + ' of ' + total) + ' jobs.' : '');
  moreUI.btn.hidden = !(shown < known || (shown < total && !S.olderEnd));
}

// showOlder shows the listed jobs not shown yet, or, with all shown, fetches the next page of
// older ones (the event stream lists the newest 200 only).
async function showOlder() {
  const b = moreUI.btn;
  if (!S.showAll && S.order.length + S.older.length > MAX_JOB_ROWS) { S.showAll = true; schedule(); return; }
  S.showAll = true;
  const all = [...S.order, ...S.older], last = all[all.length - 1];
  b.disabled = true; setText(moreUI.err, '');
  const r = await api('GET', '/api/v1/jobs?limit=' + OLDER_PAGE + (last ? '&before=' + encodeURIComponent(last) : ''));
  b.disabled = false;
  if (r.ok && Array.isArray(r.body)) {
    const have = new Set([...S.order, ...S.older]);
    for (const j of r.body) if (isJob(j, j.id) && !have.has(j.id)) { S.jobs.set(j.id, j); sample(j); S.older.push(j.id); }
    S.olderEnd = r.body.length < OLDER_PAGE;
  } else if (r.status === 404 && S.older.includes(last)) { // deleted since: page on from the one before
    S.older = S.older.filter((id) => id !== last); prune();
    setText(moreUI.err, 'A job was deleted meanwhile: press again.');
  } else setText(moreUI.err, 'Older jobs not loaded: ' + ((r.body && r.body.error) || 'HTTP ' + r.status));
  schedule();
}

function makeJobRow(j) {
  const id = j.id;
  const tr = el('tr'); tr.dataset.jobId = id;
  const c = []; for (let k = 0; k < 6; k++) { const td = el('td'); if (k === 3 || k === 4) td.className = 'r'; tr.append(td); c.push(td); }
  const name = el('button', 'link'); name.title = 'Show job ' + id; name.onclick = () => select(id);
  const sub = el('div', 'muted'); c[0].append(name, sub);
  const state = el('span'); c[1].append(state);
  const barWrap = el('span', 'bar'); barWrap.setAttribute('role', 'progressbar'); barWrap.setAttribute('aria-valuemin', '0'); barWrap.setAttribute('aria-valuemax', '100'); barWrap.setAttribute('aria-label', 'progress of ' + id);
  const fill = el('i'); barWrap.append(fill);
  const pct = el('span', 'pct'); c[2].append(barWrap, pct);
  const rate = c[3], eta = c[4];
  // note: what became of a Cancel pressed in this row, said beside its button (the Submit form's
  // message, far up a long list, is for submits).
  const note = el('div', 'msg row-msg'); note.setAttribute('role', 'status'); note.setAttribute('aria-live', 'polite');
  const cancel = el('button', null, 'Cancel'); cancel.onclick = () => cancelJob(id, cancel, note);
  const base = '/api/v1/jobs/' + encodeURIComponent(id);
  const png = el('a', 'btn', 'PNG'); png.href = base + '/result.png'; png.download = 'hydra-' + id + '.png';
  const raw = el('a', 'btn', 'raw'); raw.href = base + '/result.raw'; raw.download = 'hydra-' + id + '.raw'; raw.title = 'W×H little-endian uint32 iteration counts';
  const json = el('a', 'btn', 'JSON'); json.href = base + '/result'; json.download = 'hydra-' + id + '.json';
  // A concat job's output bytes in item order (GET …/result.bin), as its job view offers them.
  const bin = el('a', 'btn', 'result.bin'); bin.href = base + '/result.bin'; bin.download = 'hydra-' + id + '.bin'; bin.title = 'the output bytes in item order';
  c[5].append(cancel, ' ', png, ' ', raw, ' ', bin, ' ', json, note);
  const r = { tr, name, sub, state, fill, barWrap, pct, rate, eta, cancel, png, raw, bin, note };
  rowsByJob.set(id, r);
  return r;
}

// cancelJob cancels job id, and says how it went in msg, its row's note.
async function cancelJob(id, btn, msg) {
  const say = (ok, t) => { msg.className = 'msg row-msg ' + (ok ? 'ok' : 'bad'); setText(msg, t); };
  if (!S.token) { say(false, needToken('Cancelling a job')); return; }
  btn.disabled = true;
  msg.className = 'msg row-msg'; setText(msg, 'Cancelling…');
  const r = await api('POST', '/api/v1/jobs/' + encodeURIComponent(id) + '/cancel', '{}');
  btn.disabled = false;
  const b = r.body;
  // A job deleted meanwhile (another admin, the retention period) answers 404, or, deleted
  // between the cancel and the answer, {id, state} without the job: the list drops it at its
  // next update, and the row keeps the job as it was until then.
  if (r.status === 404) say(false, 'Not cancelled: this node has no such job (deleted meanwhile?).');
  else if (!r.ok) say(false, refusal(r, 'Cancelling a job') || 'Cancel refused: ' + ((b && b.error) || r.status));
  else if (!isJob(b, id)) say(true, 'Cancelled, but this node no longer has the job (deleted meanwhile?).');
  else { say(true, 'Cancelled.'); S.jobs.set(id, b); schedule(); }
}

// isJob reports whether b is the job view of id (webui.JobView), not some other answer.
function isJob(b, id) {
  return b != null && typeof b === 'object' && b.id === id && typeof b.state === 'string' && typeof b.kind === 'string' &&
    Number.isFinite(b.total_units) && Number.isFinite(b.done_units);
}

// ---- job details -------------------------------------------------------------------------
function select(id) {
  if (S.view) { S.view.destroy(); S.view = null; }
  S.selected = id;
  $('job-sec').hidden = !id;
  if (id && S.jobs.get(id)) {
    S.view = new JobView(S.jobs.get(id), { status: () => S.status, stats, activity: () => S.activity, token: () => S.token });
    if (S.activity) S.view.onActivity(S.activity);
    history.replaceState(null, '', '#job=' + encodeURIComponent(id));
  } else if (!id) history.replaceState(null, '', location.pathname);
  schedule();
}

// ---- submit form ---------------------------------------------------------------------------
const FIELDS = { pi: ['samples', 'seed'], mandelbrot: ['width', 'height', 'center_x', 'center_y', 'span', 'max_iter'], wasm: ['items', 'reduce', 'params'] };
const STRINGS = new Set(['name', 'seed', 'reduce', 'params']); // sent as JSON strings, whatever they look like

const NUMERIC = /^-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
function initForm() {
  const f = $('submit');
  const kind = () => f.querySelector('input[name=kind]:checked').value;
  const sync = () => { f.className = 'kind-' + kind(); };
  f.addEventListener('change', sync); sync();
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const k = kind();
    // The body is built by hand so numbers go to the API exactly as typed: the API validates.
    const parts = ['"kind":' + JSON.stringify(k)];
    for (const name of ['name', 'priority', ...FIELDS[k]]) {
      const v = f.elements[name].value.trim();
      if (v === '') continue;
      if (STRINGS.has(name)) parts.push(JSON.stringify(name) + ':' + JSON.stringify(v));
      else parts.push(JSON.stringify(name) + ':' + (NUMERIC.test(v) ? v : JSON.stringify(v)));
    }
    for (const e of f.querySelectorAll('.err')) e.textContent = '';
    for (const e of f.querySelectorAll('[aria-invalid]')) e.removeAttribute('aria-invalid');
    const msg = $('submit-msg');
    // Without a token the node would refuse it: said before anything is sent or uploaded.
    if (!S.token) { msg.className = 'msg bad'; setText(msg, needToken('Submitting a job')); return; }
    msg.className = 'msg'; setText(msg, 'Submitting…');
    const btn = $('submit-btn'); btn.disabled = true;
    if (k === 'wasm') {
      const file = f.elements.module.files[0];
      const bad = (said, m) => {
        btn.disabled = false; msg.className = 'msg bad'; setText(msg, said);
        $('e-module').textContent = m; f.elements.module.setAttribute('aria-invalid', 'true'); f.elements.module.setAttribute('aria-describedby', 'e-module');
      };
      // Nothing chosen: nothing to upload, so nothing was refused.
      if (!file) { bad('No job submitted: choose a module file first.', 'module: choose a .wasm file first'); return; }
      setText(msg, 'Uploading ' + file.name + ' (' + fmt.si(file.size, 'B') + ')…');
      const up = await api('POST', '/api/v1/modules', file, 'application/wasm');
      if (!up.ok) {
        const no = refusal(up, 'Uploading a module'); // the tab's token, not the module
        if (no) { btn.disabled = false; msg.className = 'msg bad'; setText(msg, no); } else bad('No job submitted: the module was not accepted.', 'module: ' + ((up.body && up.body.error) || 'HTTP ' + up.status));
        return;
      }
      parts.push('"module":' + JSON.stringify(up.body.sha256));
      setText(msg, 'Submitting…');
    }
    const r = await api('POST', '/api/v1/jobs', '{' + parts.join(',') + '}');
    btn.disabled = false;
    if (r.ok) {
      msg.className = 'msg ok'; setText(msg, 'Submitted job ' + r.body.id + '.');
      if (!S.jobs.has(r.body.id)) { S.jobs.set(r.body.id, r.body); S.order.unshift(r.body.id); }
      select(r.body.id);
      return;
    }
    const err = (r.body && r.body.error) || ('HTTP ' + r.status);
    msg.className = 'msg bad';
    const field = r.status === 400 && /^([a-z_]+):/.exec(err);
    const slot = field && $('e-' + field[1]);
    if (slot) {
      slot.textContent = err; f.elements[field[1]].setAttribute('aria-invalid', 'true');
      f.elements[field[1]].setAttribute('aria-describedby', slot.id);
      setText(msg, 'The node refused the job (see ' + field[1] + ').');
    } else setText(msg, refusal(r, 'Submitting a job') || 'Error: ' + err);
  });
}

// ---- start -------------------------------------------------------------------------------
window.hydra = { stats, state: S, fmt, sample, rateOf };
initToken();
initForm();
connect();
const m = /#job=([^&]+)/.exec(location.hash);
if (m) {
  const want = decodeURIComponent(m[1]);
  // A job older than the listed ones is read on its own once the list came.
  let asked = false;
  const wait = setInterval(async () => {
    if (S.jobs.has(want)) { clearInterval(wait); select(want); return; }
    if (!S.listed || asked) return;
    asked = true;
    const r = await api('GET', '/api/v1/jobs/' + encodeURIComponent(want));
    if (r.ok && isJob(r.body, want) && !S.jobs.has(want)) { S.jobs.set(want, r.body); clearInterval(wait); select(want); }
  }, 200);
  setTimeout(() => clearInterval(wait), 10000);
}
setInterval(schedule, 1000); // ETAs and in-flight bars move with time
setInterval(() => { // the stall watchdog (STALL_MS)
  if (streamRefused || performance.now() - Math.max(heard, retryAt) < STALL_MS) return;
  es.close(); setConn(false); connect();
}, 1000);

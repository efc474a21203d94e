// SPDX-License-Identifier: Apache-2.0
// The Shoal dashboard (issue 17). Reads only the admin API of the node that
// serves it, with the bearer token the operator types (kept in this tab's
// sessionStorage):
//   /v1/members   the members, once and again after every reconnection
//   /v1/events    Server-Sent Events, read with fetch() so that the token can
//                 go in a header (EventSource cannot send one): member status
//                 changes are applied as they come
//   /v1/info, /metrics, /v1/upstreams, /v1/stats   every POLL_MS
// Per-node figures are this node's: the API gives no other node's counters.
// The error rate and latency tiles read shoal_http_requests_total{code} and
// the shoal_http_request_duration_seconds histogram (see METRICS below).
// Every value from the API reaches the page through textContent, never HTML.
'use strict';

(function () {
  const POLL_MS = 2000;
  const RESYNC_MS = 30000;
  const SPARK_POINTS = 60;
  const MAX_EVENTS = 200;
  // The series the tiles read; names by Prometheus conventions.
  const METRICS = {
    requests: ['shoal_http_requests_total'],
    codeLabels: ['code'],
    latency: ['shoal_http_request_duration_seconds'],
  };

  const $ = (id) => document.getElementById(id);
  const state = {
    token: sessionStorage.getItem('shoal.token') || '',
    gen: 0,             // bumped to stop the loops of a previous login
    self: null,         // this node's name
    info: null,
    members: new Map(), // name -> member JSON
    prevMetrics: null,  // {t, reqs, codes, buckets}
    spark: [],
    rps: null,
    prevStats: null,
    streamAbort: null,
    eventsApplied: 0,
  };
  window.shoalUI = state; // for people poking in DevTools, and the test

  class AuthError extends Error {}

  async function api(path, opts) {
    const headers = {};
    if (state.token) headers.Authorization = 'Bearer ' + state.token;
    const r = await fetch(path, Object.assign({ headers, cache: 'no-store' }, opts || {}));
    if (r.status === 401) throw new AuthError('401');
    if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
    return r;
  }

  // ------------------------------------------------------------ DOM helpers --
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k);
    return e;
  }
  function setText(id, v) { $(id).textContent = v; }
  function notAvailable(id, why) {
    const v = $(id);
    v.textContent = '';
    v.append(el('span', { class: 'na', text: 'not exported yet' }));
    v.title = why;
  }

  function age(ms) {
    if (!(ms >= 0)) return '-';
    let s = Math.floor(ms / 1000);
    if (s < 60) return s + 's';
    let m = Math.floor(s / 60); s %= 60;
    if (m < 60) return m + 'm ' + s + 's';
    let h = Math.floor(m / 60); m %= 60;
    if (h < 48) return h + 'h ' + m + 'm';
    return Math.floor(h / 24) + 'd ' + (h % 24) + 'h';
  }
  function num(v, digits) {
    if (v === null || v === undefined || !isFinite(v)) return '-';
    if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(1) + 'M';
    if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(1) + 'k';
    return v.toFixed(digits === undefined ? 0 : digits);
  }
  // SWIM says dead; the event is member-failed, and so is the badge.
  const statusText = (s) => (s === 'dead' ? 'failed' : s);

  // ------------------------------------------------------------- login --
  function showLogin(message) {
    stop();
    $('app').hidden = true;
    $('logout').hidden = true;
    $('login').hidden = false;
    const err = $('login-error');
    err.hidden = !message;
    err.textContent = message || '';
    setLive(false, 'no token');
    $('token').focus();
  }

  function showApp() {
    $('login').hidden = true;
    $('app').hidden = false;
    $('logout').hidden = !state.token;
  }

  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    state.token = $('token').value.trim();
    $('token').value = '';
    sessionStorage.setItem('shoal.token', state.token);
    start();
  });
  $('logout').addEventListener('click', () => {
    state.token = '';
    sessionStorage.removeItem('shoal.token');
    showLogin(null);
  });

  function stop() {
    state.gen++;
    if (state.streamAbort) state.streamAbort.abort();
    state.streamAbort = null;
  }

  function setLive(on, text) {
    const l = $('live');
    l.classList.toggle('off', !on);
    l.textContent = text;
  }

  function handleError(e, gen) {
    if (gen !== state.gen) return true;
    if (e instanceof AuthError) {
      showLogin(state.token ? 'The node refused this token.' : null);
      return true;
    }
    return false;
  }

  // -------------------------------------------------------------- start --
  async function start() {
    stop();
    const gen = state.gen;
    try {
      state.info = await (await api('/v1/info')).json();
    } catch (e) {
      if (!handleError(e, gen)) setLive(false, 'node unreachable');
      if (!(e instanceof AuthError)) setTimeout(() => gen === state.gen && start(), POLL_MS);
      return;
    }
    if (gen !== state.gen) return;
    state.self = state.info.name;
    state.prevMetrics = null;
    state.prevStats = null;
    state.spark = [];
    showApp();
    renderInfo();
    if (hasCluster()) await loadMembers(gen);
    stream(gen);
    poll(gen);
    resync(gen);
    tick(gen);
  }

  // A node without a cluster {} block serves the admin API alone: /v1/info
  // says "cluster": false and the members and gossip paths answer 404.
  function hasCluster() {
    return !state.info || state.info.cluster !== false;
  }

  async function loadMembers(gen) {
    if (!hasCluster()) return;
    try {
      const list = await (await api('/v1/members')).json();
      if (gen !== state.gen) return;
      state.members = new Map(list.map((m) => [m.name, m]));
      renderMembers();
    } catch (e) {
      handleError(e, gen);
    }
  }

  function resync(gen) {
    setTimeout(async () => {
      if (gen !== state.gen) return;
      await loadMembers(gen);
      resync(gen);
    }, RESYNC_MS);
  }

  function tick(gen) { // ages move every second
    setTimeout(() => {
      if (gen !== state.gen) return;
      renderMembers();
      tick(gen);
    }, 1000);
  }

  // ------------------------------------------------------- event stream --
  async function stream(gen) {
    let backoff = 500;
    while (gen === state.gen) {
      const ctl = new AbortController();
      state.streamAbort = ctl;
      try {
        const r = await api('/v1/events', { signal: ctl.signal });
        setLive(true, 'live');
        backoff = 500;
        if (state.members.size === 0) await loadMembers(gen);
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done || gen !== state.gen) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            onBlock(block, gen);
          }
        }
      } catch (e) {
        if (handleError(e, gen)) return;
      }
      if (gen !== state.gen) return;
      setLive(false, 'reconnecting');
      await new Promise((res) => setTimeout(res, backoff));
      backoff = Math.min(backoff * 2, 10000);
      await loadMembers(gen); // whatever happened while we were away
    }
  }

  // One SSE block: "event: TYPE" and "data: JSON" lines (comments start ':').
  function onBlock(block, gen) {
    let type = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) type = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    if (data.length === 0) return;
    let d;
    try { d = JSON.parse(data.join('\n')); } catch (e) { return; }
    addEvent(type, d);
    if (type.startsWith('member-') && d.name) {
      const m = state.members.get(d.name);
      if (m) {
        m.status = d.status;
        m.addr = d.addr || m.addr;
        m.incarnation = d.incarnation;
        m.last_change_unix_ms = d.time_unix_ms;
      } else {
        loadMembers(gen); // a newcomer: its region, zone and tags are in /v1/members
      }
      state.eventsApplied++;
      renderMembers();
    } else if (type === 'keyring' || type === 'reload') {
      api('/v1/info').then((r) => r.json()).then((j) => { state.info = j; renderInfo(); })
        .catch((e) => handleError(e, gen));
    }
  }

  function addEvent(type, d) {
    const t = new Date(d.time_unix_ms || Date.now());
    let what = '';
    if (type.startsWith('member-')) what = d.name + ' ' + (d.previous || '') + ' \u2192 ' + statusText(d.status);
    else if (type === 'reload') what = (d.ok ? 'ok: ' : 'refused: ') + (d.message || '');
    else if (type === 'keyring') what = 'primary ' + d.primary + ', ' + d.keys + ' key(s), ' + d.source;
    const li = el('li', { class: type },
      el('time', { text: t.toLocaleTimeString() }),
      el('span', { class: 'type', text: type }),
      el('span', { class: 'what', text: what }));
    const ol = $('events');
    ol.prepend(li);
    while (ol.children.length > MAX_EVENTS) ol.lastChild.remove();
  }

  // ------------------------------------------------------------ polling --
  async function poll(gen) {
    if (gen !== state.gen) return;
    const jobs = [
      api('/v1/info').then((r) => r.json()).then((j) => { state.info = j; renderInfo(); }),
      api('/metrics').then((r) => r.text()).then(renderMetrics),
      api('/v1/upstreams').then((r) => r.json()).then(renderUpstreams),
    ];
    if (hasCluster()) jobs.push(api('/v1/stats').then((r) => r.json()).then(renderStats));
    const res = await Promise.allSettled(jobs);
    if (gen !== state.gen) return;
    for (const x of res) {
      if (x.status === 'rejected' && handleError(x.reason, gen)) return;
    }
    const down = res.every((x) => x.status === 'rejected');
    if (down) setLive(false, 'node unreachable');
    setTimeout(() => poll(gen), POLL_MS);
  }

  // --------------------------------------------------------- rendering --
  function renderInfo() {
    const i = state.info;
    if (!i) return;
    setText('cluster-name', (i.cluster ? 'cluster ' + i.cluster + ' \u00b7 ' : '') + 'shoal ' + i.version);
    setText('n-name', i.name || '-');
    setText('n-sub', [i.region, i.zone].filter(Boolean).join(' / ') + ' up ' + age(i.uptime_ms));
    if (i.cluster === false) {
      setText('n-members', '-');
      setText('n-members-sub', 'no cluster {} block: this node alone');
      return;
    }
    if (state.members.size === 0) setText('n-members', i.members_alive + ' / ' + i.members);
    setText('n-members-sub', 'health score ' + i.health_score + (i.left ? ' \u00b7 left' : ''));
  }

  function canLink(addr) {
    if (!/^(\d+\.\d+\.\d+\.\d+|\[[0-9a-fA-F:]+\]):\d+$/.test(addr || '')) return false;
    if (addr.startsWith('0.0.0.0') || addr.startsWith('[::]')) return false;
    const loop = (h) => /^(127\.|\[::1\]|localhost)/.test(h);
    // a loopback admin address means "that machine's loopback": only
    // reachable from here when this page is on loopback too
    return !loop(addr) || loop(location.host);
  }

  function renderMembers() {
    const tbody = $('members').tBodies[0];
    const now = Date.now();
    const rows = [...state.members.values()].sort((a, b) => a.name.localeCompare(b.name));
    const frag = document.createDocumentFragment();
    for (const m of rows) {
      const self = m.name === state.self;
      const tags = Object.entries(m.tags || {}).map(([k, v]) => el('span', { class: 'tag', text: k + '=' + v }));
      let admin = m.admin_addr || '-';
      if (!self && canLink(m.admin_addr)) {
        admin = el('a', { href: 'http://' + m.admin_addr + '/ui/', target: '_blank', rel: 'noopener noreferrer',
          text: m.admin_addr });
      }
      const rps = self ? num(state.rps, 1) : '-';
      frag.append(el('tr', { 'data-name': m.name, 'data-status': m.status },
        el('td', { class: self ? 'self' : null, text: m.name }),
        el('td', {}, el('span', { class: 'badge ' + m.status, title: 'SWIM status: ' + m.status,
          text: statusText(m.status) })),
        el('td', { text: m.region || '-' }),
        el('td', { text: m.zone || '-' }),
        el('td', { text: m.addr }),
        el('td', { class: 'num', text: age(now - m.last_change_unix_ms) }),
        el('td', { text: m.version || '-' }),
        el('td', { class: 'num', text: rps,
          title: self ? null : "the admin API gives this node's counters only: open its dashboard" }),
        el('td', {}, ...tags),
        el('td', {}, admin)));
    }
    tbody.replaceChildren(frag);
    const n = rows.filter((m) => m.status === 'alive').length;
    setText('members-note', n + ' alive of ' + rows.length);
    if (hasCluster()) setText('n-members', n + ' / ' + rows.length); // live, from the event stream
  }

  // Prometheus text format 0.0.4 -> [{name, labels, value}]
  function parseMetrics(text) {
    const out = [];
    for (const line of text.split('\n')) {
      if (!line || line[0] === '#') continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels = {};
      if (m[3]) {
        const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
        let l;
        while ((l = re.exec(m[3]))) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
      }
      out.push({ name: m[1], labels, value: Number(m[4]) });
    }
    return out;
  }

  function renderMetrics(text) {
    const series = parseMetrics(text);
    const t = performance.now() / 1000;
    const reqSeries = series.filter((s) => METRICS.requests.includes(s.name));
    const reqs = reqSeries.reduce((a, s) => a + s.value, 0);
    // by status code, when the requests counter carries one
    const codeLabel = METRICS.codeLabels.find((l) => reqSeries.some((s) => l in s.labels));
    const codes = {};
    if (codeLabel) for (const s of reqSeries) codes[s.labels[codeLabel]] = (codes[s.labels[codeLabel]] || 0) + s.value;
    // latency histogram buckets, summed over every other label
    const buckets = {};
    for (const s of series) {
      if (METRICS.latency.some((n) => s.name === n + '_bucket')) buckets[s.labels.le] = (buckets[s.labels.le] || 0) + s.value;
    }
    const prev = state.prevMetrics;
    state.prevMetrics = { t, reqs, codes, buckets };

    const get = (name, lab, val) => {
      const s = series.find((x) => x.name === name && (!lab || x.labels[lab] === val));
      return s ? s.value : null;
    };
    // the states partition the open connections: their sum is the total
    const conns = ['reading', 'writing', 'waiting'].map((st) => get('shoal_connections', 'state', st));
    setText('n-conns', conns.every((v) => v === null) ? '-' : num(conns.reduce((a, v) => a + (v || 0), 0)));
    setText('n-conns-sub', 'reading ' + num(get('shoal_connections', 'state', 'reading')) +
      ' \u00b7 writing ' + num(get('shoal_connections', 'state', 'writing')) +
      ' \u00b7 idle ' + num(get('shoal_connections', 'state', 'waiting')));
    setText('n-rps-sub', num(reqs) + ' requests since start');
    if (!prev || t <= prev.t) return;
    const dt = t - prev.t;
    const dreq = Math.max(0, reqs - prev.reqs);
    state.rps = dreq / dt;
    setText('n-rps', num(state.rps, 1));
    state.spark.push(state.rps);
    if (state.spark.length > SPARK_POINTS) state.spark.shift();
    drawSpark();

    if (codeLabel) {
      let err = 0, all = 0;
      for (const [c, v] of Object.entries(codes)) {
        const d = Math.max(0, v - (prev.codes[c] || 0));
        all += d;
        if (/^5/.test(c)) err += d;
      }
      setText('n-err', all ? num((100 * err) / all, 1) + '%' : '0%');
      $('n-err').title = '';
      setText('n-err-sub', num(err / dt, 1) + ' / s');
    } else {
      notAvailable('n-err', 'needs ' + METRICS.requests[0] + ' with a status code label in /metrics');
      setText('n-err-sub', 'needs requests by status code in /metrics');
    }
    const les = Object.keys(buckets);
    if (les.length) {
      const d = les.map((le) => [le === '+Inf' ? Infinity : Number(le), Math.max(0, buckets[le] - (prev.buckets[le] || 0))])
        .sort((a, b) => a[0] - b[0]);
      const q = (p) => quantile(d, p);
      setText('n-lat', fmtSec(q(0.5)) + ' / ' + fmtSec(q(0.99)));
      $('n-lat').title = '';
      setText('n-lat-sub', 'over the last ' + dt.toFixed(0) + ' s');
    } else {
      notAvailable('n-lat', 'needs the ' + METRICS.latency[0] + ' histogram in /metrics');
      setText('n-lat-sub', 'needs a request latency histogram in /metrics');
    }
  }

  // The p-quantile of cumulative bucket deltas [[le, count]], interpolated
  // inside the bucket (as Prometheus's histogram_quantile).
  function quantile(d, p) {
    const total = d.length ? d[d.length - 1][1] : 0;
    if (!total) return null;
    const rank = p * total;
    let lo = 0, loCount = 0;
    for (const [le, c] of d) {
      if (c >= rank) {
        if (le === Infinity) return lo;
        return lo + ((le - lo) * (rank - loCount)) / Math.max(1, c - loCount);
      }
      lo = le; loCount = c;
    }
    return lo;
  }
  function fmtSec(s) {
    if (s === null) return '-';
    return s < 1 ? (s * 1000).toFixed(s < 0.01 ? 1 : 0) + ' ms' : s.toFixed(2) + ' s';
  }

  function drawSpark() {
    const pts = state.spark;
    if (pts.length < 2) return;
    const max = Math.max(1, ...pts);
    const step = 120 / (SPARK_POINTS - 1);
    const off = SPARK_POINTS - pts.length;
    const s = pts.map((v, i) => ((off + i) * step).toFixed(1) + ',' + (27 - (v / max) * 25).toFixed(1)).join(' ');
    $('n-spark').querySelector('polyline').setAttribute('points', s);
  }

  function renderUpstreams(list) {
    const box = $('upstreams');
    if (!Array.isArray(list) || list.length === 0) {
      box.replaceChildren(el('p', { class: 'muted', text: 'no upstream group on this node' }));
      return;
    }
    const frag = document.createDocumentFragment();
    for (const u of list) {
      const rows = (u.servers || []).map((s) => {
        const cls = s.state === 'up' ? 'up' : s.state === 'partly down' ? 'partly'
          : s.state === 'down (configured)' ? 'configured' : 'down';
        return el('tr', { 'data-addr': s.addr, 'data-state': s.state },
          el('td', { text: s.addr + (s.backup ? ' (backup)' : '') }),
          el('td', {}, el('span', { class: 'badge ' + cls, text: s.state,
            title: s.workers_down + ' of ' + s.workers + ' workers took it out' })),
          el('td', { class: 'num', text: String(s.active) }),
          el('td', { class: 'num', text: String(s.fails) }),
          el('td', { class: 'num', text: String(s.weight) }),
          el('td', { class: 'num', text: s.max_fails + ' / ' + age(s.fail_timeout_ms) }));
      });
      frag.append(el('div', { class: 'ups', 'data-upstream': u.name },
        el('h3', { text: (u.implicit ? u.name + ' (implicit)' : u.name) },
          el('span', { class: 'muted', text: ' \u00b7 ' + u.balancer + ' \u00b7 ' + u.servers_up + ' of ' +
            (u.servers || []).length + ' up' })),
        el('table', {},
          el('thead', {}, el('tr', {}, ...['server', 'health', 'active', 'fails', 'weight', 'max_fails / fail_timeout']
            .map((h) => el('th', { text: h })))),
          el('tbody', {}, ...rows))));
    }
    box.replaceChildren(frag);
  }

  function renderStats(s) {
    const t = performance.now() / 1000;
    const prev = state.prevStats;
    state.prevStats = { t, s };
    const rate = (k) => (prev && t > prev.t ? num((s[k] - prev.s[k]) / (t - prev.t), 1) + '/s' : '-');
    const dropped = ['dropped_short', 'dropped_bad_version', 'dropped_unknown_key', 'dropped_bad_tag', 'dropped_too_big']
      .reduce((a, k) => a + (s[k] || 0), 0);
    const kv = [
      ['packets sent', num(s.packets_sent) + ' (' + rate('packets_sent') + ')'],
      ['packets received', num(s.packets_recv) + ' (' + rate('packets_recv') + ')'],
      ['probes', num(s.probes) + ', ' + num(s.probe_failures) + ' failed'],
      ['refutes', num(s.refutes)],
      ['dropped (short, version, key, tag, size)', num(dropped)],
      ['undecodable', num(s.undecodable)],
      ['health score', String(s.health_score)],
      ['keyring', s.keyring_keys + ' key(s), primary ' + (state.info ? state.info.keyring_primary : '-')],
    ];
    $('gossip').replaceChildren(...kv.map(([k, v]) => el('div', {}, el('span', { text: k + ': ' }), v)));
  }

  start();
})();

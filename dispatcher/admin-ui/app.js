// gpuq admin dashboard. Plain JS, no dependencies, no build step; served by the dispatcher
// from the binary (dispatcher/src/routes/admin_ui.rs) under a strict CSP.
//
// The page holds no data until the operator pastes a token. Every call sends it as a bearer
// token; a 401/403 answer forgets it and returns to the login form. Server text is put into
// the page with textContent only, never parsed as HTML.
'use strict';

(() => {
  const TOKEN_KEY = 'gpuq.adminToken';
  const POLL_MS = 2000;
  const WINDOW_MS = 5 * 60 * 1000;
  const SERIES = [
    { key: 'waiting', color: '--c-waiting' },
    { key: 'inFlight', color: '--c-inflight' },
    { key: 'delayed', color: '--c-delayed' },
    { key: 'dead', color: '--c-dead' },
  ];
  // The dashboard lives at <root>/admin/; the API at <root>/admin/... and <root>/v1/...
  const ROOT = new URL('../', document.baseURI);

  const $ = (id) => document.getElementById(id);

  const state = {
    token: null,
    generation: 0, // bumped at logout: answers of an older session are dropped
    timer: null,
    busy: false,
    again: false,
    paused: false,
    history: new Map(), // queue -> [{t, waiting, inFlight, delayed, dead}]
    queueNames: [],
  };

  // ---------------------------------------------------------------------------------------
  // DOM helpers (text only)

  /** el('td', {class: 'num', 'data-testid': 'x'}, 'text', childNode, ...) */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function setText(node, text) {
    const s = text === undefined || text === null ? '' : String(text);
    if (node.textContent !== s) node.textContent = s;
  }

  /**
   * Keeps `container`'s children in step with `items` without rebuilding rows that stay
   * (so focus, selection and buttons survive a refresh). `create(item)` makes a node,
   * `update(node, item)` refreshes it; `empty()` makes the placeholder for no items.
   */
  function sync(container, items, key, create, update, empty) {
    const old = new Map();
    for (const child of Array.from(container.children)) {
      if (child.dataset.key !== undefined) old.set(child.dataset.key, child);
      else child.remove();
    }
    let i = 0;
    for (const item of items) {
      const k = String(key(item));
      let node = old.get(k);
      if (node) old.delete(k);
      else {
        node = create(item);
        node.dataset.key = k;
      }
      update(node, item);
      if (container.children[i] !== node) container.insertBefore(node, container.children[i] || null);
      i += 1;
    }
    for (const node of old.values()) node.remove();
    if (items.length === 0 && empty) container.append(empty());
  }

  function emptyRow(colspan, text) {
    return () => el('tr', { class: 'empty' }, el('td', { colspan, class: 'muted' }, text));
  }

  // ---------------------------------------------------------------------------------------
  // Formatting

  function duration(ms) {
    if (ms === undefined || ms === null || Number.isNaN(Number(ms))) return '—';
    let s = Math.max(0, Math.floor(Number(ms) / 1000));
    if (s < 60) return `${s} s`;
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    s %= 60;
    if (h > 0) return `${h} h ${String(m).padStart(2, '0')} m`;
    return `${m} m ${String(s).padStart(2, '0')} s`;
  }

  function when(value) {
    if (value === undefined || value === null || value === '') return '—';
    const d = new Date(value);
    return Number.isNaN(d.getTime()) ? String(value) : d.toLocaleString();
  }

  /** Long server text (a stack trace as an error) is cut for the table; the title and the
   * job's record have all of it. */
  function clip(text, max = 300) {
    const s = text === undefined || text === null ? '' : String(text);
    return s.length > max ? `${s.slice(0, max)}…` : s;
  }

  function num(v) {
    return v === undefined || v === null ? '—' : String(v);
  }

  function maxOf(a, b) {
    const xs = [a, b].filter((x) => x !== undefined && x !== null);
    return xs.length ? Math.max(...xs) : null;
  }

  // ---------------------------------------------------------------------------------------
  // API

  class AuthError extends Error {}
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path) {
    const generation = state.generation;
    const token = state.token;
    if (!token) throw new AuthError('Not signed in.');
    let res;
    try {
      res = await fetch(new URL(path, ROOT), {
        method,
        headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
        cache: 'no-store',
        credentials: 'omit',
        redirect: 'error',
      });
    } catch (e) {
      throw new ApiError(0, 'network', `the dispatcher is unreachable (${e.message})`);
    }
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    if (generation !== state.generation) throw new ApiError(0, 'stale', 'signed out');
    const error = (body && body.error) || {};
    if (res.status === 401 || res.status === 403) {
      throw new AuthError(
        `The dispatcher refused the token (${res.status}${error.code ? ` ${error.code}` : ''}): ${error.message || res.statusText}`,
      );
    }
    if (!res.ok || !body || body.success === false) {
      throw new ApiError(res.status, error.code || 'http_error', error.message || `HTTP ${res.status}`);
    }
    return body;
  }

  // ---------------------------------------------------------------------------------------
  // Views

  function showLogin(message) {
    $('dashboard-view').hidden = true;
    $('session-bar').hidden = true;
    $('login-view').hidden = false;
    const msg = $('login-message');
    msg.hidden = !message;
    setText(msg, message || '');
    $('token-input').value = '';
    $('token-input').focus();
  }

  function showDashboard() {
    $('login-view').hidden = true;
    $('login-message').hidden = true;
    $('dashboard-view').hidden = false;
    $('session-bar').hidden = false;
  }

  function clearData() {
    state.history.clear();
    state.queueNames = [];
    for (const id of ['queues-body', 'workers-body', 'quarantined-body', 'tenants-body', 'failures-body', 'dead-lists', 'charts', 'job-result', 'credits-result']) {
      $(id).replaceChildren();
    }
    $('job-search-input').value = '';
    $('credits-input').value = '';
    delete $('job-result').dataset.jobId;
    $('flash').hidden = true;
  }

  let flashTimer = null;
  function flash(text, kind) {
    const node = $('flash');
    node.className = `flash ${kind || 'ok'}`;
    node.dataset.kind = kind || 'ok';
    setText(node, text);
    node.hidden = false;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => {
      node.hidden = true;
    }, 8000);
  }

  function status(text, kind) {
    const node = $('refresh-status');
    node.dataset.state = kind;
    node.className = kind === 'error' ? 'error' : 'muted';
    setText(node, text);
  }

  // ---------------------------------------------------------------------------------------
  // Session

  function signOut(message) {
    state.generation += 1;
    state.token = null;
    clearTimeout(state.timer);
    state.timer = null;
    state.busy = false;
    state.again = false;
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      /* storage disabled */
    }
    clearData();
    showLogin(message);
  }

  async function signIn(token) {
    state.generation += 1;
    state.token = token;
    const button = $('login-button');
    button.disabled = true;
    try {
      await api('GET', 'admin/queues');
    } catch (e) {
      state.token = null;
      showLogin(e instanceof AuthError ? e.message : `Could not sign in: ${e.message}`);
      return;
    } finally {
      button.disabled = false;
    }
    try {
      sessionStorage.setItem(TOKEN_KEY, token);
    } catch (_) {
      /* storage disabled: the session lasts as long as the page */
    }
    start();
  }

  function start() {
    showDashboard();
    state.paused = false;
    setText($('pause-button'), 'Pause');
    status('loading…', 'loading');
    tick();
  }

  function schedule(delay) {
    clearTimeout(state.timer);
    state.timer = setTimeout(() => tick(false), delay);
  }

  /** One refresh now (`force`: even while paused), then every POLL_MS unless paused. */
  async function tick(force) {
    if (!state.token || (state.paused && force !== true)) return;
    if (state.busy) {
      state.again = true; // refresh once more as soon as the running one ends
      return;
    }
    state.busy = true;
    const began = Date.now();
    const generation = state.generation;
    try {
      await refresh();
      status(state.paused ? 'paused' : `updated ${new Date().toLocaleTimeString()}`, state.paused ? 'paused' : 'ok');
    } catch (e) {
      if (e instanceof AuthError) {
        signOut(e.message);
        return;
      }
      if (generation === state.generation) status(`refresh failed: ${e.message} — retrying`, 'error');
    } finally {
      if (generation === state.generation) state.busy = false;
    }
    if (generation !== state.generation) return;
    if (state.again) {
      state.again = false;
      clearTimeout(state.timer);
      state.timer = setTimeout(() => tick(true), 0);
    } else if (!state.paused) {
      schedule(Math.max(200, POLL_MS - (Date.now() - began)));
    }
  }

  async function refresh() {
    const queues = await api('GET', 'admin/queues');
    const now = Date.now();
    renderQueues(queues.queues || [], now);
    const names = state.queueNames;
    const [workers, failures, tenants, ...dead] = await Promise.all([
      api('GET', 'admin/workers'),
      api('GET', 'admin/failures'),
      api('GET', 'admin/tenants'),
      ...names.map((q) => api('GET', `admin/queues/${encodeURIComponent(q)}/dead`)),
    ]);
    renderWorkers(workers.workers || []);
    renderQuarantined(workers.quarantined || []);
    renderTenants(tenants.tenants || []);
    renderFailures(failures.jobs || []);
    renderDead(names.map((q, i) => ({ queue: q, jobs: dead[i].jobs || [] })));
  }

  // ---------------------------------------------------------------------------------------
  // Queues and charts

  function renderQueues(queues, now) {
    state.queueNames = queues.map((q) => q.queue);
    for (const q of queues) {
      const waiting = (q.waiting && q.waiting.total) || 0;
      const h = state.history.get(q.queue) || [];
      h.push({ t: now, waiting, inFlight: q.inFlight || 0, delayed: q.delayed || 0, dead: q.dead || 0 });
      while (h.length && h[0].t < now - WINDOW_MS) h.shift();
      state.history.set(q.queue, h);
    }
    sync(
      $('queues-body'),
      queues,
      (q) => q.queue,
      (q) =>
        el(
          'tr',
          { 'data-testid': `queue-row-${q.queue}` },
          el('th', { scope: 'row', 'data-testid': `queue-name-${q.queue}` }),
          el('td', { class: 'num' },
            el('span', { class: 'big', 'data-testid': `waiting-${q.queue}` }),
            ' ',
            el('span', { class: 'muted', 'data-testid': `waiting-lanes-${q.queue}` })),
          el('td', { class: 'num', 'data-testid': `inflight-${q.queue}` }),
          el('td', { class: 'num', 'data-testid': `delayed-${q.queue}` }),
          el('td', { class: 'num', 'data-testid': `dead-${q.queue}` }),
          el('td', { class: 'num', 'data-testid': `workers-${q.queue}` }),
          el('td', { class: 'num', 'data-testid': `oldest-${q.queue}` }),
          el('td', { class: 'num', 'data-testid': `warm-${q.queue}` }),
        ),
      (row, q) => {
        const w = q.waiting || {};
        const cells = row.children;
        setText(cells[0], q.queue);
        setText(cells[1].children[0], num(w.total));
        setText(cells[1].children[1], `(${num(w.high)} / ${num(w.normal)})`);
        setText(cells[2], num(q.inFlight));
        setText(cells[3], num(q.delayed));
        setText(cells[4], num(q.dead));
        cells[4].classList.toggle('alert', Number(q.dead) > 0);
        setText(cells[5], num(q.liveWorkers));
        const oldest = q.oldestWaitMs ? maxOf(q.oldestWaitMs.high, q.oldestWaitMs.normal) : null;
        setText(cells[6], oldest === null ? '—' : duration(oldest));
        setText(cells[7], warmHits(q.routedClaims));
      },
      emptyRow(8, 'no queues'),
    );
    sync(
      $('charts'),
      queues,
      (q) => q.queue,
      (q) =>
        el(
          'figure',
          { class: 'chart' },
          el('figcaption', { text: q.queue }),
          el('canvas', {
            'data-testid': `chart-${q.queue}`,
            role: 'img',
            'aria-label': `${q.queue}: jobs waiting, in flight, delayed and dead over the last 5 minutes`,
          }),
        ),
      () => {},
    );
    drawCharts();
  }

  function drawCharts() {
    const now = Date.now();
    for (const fig of $('charts').children) {
      const canvas = fig.querySelector('canvas');
      if (canvas) drawChart(canvas, state.history.get(fig.dataset.key) || [], now);
    }
  }

  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const pow = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 5, 10]) if (m * pow >= v) return m * pow;
    return 10 * pow;
  }

  function drawChart(canvas, samples, now) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const css = getComputedStyle(document.documentElement);
    const color = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const pad = { l: 44, r: 12, t: 10, b: 22 };
    const pw = w - pad.l - pad.r;
    const ph = h - pad.t - pad.b;
    if (pw <= 10 || ph <= 10) return;

    let max = 0;
    for (const s of samples) for (const series of SERIES) max = Math.max(max, s[series.key]);
    const top = niceCeil(max);
    const step = top <= 5 ? 1 : top / 5;
    const x = (t) => pad.l + pw * (1 - (now - t) / WINDOW_MS);
    const y = (v) => pad.t + ph * (1 - v / top);

    ctx.font = `11px ${css.fontFamily || 'sans-serif'}`;
    ctx.lineWidth = 1;
    ctx.strokeStyle = color('--grid', '#e3e6ea');
    ctx.fillStyle = color('--muted', '#6b7280');
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let v = 0; v <= top + 1e-9; v += step) {
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.l, yy);
      ctx.lineTo(pad.l + pw, yy);
      ctx.stroke();
      ctx.fillText(String(Math.round(v * 100) / 100), pad.l - 6, yy);
    }
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (let m = 5; m >= 0; m -= 1) {
      const xx = Math.round(x(now - m * 60000)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(xx, pad.t);
      ctx.lineTo(xx, pad.t + ph);
      ctx.stroke();
      ctx.textAlign = m === 5 ? 'left' : m === 0 ? 'right' : 'center';
      ctx.fillText(m === 0 ? 'now' : `−${m} min`, xx, pad.t + ph + 5);
    }

    if (samples.length === 0) {
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText('waiting for data…', pad.l + pw / 2, pad.t + ph / 2);
      return;
    }
    ctx.save();
    ctx.beginPath();
    ctx.rect(pad.l, pad.t - 2, pw + 1, ph + 4);
    ctx.clip();
    ctx.lineJoin = 'round';
    ctx.lineCap = 'round';
    // Dead first, waiting last: the busiest line stays on top.
    for (const series of [...SERIES].reverse()) {
      ctx.strokeStyle = color(series.color, '#333');
      ctx.fillStyle = ctx.strokeStyle;
      ctx.lineWidth = 2;
      ctx.beginPath();
      let prev = null;
      for (const s of samples) {
        const px = x(s.t);
        const py = y(s[series.key]);
        // A gap in polling (tab asleep, paused, dispatcher down) is left blank.
        if (prev === null || s.t - prev > 3 * POLL_MS) ctx.moveTo(px, py);
        else ctx.lineTo(px, py);
        prev = s.t;
      }
      ctx.stroke();
      const last = samples[samples.length - 1];
      ctx.beginPath();
      ctx.arc(x(last.t), y(last[series.key]), 2.5, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.restore();
  }

  // ---------------------------------------------------------------------------------------
  // Workers

  function jobLink(id) {
    return el('button', {
      type: 'button',
      class: 'link mono',
      title: 'show this job',
      'data-job-id': id,
      text: id,
      onclick: () => searchJob(id),
    });
  }

  // Tenants with a weight or cap of their own (PUT /admin/tenants/{tenant}); any other has
  // weight 1 and the configured default cap.
  function renderTenants(tenants) {
    sync(
      $('tenants-body'),
      tenants,
      (t) => t.tenant,
      (t) =>
        el(
          'tr',
          { 'data-testid': `tenant-${t.tenant}` },
          el('td', { class: 'mono', text: t.tenant }),
          el('td', { class: 'num' }),
          el('td', { class: 'num' }),
        ),
      (row, t) => {
        setText(row.children[1], String(t.weight));
        setText(row.children[2], t.maxInFlight == null ? 'default' : String(t.maxInFlight));
      },
      emptyRow(3, 'every tenant has weight 1 and the default cap'),
    );
  }

  // Routed claims (ADR 0020): the share whose model was already loaded, of how many.
  function warmHits(r) {
    const total = r ? (r.warmHits || 0) + (r.modelLoads || 0) : 0;
    if (!total) return '—';
    return `${Math.round((100 * r.warmHits) / total)} % of ${num(total)}`;
  }

  // What a worker advertises: its GPU and memory, then what it has loaded and how many loads.
  function profileText(p) {
    if (!p) return '—';
    const slots = p.slots === 1 ? '1 slot' : `${num(p.slots)} slots`;
    const gpu = [p.gpu, p.vramGb ? `${num(p.vramGb)} GiB` : null, slots]
      .filter(Boolean)
      .join(' · ');
    const loaded = p.loaded && p.loaded.length ? p.loaded.join(', ') : 'nothing loaded';
    const loads = p.modelLoads === 1 ? '1 load' : `${num(p.modelLoads)} loads`;
    return `${gpu} — ${loaded} (${loads})`;
  }

  function renderWorkers(workers) {
    sync(
      $('workers-body'),
      workers,
      (w) => `${w.queue}/${w.consumer}`,
      (w) =>
        el(
          'tr',
          { 'data-testid': `worker-${w.consumer}` },
          el('td', { text: w.queue }),
          el(
            'td',
            {},
            el('span', { class: 'mono', text: w.consumer }),
            ' ',
            el('span', { class: 'badge quarantined', 'data-testid': `quarantined-${w.consumer}`, text: 'quarantined', hidden: true }),
          ),
          el('td', { 'data-testid': `profile-${w.consumer}` }),
          el('td', { class: 'num' }),
          el('td', {}, el('ul', { class: 'held' })),
        ),
      (row, w) => {
        // Quarantined: it claims nothing until released; why (and the evidence) below.
        const sick = typeof w.quarantined === 'string';
        const badge = row.children[1].children[1];
        badge.hidden = !sick;
        badge.title = sick ? `quarantined: ${w.quarantined}` : '';
        setText(row.children[2], profileText(w.profile));
        setText(row.children[3], `${duration(w.lastSeenMsAgo)} ago`);
        sync(
          row.children[4].firstChild,
          w.jobs || [],
          (j) => j.jobId,
          (j) =>
            el(
              'li',
              { 'data-testid': `held-${j.jobId}` },
              jobLink(j.jobId),
              ' ',
              el('span', { class: 'muted' }),
            ),
          (li, j) =>
            setText(
              li.children[1],
              `attempt ${num(j.attempt)} · held ${duration(j.heldForMs)} · lease ${duration(j.leaseExpiresInMs)} left`,
            ),
          () => el('li', { class: 'muted', text: 'idle' }),
        );
      },
      emptyRow(5, 'no live workers'),
    );
  }

  // Quarantined workers (ADR 0019), live or not: why, the failed attempts that decided it,
  // and their release.
  function renderQuarantined(list) {
    sync(
      $('quarantined-body'),
      list,
      (q) => `${q.queue}/${q.consumer}`,
      (q) =>
        el(
          'tr',
          { 'data-testid': `quarantined-row-${q.consumer}` },
          el('td', { text: q.queue }),
          el('td', { class: 'mono', text: q.consumer }),
          el('td', { class: 'nowrap' }),
          el('td', {}),
          el('td', {}, el('ul', { class: 'held' })),
          el(
            'td',
            { class: 'actions' },
            el('button', {
              type: 'button',
              'data-testid': `release-${q.consumer}`,
              text: 'Release',
              onclick: (e) => release(q.consumer, q.queue, e.currentTarget),
            }),
          ),
        ),
      (row, q) => {
        setText(row.children[2], when(q.since));
        setText(row.children[3], q.reason);
        sync(
          row.children[4].firstChild,
          Array.isArray(q.evidence) ? q.evidence : [],
          (a) => `${a.jobId}/${a.attempt}`,
          (a) =>
            el(
              'li',
              { 'data-testid': `evidence-${q.consumer}-${a.jobId}-${a.attempt}` },
              a.jobId ? jobLink(a.jobId) : el('span', { class: 'muted', text: '—' }),
              ' ',
              el('span', { class: 'muted' }),
              ' ',
              el('span', { class: 'error-text' }),
            ),
          (li, a) => {
            setText(li.children[1], `attempt ${num(a.attempt)}${a.jobType ? ` · ${a.jobType}` : ''} · ${when(a.finishedAt)}`);
            setText(li.children[2], clip(a.error, 200) || '—');
            li.children[2].title = a.error || '';
          },
          () => el('li', { class: 'muted', text: 'no attempts recorded' }),
        );
      },
      emptyRow(6, 'no quarantined workers'),
    );
  }

  async function release(consumer, queue, button) {
    const sent = await confirmedPost(
      button,
      `Release worker ${consumer}? It may claim from ${queue} again, and its failures so far no longer count against it.`,
      `admin/workers/${encodeURIComponent(consumer)}/release`,
      (body) => `Worker ${consumer} released: it may claim from ${body.queue || queue} again.`,
      `Release of ${consumer} failed`,
    );
    if (sent) tick(true);
  }

  // ---------------------------------------------------------------------------------------
  // Failures

  function renderFailures(jobs) {
    sync(
      $('failures-body'),
      jobs,
      (j) => j.jobId,
      (j) =>
        el(
          'tr',
          { 'data-testid': `failure-${j.jobId}` },
          el('td', { class: 'nowrap' }),
          el('td', {}, jobLink(j.jobId)),
          el('td', { text: j.jobType }),
          el('td', { text: j.queue }),
          el('td', { class: 'num' }),
          el('td', { class: 'error-text' }),
        ),
      (row, j) => {
        setText(row.children[0], when(j.completedAt));
        setText(row.children[4], num(j.attempts));
        setText(row.children[5], clip(j.errorMessage) || '—');
        row.children[5].title = j.errorMessage || '';
      },
      emptyRow(6, 'no failed jobs'),
    );
  }

  // ---------------------------------------------------------------------------------------
  // Dead letters

  function renderDead(lists) {
    sync(
      $('dead-lists'),
      lists,
      (l) => l.queue,
      (l) =>
        el(
          'div',
          { class: 'dead-queue', 'data-testid': `dead-list-${l.queue}` },
          el('h3', {}, el('span', { text: l.queue }), ' ', el('span', { class: 'count' })),
          el(
            'div',
            { class: 'table-wrap' },
            el(
              'table',
              {},
              el(
                'thead',
                {},
                el(
                  'tr',
                  {},
                  el('th', { scope: 'col', text: 'died' }),
                  el('th', { scope: 'col', text: 'job' }),
                  el('th', { scope: 'col', text: 'type' }),
                  el('th', { scope: 'col', class: 'num', text: 'max attempts' }),
                  el('th', { scope: 'col', text: 'error' }),
                  el('th', { scope: 'col', class: 'actions', text: 'actions' }),
                ),
              ),
              el('tbody', {}),
            ),
          ),
        ),
      (section, l) => {
        setText(section.querySelector('.count'), `(${l.jobs.length}${l.jobs.length >= 100 ? '+' : ''})`);
        section.classList.toggle('empty', l.jobs.length === 0);
        sync(
          section.querySelector('tbody'),
          l.jobs,
          (j) => j.jobId,
          (j) =>
            el(
              'tr',
              { 'data-testid': `dead-row-${j.jobId}` },
              el('td', { class: 'nowrap' }),
              el('td', {}, jobLink(j.jobId)),
              el('td', {}),
              el('td', { class: 'num' }),
              el('td', { class: 'error-text' }),
              el(
                'td',
                { class: 'actions' },
                el('button', {
                  type: 'button',
                  'data-testid': `requeue-${j.jobId}`,
                  text: 'Requeue',
                  onclick: (e) => act('requeue', j.jobId, e.currentTarget),
                }),
                ' ',
                el('button', {
                  type: 'button',
                  class: 'danger',
                  'data-testid': `discard-${j.jobId}`,
                  text: 'Delete',
                  onclick: (e) => act('discard', j.jobId, e.currentTarget),
                }),
              ),
            ),
          (row, j) => {
            const env = j.envelope && typeof j.envelope === 'object' ? j.envelope : {};
            setText(row.children[0], when(j.diedAtMs));
            setText(row.children[2], env.job_type || '—');
            setText(row.children[3], num(env.max_attempts));
            setText(row.children[4], clip(j.error) || '—');
            row.children[4].title = j.error || '';
          },
          emptyRow(6, 'no dead jobs'),
        );
      },
    );
  }

  /**
   * Asks `question`; once confirmed, disables the buttons of `button`'s row, POSTs `path`
   * (no body) and flashes `done(answer)` or `failure: <why>` (the buttons come back then).
   * Returns false when nothing was sent or the token was refused (the page signed out);
   * true when the caller should refresh.
   */
  async function confirmedPost(button, question, path, done, failure) {
    if (!window.confirm(question)) return false;
    const row = button.closest('tr');
    const buttons = row ? row.querySelectorAll('button') : [button];
    for (const b of buttons) b.disabled = true;
    try {
      flash(done(await api('POST', path)), 'ok');
    } catch (e) {
      if (e instanceof AuthError) {
        signOut(e.message);
        return false;
      }
      flash(`${failure}: ${e.message}`, 'error');
      for (const b of buttons) b.disabled = false;
    }
    return true;
  }

  async function act(kind, jobId, button) {
    const requeue = kind === 'requeue';
    const sent = await confirmedPost(
      button,
      requeue
        ? `Requeue job ${jobId}? It goes back to the front of its queue with its attempts reset.`
        : `Delete job ${jobId} from the dead-letter set for good? Its record stays "failed".`,
      `admin/jobs/${encodeURIComponent(jobId)}/${kind}`,
      () => (requeue ? `Job ${jobId} requeued.` : `Job ${jobId} deleted from the dead-letter set.`),
      `${requeue ? 'Requeue' : 'Delete'} of ${jobId} failed`,
    );
    if (!sent) return;
    if ($('job-result').dataset.jobId === jobId) searchJob(jobId);
    tick(true);
  }

  // ---------------------------------------------------------------------------------------
  // Job search

  function field(label, value, testid) {
    return [el('dt', { text: label }), el('dd', { 'data-testid': testid, text: value })];
  }

  function renderJob(body) {
    const job = body.job || {};
    const images = body.images || [];
    const videos = body.videos || [];
    const statusBadge = el('span', {
      class: `badge status-${String(job.status).replace(/[^a-z]/g, '')}`,
      'data-testid': 'job-status',
      text: job.status,
    });
    const dl = el(
      'dl',
      { class: 'job' },
      el('dt', { text: 'status' }),
      el('dd', {}, statusBadge),
      ...field('id', job.id, 'job-id'),
      ...field('type', job.jobType, 'job-type'),
      ...field('queue', job.queue, 'job-queue'),
      // Sent to a hosted provider's queue instead of its own, and why (ADR 0017).
      ...(job.routed ? field('routed', job.routed.replace(/_/g, ' '), 'job-routed') : []),
      ...field('attempts', `${num(job.attempts)} of ${num(job.maxAttempts)}`, 'job-attempts'),
      ...field('user', job.userId, 'job-user'),
      ...field('created', when(job.createdAt), 'job-created'),
      ...field('started', when(job.startedAt), 'job-started'),
      ...field('finished', when(job.completedAt), 'job-completed'),
      ...field('worker', job.workerId || '—', 'job-worker'),
      ...field('error', job.errorMessage || '—', 'job-error'),
      ...field('prompt', job.prompt || '—', 'job-prompt'),
      ...(job.enhancedPrompt ? field('enhanced prompt', job.enhancedPrompt, 'job-enhanced') : []),
      ...field('outputs', `${images.length} image(s), ${videos.length} video(s)`, 'job-outputs'),
    );
    const raw = el('details', {}, el('summary', { text: 'raw record' }), el('pre', { text: JSON.stringify(body, null, 2) }));
    return [dl, raw];
  }

  let searchSeq = 0;
  async function searchJob(id) {
    id = String(id || '').trim();
    if (!id) return;
    $('job-search-input').value = id;
    const out = $('job-result');
    out.dataset.jobId = id;
    const seq = ++searchSeq;
    out.replaceChildren(el('p', { class: 'muted', text: 'looking up…' }));
    try {
      const body = await api('GET', `v1/jobs/${encodeURIComponent(id)}`);
      if (seq === searchSeq) out.replaceChildren(...renderJob(body));
    } catch (e) {
      if (e instanceof AuthError) {
        signOut(e.message);
        return;
      }
      if (seq !== searchSeq) return;
      const text = e.status === 404 ? `No job with id ${id}.` : `Lookup failed: ${e.message}`;
      out.replaceChildren(el('p', { class: 'error', 'data-testid': 'job-error-message', text }));
    }
    out.scrollIntoView({ block: 'nearest' });
  }

  // ---------------------------------------------------------------------------------------
  // Credits: a tenant's account and ledger (GET /admin/tenants/{tenant}/credits)

  let creditsSeq = 0;
  async function showCredits(tenant) {
    tenant = String(tenant || '').trim();
    if (!tenant) return;
    const out = $('credits-result');
    const seq = ++creditsSeq;
    out.replaceChildren(el('p', { class: 'muted', text: 'looking up…' }));
    try {
      const body = await api('GET', `admin/tenants/${encodeURIComponent(tenant)}/credits`);
      if (seq === creditsSeq) out.replaceChildren(...renderCredits(body));
    } catch (e) {
      if (e instanceof AuthError) {
        signOut(e.message);
        return;
      }
      if (seq !== creditsSeq) return;
      out.replaceChildren(el('p', { class: 'error', 'data-testid': 'credits-error', text: `Lookup failed: ${e.message}` }));
    }
  }

  function renderCredits(body) {
    const a = body.account;
    const summary = el('p', {
      'data-testid': 'credits-account',
      text: `${body.tenant}: balance ${a.balance}, held ${a.held}, available ${a.available}`,
    });
    const rows = (body.ledger || []).map((e) =>
      el(
        'tr',
        { 'data-testid': `ledger-${e.id}` },
        el('td', { text: new Date(e.createdAt).toLocaleString() }),
        el('td', { text: e.kind }),
        el('td', {}, e.jobId ? jobLink(e.jobId) : el('span', { text: '' })),
        el('td', { class: 'num', text: String(e.balanceDelta) }),
        el('td', { class: 'num', text: String(e.heldDelta) }),
        el('td', { text: e.reason || '' }),
      ),
    );
    if (rows.length === 0) rows.push(emptyRow(6, 'no ledger entries')());
    const head = el(
      'tr',
      {},
      ...['when', 'kind', 'job', 'balance Δ', 'held Δ', 'reason'].map((h) =>
        el('th', { scope: 'col', class: h.endsWith('Δ') ? 'num' : '', text: h }),
      ),
    );
    const table = el('table', { 'data-testid': 'ledger-table' }, el('thead', {}, head), el('tbody', {}, ...rows));
    return [summary, el('div', { class: 'table-wrap' }, table)];
  }

  // ---------------------------------------------------------------------------------------
  // Wiring

  function init() {
    $('login-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const token = $('token-input').value.trim();
      if (/[^\x21-\x7e]/.test(token)) showLogin('That is not a token: bearer tokens are printable ASCII without spaces.');
      else if (token) signIn(token);
    });
    $('logout-button').addEventListener('click', () => signOut('Signed out.'));
    $('pause-button').addEventListener('click', () => {
      state.paused = !state.paused;
      setText($('pause-button'), state.paused ? 'Resume' : 'Pause');
      if (state.paused) {
        clearTimeout(state.timer);
        status('paused', 'paused');
      } else tick();
    });
    $('job-search-form').addEventListener('submit', (e) => {
      e.preventDefault();
      searchJob($('job-search-input').value);
    });
    $('credits-form').addEventListener('submit', (e) => {
      e.preventDefault();
      showCredits($('credits-input').value);
    });
    window.addEventListener('resize', drawCharts);
    // Time moves on between polls too (e.g. while paused): keep the x axis honest.
    setInterval(() => {
      if (state.token) drawCharts();
    }, 10000);

    let saved = null;
    try {
      saved = sessionStorage.getItem(TOKEN_KEY);
    } catch (_) {
      saved = null;
    }
    if (saved) {
      state.token = saved;
      start();
    } else showLogin('');
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();

// The chorus dashboard's pages, and its performance reports. No framework: the view the
// path names is rebuilt from the latest snapshot at most once per animation frame.
(function () {
  'use strict';

  // ---- helpers -------------------------------------------------------------------
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('data-')) el.setAttribute(k, String(v));
      else if (k === 'style') el.setAttribute('style', v);
      else el[k] = v;
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  function bytes(n) {
    if (!n) return '0 B';
    const u = ['B', 'kB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return (i === 0 ? n : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)) + ' ' + u[i];
  }
  function dur(us) {
    if (us < 1000) return us.toFixed(0) + ' µs';
    if (us < 1e6) return (us / 1000).toFixed(us < 1e4 ? 2 : 1) + ' ms';
    if (us < 6e7) return (us / 1e6).toFixed(2) + ' s';
    return (us / 6e7).toFixed(1) + ' min';
  }
  function ago(nowUs, thenUs) { return thenUs ? dur(Math.max(0, nowUs - thenUs)) + ' ago' : '—'; }
  function hue(name) {
    let x = 2166136261;
    for (let i = 0; i < name.length; i++) { x ^= name.charCodeAt(i); x = Math.imul(x, 16777619); }
    return (x >>> 0) % 360;
  }
  function color(name) { return 'hsl(' + hue(name) + ', 62%, 52%)'; }
  function groupDone(g) { return g.memory + g.released + g.forgotten; }
  function groupTotal(g) { return g.waiting + g.queued + g.processing + groupDone(g) + g.erred + g.forgotten_erred; }
  function section(title, note, ...body) {
    return h('section', {}, h('h2', {}, title, note ? h('small', { text: note }) : null), ...body);
  }

  // ---- state ---------------------------------------------------------------------
  const report = document.body.dataset.mode === 'report';
  const view = report ? 'report' : (location.pathname.replace(/^\/+|\/+$/g, '') || 'status');
  const STREAM_WINDOW_US = 10e6;
  const KEEP_US = 60e6;
  const state = { snap: null, events: [], seen: 0, received: 0, lastMessage: 0 };

  function absorb(snap) {
    state.snap = snap;
    state.lastMessage = Date.now();
    for (const e of snap.events) {
      if (e.seq < state.seen) continue;
      state.events.push(e);
      state.seen = e.seq + 1;
      state.received++;
    }
    const horizon = snap.now_us - KEEP_US;
    let drop = 0;
    while (drop < state.events.length && state.events[drop].start_us + state.events[drop].micros < horizon) drop++;
    if (drop > 0) state.events.splice(0, drop);
    if (state.events.length > 50000) state.events.splice(0, state.events.length - 50000);
  }

  // ---- the task stream ------------------------------------------------------------
  // One row per worker thread, a bar per run coloured by function, its input fetch in
  // red and its read of spilled inputs in orange before it, failures in black; a row
  // per worker that spilled, with its writes to disk in orange.
  const SPILL_LANE = 4294967295;
  const isRun = (e) => e.kind !== 'spill';
  function streamCanvas(snap, events, t0, t1, width) {
    const rows = [];
    const threads = new Map();
    for (const w of snap.workers) for (let t = 0; t < w.nthreads; t++) threads.set(w.id + ':' + t, [w.id, t]);
    for (const e of events) if (!threads.has(e.worker + ':' + e.thread)) threads.set(e.worker + ':' + e.thread, [e.worker, e.thread]);
    for (const v of threads.values()) rows.push(v);
    rows.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    const index = new Map(rows.map((r, i) => [r[0] + ':' + r[1], i]));
    const rowH = 16, left = 90, top = 4, bottom = 18;
    const height = top + Math.max(1, rows.length) * rowH + bottom;
    const c = h('canvas', { id: 'stream', width: width, height: height });
    c.style.height = height + 'px';
    const g = c.getContext('2d');
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = '#6b7280';
    rows.forEach((r, i) => g.fillText('worker ' + r[0] + ' · ' + (r[1] === SPILL_LANE ? 'disk' : r[1]), 4, top + i * rowH + 11));
    const span = Math.max(1, t1 - t0);
    const x = (t) => left + (t - t0) / span * (width - left - 4);
    let drawn = 0;
    for (const e of events) {
      const end = e.start_us + e.micros;
      if (end < t0 || e.start_us > t1) continue;
      const i = index.get(e.worker + ':' + e.thread);
      const y = top + i * rowH + 2;
      if (!isRun(e)) {
        g.fillStyle = '#f59e0b';
        const sx = x(e.start_us);
        g.fillRect(sx, y, Math.max(1, x(end) - sx), rowH - 4);
        drawn++;
        continue;
      }
      if (e.unspill_micros > 0) {
        g.fillStyle = '#f59e0b';
        const ux = x(e.start_us - e.fetch_micros - e.unspill_micros);
        g.fillRect(ux, y, Math.max(1, x(e.start_us - e.fetch_micros) - ux), rowH - 4);
      }
      if (e.fetch_micros > 0) {
        g.fillStyle = '#ef4444';
        const fx = x(e.start_us - e.fetch_micros);
        g.fillRect(fx, y, Math.max(1, x(e.start_us) - fx), rowH - 4);
      }
      const name = (snap.groups[e.group] || { name: 'task' }).name;
      g.fillStyle = e.erred ? '#111827' : color(name);
      const bx = x(e.start_us);
      g.fillRect(bx, y, Math.max(1, x(end) - bx), rowH - 4);
      drawn++;
    }
    g.fillStyle = '#6b7280';
    for (let k = 0; k <= 5; k++) {
      const t = t0 + span * k / 5;
      const label = report ? dur(t - t0) : (k === 5 ? 'now' : '-' + dur(t1 - t));
      g.fillText(label, Math.min(width - 40, x(t)), height - 4);
    }
    c.dataset.bars = drawn;
    c.dataset.rows = rows.length;
    return c;
  }

  function legend(groups) {
    return h('div', { class: 'legend' }, groups.filter(g => groupTotal(g) > 0).slice(0, 20).map(g =>
      h('span', {}, h('i', { style: 'background:' + color(g.name) }), g.name)),
      h('span', {}, h('i', { style: 'background:#ef4444' }), 'input transfer'),
      h('span', {}, h('i', { style: 'background:#f59e0b' }), 'disk (spill, read back)'),
      h('span', {}, h('i', { style: 'background:#111827' }), 'failed'));
  }

  // ---- views ---------------------------------------------------------------------
  function progress(groups) {
    const rows = groups.filter(g => groupTotal(g) > 0).map(g => {
      const total = groupTotal(g);
      const part = (n, cls) => n > 0 ? h('span', { class: cls, style: 'width:' + (100 * n / total) + '%' }) : null;
      const done = groupDone(g);
      return h('div', { class: 'row progress-row', 'data-name': g.name, 'data-done': done, 'data-total': total, 'data-erred': g.erred + g.forgotten_erred },
        h('div', { class: 'name', title: g.name, text: g.name }),
        h('div', { class: 'bar' }, part(g.memory, 'memory'), part(g.released + g.forgotten, 'released'), part(g.processing, 'processing'),
          part(g.queued, 'queued'), part(g.waiting, 'waiting'), part(g.erred + g.forgotten_erred, 'erred')),
        h('div', { class: 'num' }, done + ' / ' + total + ' (' + Math.floor(100 * done / total) + '%)',
          g.erred + g.forgotten_erred ? h('span', { class: 'state-failed', text: ' · ' + (g.erred + g.forgotten_erred) + ' erred' }) : null));
    });
    return section('Progress per function', 'done · processing · queued · waiting · erred',
      rows.length ? rows : h('div', { class: 'muted', text: 'No tasks yet.' }));
  }

  function memory(snap) {
    const top = Math.max(1, ...snap.workers.map(w => w.memory_limit || w.rss * 1.25));
    const rows = snap.workers.map(w => {
      const limit = w.memory_limit || top;
      return h('div', { class: 'row memory-row', 'data-worker': w.id, 'data-rss': w.rss, 'data-stored': w.stored, 'data-spilled': w.spilled },
        h('div', { class: 'name', text: 'worker ' + w.id }),
        h('div', { class: 'bar' }, h('span', { class: 'stored', style: 'width:' + Math.min(100, 100 * w.stored / limit) + '%' }),
          h('span', { class: 'rss', style: 'width:' + Math.max(0, Math.min(100, 100 * (w.rss - w.stored) / limit)) + '%' })),
        h('div', { class: 'num', text: 'RSS ' + bytes(w.rss) + (w.memory_limit ? ' of ' + bytes(w.memory_limit) : '') + ' · stored ' + bytes(w.stored) + (w.spilled || w.spills ? ' · spilled ' + bytes(w.spilled) + ' (' + w.spills + ' out, ' + w.unspills + ' back)' : '') + (w.spill_error ? ' · cannot spill: ' + w.spill_error : '') }));
    });
    return section('Memory per worker', 'stored results · process RSS · spilled to disk' + (snap.workers.some(w => w.memory_limit) ? ' · against its limit' : ''),
      rows.length ? rows : h('div', { class: 'muted', text: 'No workers.' }));
  }

  function cpu(snap) {
    const rows = snap.workers.map(w => h('div', { class: 'row cpu-row', 'data-worker': w.id, 'data-cpu': w.cpu_percent.toFixed(0) },
      h('div', { class: 'name', text: 'worker ' + w.id }),
      h('div', { class: 'bar' }, h('span', { class: 'cpu', style: 'width:' + Math.min(100, w.cpu_percent / Math.max(1, w.nthreads)) + '%' })),
      h('div', { class: 'num', text: w.cpu_percent.toFixed(0) + '% (' + w.nthreads + ' threads)' })));
    return section('CPU per worker', 'percent of one core', rows.length ? rows : h('div', { class: 'muted', text: 'No workers.' }));
  }

  function statusView(snap, main) {
    const t1 = state.events.reduce((m, e) => Math.max(m, e.start_us + e.micros), snap.now_us);
    const t0 = t1 - STREAM_WINDOW_US;
    const width = Math.max(400, main.clientWidth - 30);
    const recent = state.events.filter(e => e.start_us + e.micros >= t0);
    const t = snap.totals;
    main.append(section('Task stream', recent.filter(isRun).length + ' runs in the last 10 s · ' + t.finished + ' finished, ' + t.failed + ' failed, ' +
        t.transfers + ' transfers (' + bytes(t.transfer_bytes) + ') in all',
      streamCanvas(snap, recent, t0, t1, width), legend(snap.groups)));
    main.append(progress(snap.groups));
    main.append(h('div', { class: 'grid2' }, memory(snap), cpu(snap)));
  }

  function workersView(snap, main) {
    const head = ['worker', 'host', 'pid', 'threads', 'resources', 'memory limit', 'RSS', 'stored', 'spilled', 'objects', 'sent', 'received', 'running', 'CPU', 'last heartbeat'];
    const rows = snap.workers.map(w => h('tr', { class: 'worker-row', 'data-worker': w.id },
      [w.id, w.host, w.pid, w.nthreads, w.resources.map(r => r[0] + '=' + r[1]).join(', ') || '—', w.memory_limit ? bytes(w.memory_limit) : 'none',
        bytes(w.rss), bytes(w.stored), bytes(w.spilled), w.objects, bytes(w.sent), bytes(w.received), w.processing, w.cpu_percent.toFixed(0) + '%',
        ago(snap.now_us, w.last_heartbeat_us)].map(v => h('td', { text: v }))));
    main.append(section('Workers', snap.workers.length + ' connected',
      h('table', {}, h('thead', {}, h('tr', {}, head.map(x => h('th', { text: x })))), h('tbody', {}, rows))));
    const gone = snap.departed.slice().reverse().map(w => h('tr', { class: 'departed-row', 'data-worker': w.id },
      h('td', { text: w.id }), h('td', { text: w.host }), h('td', { text: w.pid }), h('td', { text: ago(snap.now_us, w.left_us) }),
      h('td', { class: 'wrap', text: w.reason })));
    main.append(section('Workers that left', snap.departed.length + ' (the latest 100)', gone.length ?
      h('table', {}, h('thead', {}, h('tr', {}, ['worker', 'host', 'pid', 'left', 'why'].map(x => h('th', { text: x })))), h('tbody', {}, gone))
      : h('div', { class: 'muted', text: 'None.' })));
  }

  function rankWait(r) {
    if (!r.wait) return r.state === 'running' ? 'running its own code' : '';
    const w = r.wait;
    return 'waiting ' + dur(w.waited_ms * 1000) + ' in ' + w.call + ' for rank ' + w.peer + ', ' + w.peer_state;
  }

  function spmdView(snap, main) {
    if (!snap.spmd.length) {
      main.append(section('SPMD jobs', '', h('div', { class: 'muted', text: 'No SPMD jobs yet: client.spmd(...) and run_on_all(...) start them.' })));
      return;
    }
    for (const job of snap.spmd.slice().reverse()) {
      const rows = job.ranks.map(r => h('tr', { class: 'rank-row', 'data-job': job.job, 'data-rank': r.rank, 'data-state': r.state,
          'data-waiting-for': r.wait ? r.wait.peer : null },
        h('td', { text: r.rank }), h('td', { text: r.host || '—' }), h('td', { text: r.pid || '—' }), h('td', { text: r.worker || '—' }),
        h('td', { class: 'state-' + r.state, text: r.state }), h('td', { text: r.collectives }),
        h('td', { class: 'wrap' + (r.wait ? ' waiting-for' : ''), text: rankWait(r) })));
      main.append(section(job.name, job.size + ' ranks · ' + job.state + ' · started ' + ago(snap.now_us, job.started_us) + ' · job ' + job.job,
        job.error ? h('div', { class: 'error job-error', text: job.error }) : null,
        h('table', { class: 'spmd-job', 'data-job': job.job, 'data-state': job.state },
          h('thead', {}, h('tr', {}, ['rank', 'host', 'pid', 'worker', 'state', 'collectives', 'now'].map(x => h('th', { text: x })))),
          h('tbody', {}, rows))));
    }
  }

  function queriesView(snap, main) {
    if (!snap.queries.length) {
      main.append(section('Queries', '', h('div', { class: 'muted', text: 'No DataFrame queries yet.' })));
      return;
    }
    for (const q of snap.queries.slice().reverse()) {
      main.append(section(q.label, (q.micros ? dur(q.micros) : 'running') + ' · ' + q.rows + ' rows',
        q.error ? h('div', { class: 'error', text: q.error }) : null,
        h('pre', { class: 'plan', text: q.plan }),
        h('div', { class: 'grid2' },
          h('table', {}, h('thead', {}, h('tr', {}, h('th', { text: 'stage' }), h('th', { text: 'time' }))),
            h('tbody', {}, q.stages.map(s => h('tr', {}, h('td', { text: s.name }), h('td', { text: dur(s.micros) }))))),
          h('table', {}, h('thead', {}, h('tr', {}, h('th', { text: 'exchange' }), h('th', { text: 'rows' }), h('th', { text: 'bytes' }))),
            h('tbody', {}, q.exchanges.map(x => h('tr', {}, h('td', { text: x.name }), h('td', { text: x.rows }), h('td', { text: bytes(x.bytes) }))))))));
    }
  }

  function memoryChart(snap, width) {
    const height = 160, left = 60, bottom = 18;
    const c = h('canvas', { id: 'memory-chart', width: width, height: height });
    c.style.height = height + 'px';
    const g = c.getContext('2d');
    const samples = snap.memory;
    if (!samples.length) return c;
    const t0 = samples[0].at_us, t1 = Math.max(t0 + 1, samples[samples.length - 1].at_us);
    const top = Math.max(1, ...samples.map(s => s.rss));
    const byWorker = new Map();
    for (const s of samples) { if (!byWorker.has(s.worker)) byWorker.set(s.worker, []); byWorker.get(s.worker).push(s); }
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = '#6b7280';
    g.fillText(bytes(top), 2, 12);
    g.fillText(dur(t1 - t0), width - 50, height - 4);
    for (const [w, list] of byWorker) {
      g.strokeStyle = color('worker ' + w);
      g.beginPath();
      list.forEach((s, i) => {
        const x = left + (s.at_us - t0) / (t1 - t0) * (width - left - 4);
        const y = (height - bottom) - s.rss / top * (height - bottom - 16);
        if (i) g.lineTo(x, y); else g.moveTo(x, y);
      });
      g.stroke();
      g.fillStyle = color('worker ' + w);
      for (const s of list) {
        const x = left + (s.at_us - t0) / (t1 - t0) * (width - left - 4);
        const y = (height - bottom) - s.rss / top * (height - bottom - 16);
        g.fillRect(x - 2, y - 2, 4, 4);
      }
      g.fillStyle = color('worker ' + w);
      g.fillText('worker ' + w, 2, 28 + 14 * w);
    }
    return c;
  }

  function reportView(snap, main) {
    const all = snap.events;
    const ev = all.filter(isRun);
    const t0 = all.reduce((m, e) => Math.min(m, e.start_us - e.fetch_micros - (e.unspill_micros || 0)), Infinity);
    const t1 = all.reduce((m, e) => Math.max(m, e.start_us + e.micros), 0);
    const period = ev.length ? t1 - t0 : 0;
    const t = snap.totals;
    main.append(section(document.body.dataset.title || 'chorus performance report', 'written ' + new Date(snap.now_us / 1000).toLocaleString(),
      h('table', {}, h('tbody', {},
        [['runs', ev.length], ['period', dur(period)], ['failed', ev.filter(e => e.erred).length],
          ['transfers', ev.filter(e => e.fetched > 0).length + ' (' + bytes(ev.reduce((s, e) => s + e.fetched, 0)) + ')'],
          ['spilled', bytes(all.filter(e => !isRun(e)).reduce((s, e) => s + e.size, 0)) + ' written, ' +
            bytes(ev.reduce((s, e) => s + (e.unspilled || 0), 0)) + ' read back'],
          ['workers', snap.workers.length], ['scheduler', snap.cluster.address || '—']]
          .map(([k, v]) => h('tr', {}, h('th', { text: k }), h('td', { text: v })))))));
    main.append(section('Task stream', ev.length + ' runs', streamCanvas(snap, all, t0, t1, Math.max(600, main.clientWidth - 30)), legend(snap.groups)));
    const per = new Map();
    for (const e of ev) {
      const name = (snap.groups[e.group] || { name: 'task' }).name;
      const p = per.get(name) || { runs: 0, failed: 0, micros: 0, max: 0, bytes: 0, fetched: 0 };
      p.runs++; p.failed += e.erred ? 1 : 0; p.micros += e.micros; p.max = Math.max(p.max, e.micros); p.bytes += e.size; p.fetched += e.fetched;
      per.set(name, p);
    }
    const rows = [...per.entries()].sort((a, b) => b[1].micros - a[1].micros).map(([name, p]) => h('tr', { class: 'function-row', 'data-name': name, 'data-runs': p.runs },
      [name, p.runs, p.failed, dur(p.micros), dur(p.micros / p.runs), dur(p.max), bytes(p.bytes), bytes(p.fetched)].map(v => h('td', { text: v }))));
    main.append(section('Per function', '',
      h('table', {}, h('thead', {}, h('tr', {}, ['function', 'runs', 'failed', 'total time', 'mean', 'longest', 'result bytes', 'inputs fetched'].map(x => h('th', { text: x })))),
        h('tbody', {}, rows))));
    main.append(section('Worker memory over the period', 'RSS once a second', memoryChart(snap, Math.max(600, main.clientWidth - 30))));
  }

  // ---- frame ---------------------------------------------------------------------
  const views = { status: statusView, workers: workersView, spmd: spmdView, queries: queriesView, report: reportView };
  const names = { status: 'Status', workers: 'Workers', spmd: 'SPMD jobs', queries: 'Queries' };

  function header(snap) {
    const facts = snap ? snap.workers.length + ' workers · ' + snap.totals.tasks + ' tasks · ' + (snap.cluster.address || snap.cluster.kind) : 'connecting…';
    return h('header', {}, h('span', { class: 'brand', text: 'chorus' }),
      report ? h('span', { text: 'performance report' }) :
        h('nav', {}, Object.entries(names).map(([k, v]) => h('a', { href: '/' + k + location.search, class: k === view ? 'active' : '', text: v }))),
      h('span', { class: 'facts', id: 'facts', text: facts }));
  }

  let scheduled = false;
  function render() {
    scheduled = false;
    const snap = state.snap;
    const main = h('main', { id: 'view', 'data-view': view });
    document.body.replaceChildren(header(snap), main);
    if (!snap) return;
    (views[view] || statusView)(snap, main);
    document.body.dataset.updates = (Number(document.body.dataset.updates || 0) + 1).toString();
  }
  function schedule() {
    if (!scheduled) { scheduled = true; requestAnimationFrame(render); }
  }

  if (report) {
    const data = JSON.parse(document.getElementById('chorus-data').textContent);
    absorb(data);
    state.events = data.events;
    render();
    window.addEventListener('resize', schedule);
    return;
  }
  render();
  const source = new EventSource('/api/stream?since=0');
  source.addEventListener('snapshot', (m) => { absorb(JSON.parse(m.data)); schedule(); });
  source.onerror = () => { const f = document.getElementById('facts'); if (f) { f.textContent = 'disconnected: retrying…'; f.classList.add('stale'); } };
  window.addEventListener('resize', schedule);
})();

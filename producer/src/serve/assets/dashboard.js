// oms dashboard: polls the JSON API every 2 s and renders with DOM APIs only (textContent,
// never innerHTML: customer names and errors come from imported files). No framework, no
// build step; runs under `Content-Security-Policy: default-src 'self'`.
(function () {
  'use strict';
  var POLL_MS = 2000;
  var WINDOW_SECS = 900;
  var TOKEN_KEY = 'oms-api-token';
  var $ = function (id) { return document.getElementById(id); };
  var money = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  var count = new Intl.NumberFormat();
  var lastThroughput = [];

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

  function api(method, path) {
    var headers = { 'Accept': 'application/json' };
    if (token()) { headers['Authorization'] = 'Bearer ' + token(); }
    return fetch(path, { method: method, headers: headers, cache: 'no-store' }).then(function (r) {
      return r.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (e) { body = { error: text, code: 'bad_json' }; }
        if (!r.ok) {
          var err = new Error((body && body.error) || ('HTTP ' + r.status));
          err.status = r.status;
          throw err;
        }
        return body;
      });
    });
  }

  // Control, bidi-override and zero-width characters shown as ⟨U+XXXX⟩: an RTL override
  // cannot turn a name around, an invisible character cannot hide in one.
  var HIDDEN = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]/g;
  function visible(s) {
    if (typeof s !== 'string') { return s; }
    return s.replace(HIDDEN, function (c) {
      return '\u27e8U+' + ('000' + c.charCodeAt(0).toString(16).toUpperCase()).slice(-4) + '\u27e9';
    });
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') { node.textContent = visible(attrs[k]); }
      else if (k === 'title') { node.setAttribute('title', visible(attrs[k])); }
      else if (k === 'class') { node.className = attrs[k]; }
      else if (k === 'style') { Object.assign(node.style, attrs[k]); }
      else { node.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { if (c) { node.appendChild(c); } });
    return node;
  }

  function fill(tbody, rows, columns, emptyText) {
    tbody.replaceChildren();
    if (!rows.length) {
      tbody.appendChild(el('tr', {}, [el('td', { class: 'empty', colspan: String(columns), text: emptyText })]));
      return;
    }
    rows.forEach(function (r) { tbody.appendChild(r); });
  }

  function showMessage(text, info) {
    var m = $('message');
    if (!text) { m.hidden = true; return; }
    m.textContent = text;
    m.className = info ? 'message info' : 'message';
    m.hidden = false;
  }

  function duration(ms) {
    if (ms < 1000) { return ms + ' ms'; }
    if (ms < 60000) { return (ms / 1000).toFixed(1) + ' s'; }
    if (ms < 3600000) { return Math.floor(ms / 60000) + ' m ' + Math.floor(ms / 1000) % 60 + ' s'; }
    return Math.floor(ms / 3600000) + ' h ' + Math.floor(ms / 60000) % 60 + ' m';
  }

  function utcToday() { return new Date().toISOString().slice(0, 10); }

  // ---------- renderers ----------

  function renderQueue(q) {
    $('q-length').textContent = count.format(q.length);
    $('q-lag').textContent = q.lag === null ? 'unknown' : count.format(q.lag);
    $('q-pending').textContent = count.format(q.pending);
    $('q-dead').textContent = count.format(q.dead_letters);
    var state = $('queue-state');
    state.textContent = q.paused ? 'paused' : 'running';
    state.className = 'pill ' + (q.paused ? 'paused' : 'running');
    var toggle = $('pause-toggle');
    if (!toggle.dataset.busy) { toggle.checked = q.paused; }
    fill($('consumers'), q.consumers.map(function (c) {
      return el('tr', {}, [
        el('td', { text: c.name }),
        el('td', { class: 'num', text: count.format(c.pending) }),
        el('td', { class: 'num', text: duration(c.idle_ms) })
      ]);
    }), 3, 'no consumer has joined the group');
  }

  function renderKpis(today, total, stats) {
    $('kpi-today-count').textContent = count.format(today.order_count);
    $('kpi-today-revenue').textContent = money.format(Number(today.revenue));
    $('kpi-today-aov').textContent = money.format(Number(today.average_order_value));
    $('kpi-total-count').textContent = count.format(total.order_count);
    $('kpi-total-revenue').textContent = money.format(Number(total.revenue));
    $('kpi-failed').textContent = count.format(stats.failed_total);
    var reasons = Object.keys(stats.failed).sort(function (a, b) { return stats.failed[b] - stats.failed[a]; });
    var max = reasons.length ? stats.failed[reasons[0]] : 0;
    var box = $('reasons');
    box.replaceChildren();
    if (!reasons.length) { box.appendChild(el('div', { class: 'muted', text: 'no failed order' })); }
    reasons.forEach(function (r) {
      var n = stats.failed[r];
      box.appendChild(el('div', { class: 'reason' }, [
        el('span', { text: r.replace(/_/g, ' ') }),
        el('span', { class: 'num', text: count.format(n) }),
        el('div', { class: 'bar' }, [el('span', { class: 'bad', style: { width: (100 * n / max) + '%' } })])
      ]));
    });
  }

  function renderImports(list) {
    var box = $('imports');
    box.replaceChildren();
    if (!list.length) { box.appendChild(el('div', { class: 'muted', text: 'no import yet' })); return; }
    list.slice(0, 5).forEach(function (i) {
      var base = Math.max(i.enqueued, 1);
      var failed = i.failed_total + i.dead;
      var pct = function (n) { return Math.min(100, 100 * n / base) + '%'; };
      var done = i.completed + failed + i.duplicates;
      var name = i.file_name.split('/').pop();
      var state = i.done ? 'done' : i.status;
      box.appendChild(el('div', { class: 'import', 'data-import-id': String(i.id) }, [
        el('div', { class: 'import-head' }, [
          el('span', { class: 'import-name', text: '#' + i.id + ' ' + name, title: i.file_name }),
          el('span', { class: 'muted', text: state })
        ]),
        el('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': String(i.enqueued), 'aria-valuenow': String(done) }, [
          el('span', { class: 'ok', style: { width: pct(i.completed) } }),
          el('span', { class: 'bad', style: { width: pct(failed) } }),
          el('span', { class: 'dup', style: { width: pct(i.duplicates) } })
        ]),
        el('div', { class: 'import-foot', text:
          count.format(done) + ' / ' + count.format(i.enqueued) + ' done · ' +
          count.format(i.completed) + ' completed · ' + count.format(failed) + ' failed · ' +
          count.format(i.rejected) + ' rejected' +
          (i.rate_per_sec && !i.done ? ' · ' + i.rate_per_sec.toFixed(0) + '/s' : '') +
          (i.eta_secs && !i.done ? ' · eta ' + duration(Math.round(i.eta_secs * 1000)) : '') })
      ]));
    });
  }

  function renderLeaderboard(board) {
    fill($('leaderboard'), board.top.map(function (e) {
      return el('tr', {}, [
        el('td', { class: 'num', text: String(e.rank) }),
        el('td', { class: 'who' }, [el('div', { text: e.name || e.email, title: e.name }), el('div', { class: 'muted', text: e.name ? e.email : '', title: e.email })]),
        el('td', { class: 'num', text: count.format(e.orders_count) }),
        el('td', { class: 'num', text: money.format(Number(e.total_spent)) })
      ]);
    }), 4, 'no customer yet');
  }

  function renderDead(list) {
    $('dead-total').textContent = list.total ? count.format(list.total) + (list.total === 1 ? ' row' : ' rows') : '';
    $('retry-all').disabled = $('purge').disabled = !list.total;
    fill($('dead'), list.dead_letters.map(function (d) {
      var retry = el('button', { type: 'button', class: 'small', 'data-retry': d.id, text: 'Retry' });
      retry.addEventListener('click', function () { act('POST', '/api/failed/' + encodeURIComponent(d.id) + '/retry', 'retried ' + (d.identity || d.id)); });
      var error = d.error.length > 160 ? d.error.slice(0, 159) + '…' : d.error;
      return el('tr', { 'data-dead-id': d.id }, [
        el('td', { text: d.identity || '(undecodable)' }),
        el('td', { class: 'hide-narrow', text: d.import_id + ' · ' + d.line }),
        el('td', { class: 'err', text: error, title: d.error }),
        el('td', { class: 'num hide-narrow', text: String(d.attempts) }),
        el('td', { class: 'num' }, [retry])
      ]);
    }), 5, 'no dead letter');
  }

  // ---------- chart ----------

  function niceMax(v) {
    if (v <= 5) { return 5; }
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) { if (steps[i] * p >= v) { return steps[i] * p; } }
    return 10 * p;
  }

  // A cleared 2-D context of `canvas` at the device's pixel ratio, and its CSS size.
  function canvasContext(canvas) {
    var dpr = window.devicePixelRatio || 1;
    var w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    var ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    return { ctx: ctx, w: w, h: h };
  }

  function drawChart(points) {
    var canvas = $('chart');
    var c = canvasContext(canvas);
    var ctx = c.ctx, w = c.w, h = c.h;
    var style = getComputedStyle(document.documentElement);
    var colors = { ok: style.getPropertyValue('--ok').trim(), bad: style.getPropertyValue('--bad').trim(),
      line: style.getPropertyValue('--line').trim(), muted: style.getPropertyValue('--muted').trim() };
    var left = 44, right = 8, top = 8, bottom = 22;
    var pw = w - left - right, ph = h - top - bottom;
    var now = Math.floor(Date.now() / 1000);
    var start = now - WINDOW_SECS + 1;
    var byAt = {};
    points.forEach(function (p) { byAt[p.at] = p; });
    var completed = [], failed = [], max = 0;
    for (var t = start; t <= now; t++) {
      var p = byAt[t] || { completed: 0, failed: 0 };
      completed.push(p.completed); failed.push(p.failed);
      max = Math.max(max, p.completed, p.failed);
    }
    var ymax = niceMax(max);
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillStyle = colors.muted;
    ctx.strokeStyle = colors.line;
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (var g = 0; g <= 4; g++) {
      var gy = top + ph - ph * g / 4;
      ctx.beginPath(); ctx.moveTo(left, Math.round(gy) + 0.5); ctx.lineTo(left + pw, Math.round(gy) + 0.5); ctx.stroke();
      ctx.fillText(count.format(ymax * g / 4), left - 6, gy);
    }
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    [15, 10, 5, 0].forEach(function (m) {
      var x = left + pw * (1 - m * 60 / WINDOW_SECS);
      ctx.fillText(m ? '−' + m + ' min' : 'now', Math.min(Math.max(x, left + 16), left + pw - 12), top + ph + 6);
    });
    function series(values, color, fill) {
      var n = values.length;
      var x = function (i) { return left + pw * i / (n - 1); };
      var y = function (v) { return top + ph - ph * v / ymax; };
      ctx.beginPath();
      for (var i = 0; i < n; i++) { if (i) { ctx.lineTo(x(i), y(values[i])); } else { ctx.moveTo(x(i), y(values[i])); } }
      ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.stroke();
      if (fill) {
        ctx.lineTo(x(n - 1), top + ph); ctx.lineTo(x(0), top + ph); ctx.closePath();
        ctx.globalAlpha = 0.18; ctx.fillStyle = color; ctx.fill(); ctx.globalAlpha = 1;
      }
    }
    series(completed, colors.ok, true);
    series(failed, colors.bad, false);
    var sum = function (a) { return a.reduce(function (s, v) { return s + v; }, 0); };
    // Figures for tests and screen readers.
    canvas.dataset.completed = String(sum(completed));
    canvas.dataset.failed = String(sum(failed));
    canvas.setAttribute('aria-label', 'completed ' + sum(completed) + ', failed ' + sum(failed) + ' in the last 15 minutes');
    var recent = function (a) { return sum(a.slice(-10)) / 10; };
    $('rate-completed').textContent = recent(completed).toFixed(1);
    $('rate-failed').textContent = recent(failed).toFixed(1);
  }

  // ---------- actions ----------

  function act(method, path, done) {
    if (!token()) { showMessage('Enter the API token (OMS_API_TOKEN) at the top to use actions.'); return Promise.resolve(); }
    return api(method, path).then(function (body) {
      showMessage(done + (body && body.kept && body.kept.length ? ' (' + body.kept.length + ' kept)' : ''), true);
      return refresh();
    }).catch(function (e) {
      showMessage(e.message + (e.status === 401 ? ' — check the token' : ''));
    });
  }

  // ---------- history (its own poll, every 30 s) ----------

  var historyMinutes = 60;
  function drawHistory(points) {
    var c = canvasContext($('history'));
    var ctx = c.ctx, w = c.w, h = c.h;
    var style = getComputedStyle(document.documentElement);
    var color = function (name) { return style.getPropertyValue(name).trim(); };
    var left = 44, right = 44, top = 8, bottom = 22;
    var pw = w - left - right, ph = h - top - bottom, n = Math.max(points.length, 2);
    var ymax = niceMax(Math.max.apply(null, points.map(function (p) { return p.completed + p.failed; }).concat([1])));
    var lmax = niceMax(Math.max.apply(null, points.map(function (p) { return p.lag || 0; }).concat([1])));
    ctx.fillStyle = color('--muted');
    ctx.font = '11px system-ui, sans-serif';
    ctx.fillText(count.format(ymax), 2, top + 10);
    ctx.fillText(count.format(lmax), w - right + 4, top + 10);
    ctx.fillText(historyMinutes === 60 ? '1 h ago' : '24 h ago', left, h - 6);
    ctx.fillText('now', w - right - 20, h - 6);
    var x = function (i) { return left + pw * i / (n - 1); };
    function line(values, max, stroke) {
      ctx.beginPath();
      ctx.strokeStyle = stroke;
      ctx.lineWidth = 1.5;
      values.forEach(function (v, i) {
        var y = top + ph - ph * (v || 0) / max;
        if (i === 0) { ctx.moveTo(x(i), y); } else { ctx.lineTo(x(i), y); }
      });
      ctx.stroke();
    }
    line(points.map(function (p) { return p.completed; }), ymax, color('--ok'));
    line(points.map(function (p) { return p.failed; }), ymax, color('--bad'));
    line(points.map(function (p) { return p.lag; }), lmax, color('--muted'));
  }
  function refreshHistory() {
    return api('GET', '/api/orders/history?minutes=' + historyMinutes)
      .then(drawHistory)
      .catch(function () { /* the main poll reports errors */ });
  }

  // ---------- audit log (its own poll: one failing panel leaves the others) ----------

  function refreshAudit() {
    return api('GET', '/api/audit?limit=10').then(function (log) {
      fill($('audit'), log.entries.map(function (e) {
        return el('tr', { 'data-audit-id': String(e.id) }, [
          el('td', { text: e.at.replace('T', ' ').replace('Z', '') }),
          el('td', { text: e.actor }),
          el('td', { text: e.action }),
          el('td', { class: e.outcome === 'ok' ? '' : 'err', text: e.outcome }),
          el('td', { class: 'hide-narrow', text: e.arguments })
        ]);
      }), 5, 'no action recorded yet');
    }).catch(function () { /* the main poll reports errors */ });
  }

  // ---------- polling ----------

  // A panel that could not be read says so on its own card; the others render anyway.
  function markPanel(anchorId, err) {
    var section = $(anchorId).closest('section');
    var note = section.querySelector('.panel-error');
    if (!err) {
      if (note) { note.remove(); }
      delete section.dataset.error;
      return;
    }
    if (!note) {
      note = el('p', { class: 'panel-error', role: 'status' });
      section.appendChild(note);
    }
    note.textContent = 'unavailable: ' + visible(err.message);
    section.dataset.error = String(err.status || 'network');
  }

  // Each panel is read and drawn on its own: one failing endpoint never blanks the others.
  var PANELS = [
    ['q-length', function () { return api('GET', '/api/queue').then(renderQueue); }],
    ['kpi-today-count', function () {
      return Promise.all([
        api('GET', '/api/kpis/daily/' + utcToday()),
        api('GET', '/api/kpis/total'),
        api('GET', '/api/orders/stats')
      ]).then(function (r) { renderKpis(r[0], r[1], r[2]); });
    }],
    ['chart', function () {
      return api('GET', '/api/orders/throughput?window=' + WINDOW_SECS).then(function (t) {
        lastThroughput = t;
        drawChart(lastThroughput);
      });
    }],
    ['imports', function () { return api('GET', '/api/imports?limit=5').then(renderImports); }],
    ['leaderboard', function () { return api('GET', '/api/leaderboard?limit=10').then(renderLeaderboard); }],
    ['dead', function () { return api('GET', '/api/failed?limit=20').then(renderDead); }]
  ];

  var inFlight = false;
  function refresh() {
    if (inFlight) { return Promise.resolve(); }
    inFlight = true;
    return Promise.all(PANELS.map(function (p) {
      return p[1]().then(function () { markPanel(p[0], null); return null; },
        function (e) { markPanel(p[0], e); return e; });
    })).then(function (errors) {
      var failed = errors.filter(Boolean);
      var when = 'updated ' + new Date().toLocaleTimeString();
      $('updated').textContent = failed.length
        ? when + ' · ' + failed.length + (failed.length === 1 ? ' panel' : ' panels') + ' unavailable'
        : when;
      if (failed.some(function (e) { return e.status === 401; })) {
        showMessage('This server needs the API token for reads too: enter it at the top.');
      }
      document.body.dataset.loaded = 'true';
    }).then(function () { inFlight = false; });
  }

  function init() {
    var input = $('token');
    input.value = token();
    input.addEventListener('change', function () {
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      showMessage('');
      refresh();
    });
    $('pause-toggle').addEventListener('change', function (ev) {
      var toggle = ev.target;
      var pause = toggle.checked;
      toggle.dataset.busy = '1';
      act('POST', pause ? '/api/queue/pause' : '/api/queue/resume', pause ? 'queue paused' : 'queue resumed')
        .then(function () { delete toggle.dataset.busy; return refresh(); });
    });
    $('retry-all').addEventListener('click', function () { act('POST', '/api/failed/retry', 'retried every dead letter'); });
    $('purge').addEventListener('click', function () {
      if (window.confirm('Delete every dead letter? This cannot be undone.')) { act('DELETE', '/api/failed', 'dead letters purged'); }
    });
    window.addEventListener('resize', function () { drawChart(lastThroughput); });
    refresh();
    setInterval(refresh, POLL_MS);
    refreshAudit();
    setInterval(refreshAudit, POLL_MS);
    ['history-1h', 'history-24h'].forEach(function (id) {
      $(id).addEventListener('click', function (ev) {
        historyMinutes = Number(ev.target.dataset.minutes);
        $('history-1h').setAttribute('aria-pressed', String(historyMinutes === 60));
        $('history-24h').setAttribute('aria-pressed', String(historyMinutes === 1440));
        refreshHistory();
      });
    });
    refreshHistory();
    setInterval(refreshHistory, 30000);
  }

  document.addEventListener('DOMContentLoaded', init);
}());

// webhookd console. Plain JavaScript, no framework and no build step: the binary embeds this
// file as it is. It talks only to the public REST API of the same origin, with the key the user
// signed in with, which lives in this tab's sessionStorage and nowhere else (never in a URL, a
// cookie or the page). Everything that comes from the API is put on the page as text
// (textContent, createTextNode): no HTML is ever built from data.
'use strict';

(() => {
  const API = document.querySelector('meta[name="webhookd-api-base"]').content;
  const VERSION = document.querySelector('meta[name="webhookd-version"]').content;
  const KEY = 'webhookd.console.key';
  const ROLE = 'webhookd.console.role';
  const IDENTUS_TYPES = ['ConnectionUpdated', 'IssueCredentialRecordUpdated', 'PresentationUpdated', 'DIDStatusUpdated'];
  const STATES = ['pending', 'in_flight', 'retry_scheduled', 'delivered', 'exhausted', 'cancelled'];
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

  const main = document.getElementById('main');
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  const statusBox = document.getElementById('status');
  const alertBox = document.getElementById('alert');
  document.getElementById('version').textContent = 'webhookd ' + VERSION;

  // Timers of the current view (polling), stopped when the view changes.
  let timers = [];
  // Bumped at each render, so an answer that arrives for a view already left is dropped.
  let generation = 0;

  // ---- DOM building: strings become text nodes, never markup ----

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (typeof value === 'function') el.addEventListener(name.replace(/^on/, ''), value);
      else if (name === 'text') el.textContent = String(value);
      else if (value === true) el.setAttribute(name, '');
      else el.setAttribute(name, String(value));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, String(value));
    for (const child of children) {
      if (typeof child === 'string') el.append(document.createTextNode(child));
      else if (child) el.append(child);
    }
    return el;
  }

  function say(message) {
    statusBox.textContent = message || '';
  }

  function fail(message) {
    alertBox.textContent = message;
    alertBox.hidden = !message;
  }

  function field(labelText, input, hint) {
    const id = input.id || ('f-' + Math.random().toString(36).slice(2));
    input.id = id;
    return h('div', { class: 'field' },
      h('label', { for: id }, labelText, hint ? h('span', { class: 'hint' }, ' ', hint) : null),
      input);
  }

  function badge(text, cls) {
    return h('span', { class: 'badge ' + (cls || '') }, text);
  }

  function table(caption, headers, rows, attrs) {
    return h('div', { class: 'table-wrap' },
      h('table', attrs || {},
        caption ? h('caption', {}, caption) : null,
        h('thead', {}, h('tr', {}, headers.map((col) =>
          h('th', { scope: 'col', class: col.cls || null }, col.label || col)))),
        h('tbody', {}, rows)));
  }

  // ---- formatting ----

  function when(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  function short(id) {
    return id ? id.slice(0, 8) : '';
  }

  function ms(value) {
    return value === null || value === undefined ? '–' : (Math.round(value * 10) / 10) + ' ms';
  }

  function percent(rate) {
    return rate === null || rate === undefined ? '–' : (Math.round(rate * 1000) / 10) + '%';
  }

  // `datetime-local` values are read and written as UTC, as every time on the page is.
  function toInputTime(iso) {
    return iso ? new Date(iso).toISOString().slice(0, 16) : '';
  }

  function fromInputTime(value) {
    return value ? new Date(value + ':00Z').toISOString() : '';
  }

  // ---- the API ----

  class ApiError extends Error {
    constructor(status, problem, text) {
      const detail = problem && (problem.detail || problem.title);
      super(detail ? detail : ('HTTP ' + status + (text ? ': ' + text.slice(0, 200) : '')));
      this.status = status;
      this.problem = problem;
    }
  }

  function credentials() {
    return { key: sessionStorage.getItem(KEY), role: sessionStorage.getItem(ROLE) };
  }

  // `path` is under the API's base path, unless `absolute` (a page link the API gave).
  async function api(method, path, body, absolute) {
    const { key, role } = credentials();
    const headers = { accept: 'application/json' };
    if (key) headers[role === 'admin' ? 'x-admin-api-key' : 'apikey'] = key;
    const init = { method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(absolute ? path : API + path, init);
    const text = await response.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
    if (response.status === 401 && key) {
      signOut('The key was refused (401): sign in again.');
      throw new ApiError(401, json, text);
    }
    if (!response.ok) throw new ApiError(response.status, json, text);
    return { status: response.status, body: json, text, headers: response.headers };
  }

  // Runs an action from a button: shows what failed instead of throwing.
  async function attempt(action) {
    fail('');
    try {
      return await action();
    } catch (e) {
      fail(e.message || String(e));
      return undefined;
    }
  }

  // ---- sign-in ----

  function signOut(why) {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(ROLE);
    // replaceState fires no hashchange, whose handler would clear the message.
    history.replaceState(null, '', '#/signin');
    render();
    fail(why || '');
  }

  function viewSignIn() {
    nav.hidden = true;
    who.replaceChildren();
    const key = h('input', { type: 'password', id: 'signin-key', autocomplete: 'off', required: true, spellcheck: 'false' });
    const walletRole = h('input', { type: 'radio', name: 'role', value: 'wallet', id: 'role-wallet', checked: true });
    const adminRole = h('input', { type: 'radio', name: 'role', value: 'admin', id: 'role-admin' });
    const form = h('form', { class: 'card', id: 'signin-form', onsubmit: async (e) => {
      e.preventDefault();
      const role = adminRole.checked ? 'admin' : 'wallet';
      sessionStorage.setItem(KEY, key.value.trim());
      sessionStorage.setItem(ROLE, role);
      key.value = '';
      const ok = await attempt(() => api('GET', role === 'admin' ? '/system/overview' : '/events/webhooks?limit=1'));
      if (ok) {
        fail('');
        location.hash = role === 'admin' ? '#/operator' : '#/webhooks';
      } else {
        sessionStorage.removeItem(KEY);
        sessionStorage.removeItem(ROLE);
      }
    } },
      h('h1', {}, 'Sign in'),
      h('fieldset', { class: 'field' }, h('legend', {}, 'Which key'),
        h('label', { class: 'inline', for: 'role-wallet' }, walletRole, 'Wallet API key (apikey)'),
        h('label', { class: 'inline', for: 'role-admin' }, adminRole, 'Admin key (x-admin-api-key)')),
      field('Key', key, 'kept in this tab only, sent as a header'),
      h('button', { class: 'primary', type: 'submit', id: 'signin-submit' }, 'Sign in'));
    main.replaceChildren(h('div', { class: 'signin' }, form));
    key.focus();
  }

  function chrome(role) {
    const links = role === 'admin'
      ? [['#/operator', 'Overview'], ['#/wallets', 'Wallets']]
      : [['#/webhooks', 'Webhooks'], ['#/deliveries', 'Deliveries']];
    const current = location.hash.split('?')[0];
    nav.replaceChildren(...links.map(([href, text]) =>
      h('a', { href, 'aria-current': current === href ? 'page' : null }, text)));
    nav.hidden = false;
    who.replaceChildren(
      badge(role === 'admin' ? 'operator' : 'wallet', 'ok'),
      h('button', { type: 'button', id: 'signout', onclick: () => signOut('') }, 'Sign out'));
  }

  // ---- routing ----

  function route() {
    const [path, query] = (location.hash.slice(1) || '/').split('?');
    return { path, params: new URLSearchParams(query || '') };
  }

  function go(path, params) {
    const query = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v)).toString() : '';
    const target = '#' + path + (query ? '?' + query : '');
    if (location.hash === target) render();
    else location.hash = target;
  }

  async function render() {
    generation += 1;
    timers.forEach(clearInterval);
    timers = [];
    say('');
    const { key, role } = credentials();
    const { path, params } = route();
    if (!key) {
      viewSignIn();
      return;
    }
    chrome(role);
    const views = role === 'admin'
      ? { '/operator': viewOperator, '/wallets': viewWallets }
      : { '/webhooks': viewWebhooks, '/deliveries': viewDeliveries };
    const view = views[path] || Object.values(views)[0];
    const mine = generation;
    try {
      await view(params, () => mine === generation);
    } catch (e) {
      if (mine === generation) fail(e.message || String(e));
    }
  }

  // ---- webhooks (wallet) ----

  async function listWebhooks() {
    const all = [];
    let next = '/events/webhooks?limit=1000';
    let absolute = false;
    while (next) {
      const page = (await api('GET', next, undefined, absolute)).body;
      all.push(...page.contents);
      next = page.next;
      absolute = true;
    }
    return all;
  }

  async function viewWebhooks(params, current) {
    const webhooks = await listWebhooks();
    if (!current()) return;
    const list = h('div', { id: 'webhook-list' });
    const span = params.get('window') === '24h' ? '24h' : '1h';
    main.replaceChildren(
      h('h1', {}, 'Webhooks'),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'primary', id: 'new-webhook', onclick: () => {
          const at = document.getElementById('webhook-editor');
          at.replaceChildren(webhookForm(null));
          at.querySelector('input').focus();
        } }, 'New webhook'),
        h('span', { class: 'hint' }, 'Charts: '),
        h('a', { href: '#/webhooks?window=1h', 'aria-current': span === '1h' ? 'true' : null }, 'last hour'),
        h('a', { href: '#/webhooks?window=24h', 'aria-current': span === '24h' ? 'true' : null }, 'last day')),
      h('div', { id: 'webhook-editor' }),
      list);
    if (webhooks.length === 0) {
      list.append(h('p', { class: 'hint', id: 'no-webhooks' }, 'No webhooks yet. Register one to receive this wallet\'s events.'));
    }
    for (const webhook of webhooks) list.append(webhookCard(webhook, span));
    say(webhooks.length + ' webhook' + (webhooks.length === 1 ? '' : 's'));
  }

  function policyText(policy) {
    if (!policy) return 'service default';
    const parts = [policy.kind];
    if (policy.name) parts.push(policy.name);
    if (policy.intervalMs) parts.push('every ' + policy.intervalMs + ' ms');
    if (policy.initialMs) parts.push(policy.initialMs + '–' + policy.capMs + ' ms');
    if (policy.delaysMs) parts.push('delays ' + policy.delaysMs.join(', ') + ' ms');
    if (policy.maxAttempts) parts.push(policy.maxAttempts + ' attempts');
    return parts.join(', ');
  }

  function webhookCard(webhook, span) {
    const stats = h('div', { class: 'stats', 'data-webhook': webhook.id }, h('p', { class: 'hint' }, 'Loading statistics…'));
    const panel = h('div', { class: 'panel' });
    const card = h('section', { class: 'card webhook', id: 'webhook-' + webhook.id, 'aria-label': 'Webhook ' + webhook.url },
      h('h2', { class: 'url' }, webhook.url),
      h('div', { class: 'actions' },
        badge(webhook.enabled ? 'enabled' : 'disabled', webhook.enabled ? 'ok' : 'bad'),
        webhook.ordered ? badge('ordered') : null,
        webhook.rateLimit ? badge(webhook.rateLimit + '/s') : null,
        h('span', { class: 'breaker' })),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Id'), h('dd', { class: 'mono' }, webhook.id),
        h('dt', {}, 'Event types'), h('dd', {}, webhook.eventTypes ? webhook.eventTypes.join(', ') : 'all'),
        h('dt', {}, 'Retry policy'), h('dd', {}, policyText(webhook.retryPolicy)),
        h('dt', {}, 'Custom headers'), h('dd', { class: 'custom-headers' },
          Object.keys(webhook.customHeaders || {}).length === 0 ? 'none'
            : Object.entries(webhook.customHeaders).map(([name, value]) => h('div', { class: 'mono' }, name + ': ' + value))),
        h('dt', {}, 'Created'), h('dd', {}, when(webhook.createdAt))),
      stats,
      h('div', { class: 'actions' },
        h('a', { class: 'button', href: '#/deliveries?webhookId=' + webhook.id }, 'Deliveries'),
        h('button', { type: 'button', class: 'edit', onclick: () => panel.replaceChildren(webhookForm(webhook)) }, 'Edit'),
        h('button', { type: 'button', class: 'toggle', onclick: () => attempt(async () => {
          await api('PATCH', '/events/webhooks/' + webhook.id, { enabled: !webhook.enabled });
          say(webhook.enabled ? 'Webhook disabled' : 'Webhook enabled');
          render();
        }) }, webhook.enabled ? 'Disable' : 'Enable'),
        h('button', { type: 'button', class: 'test', onclick: () => sendTest(webhook, panel) }, 'Send test event'),
        h('button', { type: 'button', class: 'rotate', onclick: () => confirmThen(panel, 'Rotate the signing secret? The old one keeps signing for the grace period.', 'Rotate', () => rotate(webhook, panel)) }, 'Rotate secret'),
        h('button', { type: 'button', class: 'bulk', onclick: () => panel.replaceChildren(bulkForm(webhook)) }, 'Redeliver exhausted…'),
        h('button', { type: 'button', class: 'delete danger', onclick: () => confirmThen(panel, 'Delete this webhook? Its unfinished deliveries are cancelled.', 'Delete', async () => {
          await api('DELETE', '/events/webhooks/' + webhook.id);
          say('Webhook deleted');
          render();
        }) }, 'Delete')),
      panel);
    loadStats(webhook, span, stats, card.querySelector('.breaker'));
    return card;
  }

  function confirmThen(panel, question, verb, action) {
    panel.replaceChildren(h('div', { class: 'card confirm', role: 'group', 'aria-label': 'Confirm' },
      h('p', {}, question),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'danger confirm-yes', onclick: () => attempt(action) }, verb),
        h('button', { type: 'button', class: 'confirm-no', onclick: () => panel.replaceChildren() }, 'Cancel'))));
    panel.querySelector('.confirm-yes').focus();
  }

  async function loadStats(webhook, span, into, breakerSlot) {
    let stats;
    try {
      stats = (await api('GET', '/events/webhooks/' + webhook.id + '/stats?window=' + span)).body;
    } catch (e) {
      into.replaceChildren(h('p', { class: 'hint' }, 'Statistics unavailable: ' + e.message));
      return;
    }
    const t = stats.totals;
    breakerSlot.replaceChildren(badge('breaker ' + stats.breaker.replace('_', '-'), 'breaker-' + stats.breaker));
    const label = span === '1h' ? 'last hour' : 'last day';
    into.replaceChildren(
      h('div', { class: 'tiles' },
        tile(percent(t.successRate), 'success, ' + label, 'success-rate'),
        tile(t.attempts, 'attempts, ' + label, 'attempts'),
        tile(ms(t.avgLatencyMs), 'mean latency (max ' + ms(t.maxLatencyMs) + ')', 'latency'),
        tile(stats.backlog, 'waiting deliveries', 'backlog')),
      h('div', { class: 'charts' },
        barChart('Attempts per ' + (stats.bucketSeconds >= 3600 ? 'hour' : (stats.bucketSeconds / 60) + ' minutes') + ' (green: succeeded, red: failed)',
          stats.buckets.map((b) => [b.succeeded, b.failed]), stats.buckets, (b) => b.attempts + ' attempts, ' + b.failed + ' failed'),
        barChart('Mean latency per bucket',
          stats.buckets.map((b) => [b.avgLatencyMs || 0]), stats.buckets, (b) => ms(b.avgLatencyMs))));
  }

  function tile(value, label, cls) {
    return h('div', { class: 'tile ' + (cls || '') }, h('div', { class: 'value' }, value), h('div', { class: 'label' }, label));
  }

  // Bars of one or two stacked series; each bar has a <title> with its figures, and the chart
  // a text summary for screen readers.
  function barChart(caption, series, buckets, describe) {
    const width = 240;
    const height = 64;
    const max = Math.max(1, ...series.map((parts) => parts.reduce((a, b) => a + b, 0)));
    const step = width / Math.max(1, series.length);
    const classes = series[0] && series[0].length === 2 ? ['bar-ok', 'bar-bad'] : ['bar-lat'];
    const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': caption });
    series.forEach((parts, i) => {
      let y = height;
      const group = svg('g', {}, svg('title', {}, when(buckets[i].start) + ': ' + describe(buckets[i])));
      parts.forEach((value, j) => {
        const barHeight = (value / max) * (height - 4);
        y -= barHeight;
        if (barHeight > 0) {
          group.append(svg('rect', { x: (i * step + 1).toFixed(1), y: y.toFixed(1), width: Math.max(1, step - 2).toFixed(1), height: barHeight.toFixed(1), class: classes[j] }));
        }
      });
      chart.append(group);
    });
    return h('figure', { class: 'chart' }, chart, h('figcaption', {}, caption));
  }

  async function sendTest(webhook, panel) {
    panel.replaceChildren(h('p', { class: 'hint' }, 'Sending a test event…'));
    const answer = await attempt(() => api('POST', '/events/webhooks/' + webhook.id + '/test'));
    if (!answer) { panel.replaceChildren(); return; }
    const r = answer.body;
    panel.replaceChildren(h('div', { class: 'card test-result' },
      h('h3', {}, 'Test event ', badge(r.delivered ? 'delivered' : 'not delivered', r.delivered ? 'ok' : 'bad')),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Event id'), h('dd', { class: 'mono' }, r.eventId),
        h('dt', {}, 'Status'), h('dd', {}, r.statusCode === undefined ? '–' : r.statusCode),
        h('dt', {}, 'Duration'), h('dd', {}, ms(r.durationMs)),
        r.error ? [h('dt', {}, 'Error'), h('dd', {}, r.error)] : null),
      r.responseBody !== undefined ? [h('h3', {}, 'Response'), h('pre', { class: 'response' }, r.responseBody)] : null));
  }

  async function rotate(webhook, panel) {
    const answer = await api('POST', '/events/webhooks/' + webhook.id + '/secret/rotate');
    showSecret(panel, answer.body.secret, 'The new signing secret, shown only now:');
  }

  function showSecret(panel, secret, text) {
    panel.replaceChildren(h('div', { class: 'card' },
      h('p', {}, text),
      h('p', { class: 'secret mono', id: 'shown-secret' }, secret),
      h('button', { type: 'button', onclick: () => panel.replaceChildren() }, 'I have saved it')));
  }

  function headersText(headers) {
    return Object.entries(headers || {}).map(([k, v]) => k + ': ' + v).join('\n');
  }

  function parseHeaders(text) {
    const out = {};
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      const at = line.indexOf(':');
      if (at <= 0) throw new Error('Custom headers: "' + line.trim() + '" is not "Name: value"');
      out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    return out;
  }

  // The registration form, or the edit form of `webhook`: only what changed is sent by a PATCH.
  function webhookForm(webhook) {
    const editing = webhook !== null;
    const url = h('input', { type: 'text', name: 'url', required: true, value: editing ? webhook.url : '', inputmode: 'url', spellcheck: 'false', size: 60 });
    const headers = h('textarea', { name: 'customHeaders', spellcheck: 'false' });
    headers.value = editing ? headersText(webhook.customHeaders) : '';
    const types = h('input', { type: 'text', name: 'eventTypes', list: 'known-types', value: editing && webhook.eventTypes ? webhook.eventTypes.join(', ') : '' });
    const policy = webhook && webhook.retryPolicy;
    const kind = h('select', { name: 'retryKind' },
      [['', 'service default'], ['preset:identus', 'Identus (3 attempts, 5 s apart)'], ['preset:standard-webhooks', 'Standard Webhooks (8 attempts, ~27.6 h)'],
        ['fixed', 'fixed interval'], ['exponential', 'exponential backoff']].map(([value, text]) => h('option', { value }, text)));
    const interval = h('input', { type: 'number', name: 'intervalMs', min: 0, value: policy && policy.intervalMs !== undefined ? policy.intervalMs : 5000 });
    const initial = h('input', { type: 'number', name: 'initialMs', min: 0, value: policy && policy.initialMs !== undefined ? policy.initialMs : 1000 });
    const cap = h('input', { type: 'number', name: 'capMs', min: 0, value: policy && policy.capMs !== undefined ? policy.capMs : 3600000 });
    const attempts = h('input', { type: 'number', name: 'maxAttempts', min: 1, max: 100, value: policy && policy.maxAttempts ? policy.maxAttempts : 5 });
    if (policy && (policy.kind === 'fixed' || policy.kind === 'exponential')) kind.value = policy.kind;
    else if (policy && policy.kind === 'preset') kind.value = 'preset:' + policy.name;
    const ordered = h('input', { type: 'checkbox', name: 'ordered', checked: editing && webhook.ordered });
    const enabled = h('input', { type: 'checkbox', name: 'enabled', checked: !editing || webhook.enabled });
    const rate = h('input', { type: 'number', name: 'rateLimit', min: 1, max: 10000, value: editing && webhook.rateLimit ? webhook.rateLimit : '' });
    const policyFields = h('div', { class: 'grid' },
      field('Interval (ms)', interval), field('First wait (ms)', initial), field('Longest wait (ms)', cap), field('Attempts', attempts));
    const showPolicy = () => {
      policyFields.classList.toggle('hidden', !(kind.value === 'fixed' || kind.value === 'exponential'));
      interval.parentElement.classList.toggle('hidden', kind.value !== 'fixed');
      initial.parentElement.classList.toggle('hidden', kind.value !== 'exponential');
      cap.parentElement.classList.toggle('hidden', kind.value !== 'exponential');
    };
    kind.addEventListener('change', showPolicy);
    const retryPolicy = () => {
      if (kind.value === '') return null;
      if (kind.value.startsWith('preset:')) return { kind: 'preset', name: kind.value.slice(7) };
      if (kind.value === 'fixed') return { kind: 'fixed', intervalMs: Number(interval.value), maxAttempts: Number(attempts.value) };
      return { kind: 'exponential', initialMs: Number(initial.value), capMs: Number(cap.value), maxAttempts: Number(attempts.value) };
    };
    const slot = h('div', {});
    const form = h('form', { class: 'card webhook-form', 'aria-label': editing ? 'Edit webhook' : 'New webhook', onsubmit: (e) => {
      e.preventDefault();
      attempt(async () => {
        const list = types.value.split(',').map((t) => t.trim()).filter(Boolean);
        const body = {
          url: url.value.trim(),
          customHeaders: parseHeaders(headers.value),
          eventTypes: list.length ? list : null,
          retryPolicy: retryPolicy(),
          ordered: ordered.checked,
          enabled: enabled.checked,
          rateLimit: rate.value ? Number(rate.value) : null,
        };
        if (editing) {
          const before = { url: webhook.url, customHeaders: webhook.customHeaders || {}, eventTypes: webhook.eventTypes || null,
            retryPolicy: webhook.retryPolicy || null, ordered: webhook.ordered, enabled: webhook.enabled, rateLimit: webhook.rateLimit || null };
          const patch = {};
          for (const [name, value] of Object.entries(body)) {
            if (JSON.stringify(value) !== JSON.stringify(before[name])) patch[name] = value;
          }
          await api('PATCH', '/events/webhooks/' + webhook.id, patch);
          say('Webhook saved');
          render();
        } else {
          for (const name of ['eventTypes', 'retryPolicy', 'rateLimit']) if (body[name] === null) delete body[name];
          const created = (await api('POST', '/events/webhooks', body)).body;
          say('Webhook registered');
          await render();
          const at = document.getElementById('webhook-editor');
          if (at) showSecret(at, created.secret, 'The signing secret of ' + created.url + ', shown only now:');
        }
      });
    } },
      h('h2', {}, editing ? 'Edit webhook' : 'New webhook'),
      field('URL', url, 'http(s), or a broker target the operator allows'),
      field('Custom headers', headers, 'one "Name: value" per line'),
      field('Event types', types, 'comma-separated; empty means every type'),
      h('datalist', { id: 'known-types' }, IDENTUS_TYPES.map((t) => h('option', { value: t }))),
      field('Retry policy', kind),
      policyFields,
      h('div', { class: 'grid' }, field('Rate limit (attempts per second)', rate, 'empty: none')),
      h('div', { class: 'field' },
        h('label', { class: 'inline' }, enabled, 'Enabled'),
        h('label', { class: 'inline' }, ordered, 'Ordered (one attempt at a time, in publish order)')),
      h('div', { class: 'actions' },
        h('button', { type: 'submit', class: 'primary' }, editing ? 'Save' : 'Register'),
        h('button', { type: 'button', onclick: () => form.remove() }, 'Cancel')),
      slot);
    showPolicy();
    return form;
  }

  function bulkForm(webhook) {
    const day = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
    const since = h('input', { type: 'datetime-local', name: 'since', required: true, value: toInputTime(day) });
    const until = h('input', { type: 'datetime-local', name: 'until', value: '' });
    const progress = h('div', { class: 'job', 'aria-live': 'polite' });
    return h('form', { class: 'card bulk-form', 'aria-label': 'Redeliver exhausted deliveries', onsubmit: (e) => {
      e.preventDefault();
      attempt(async () => {
        const body = { since: fromInputTime(since.value) };
        if (until.value) body.until = fromInputTime(until.value);
        const job = (await api('POST', '/events/webhooks/' + webhook.id + '/redeliver', body)).body;
        watchJob(webhook, job, progress);
      });
    } },
      h('h3', {}, 'Redeliver exhausted deliveries'),
      h('div', { class: 'grid' }, field('Created from (UTC)', since), field('Until (UTC)', until, 'empty: now')),
      h('button', { type: 'submit', class: 'primary' }, 'Start'),
      progress);
  }

  function showJob(job, into) {
    const bar = h('progress', { max: Math.max(1, job.total), value: job.requeued, 'aria-label': 'Requeued deliveries' });
    into.replaceChildren(
      h('p', { class: 'job-state', 'data-state': job.state },
        'Job ', h('span', { class: 'mono' }, short(job.id)), ': ', badge(job.state, job.state === 'completed' ? 'ok' : job.state === 'stopped' ? 'bad' : 'warn'),
        ' requeued ', h('span', { class: 'requeued' }, job.requeued), ' of ', h('span', { class: 'total' }, job.total),
        job.stopReason ? ' (' + job.stopReason.replace('_', ' ') + ')' : ''),
      bar);
  }

  function watchJob(webhook, job, into) {
    showJob(job, into);
    if (job.state !== 'running') return;
    const mine = generation;
    const timer = setInterval(async () => {
      if (mine !== generation) return;
      try {
        const now = (await api('GET', '/events/webhooks/' + webhook.id + '/redeliveries/' + job.id)).body;
        showJob(now, into);
        if (now.state !== 'running') clearInterval(timer);
      } catch (e) {
        clearInterval(timer);
        fail(e.message);
      }
    }, 500);
    timers.push(timer);
  }

  // ---- deliveries (wallet) ----

  // The cursors of the pages before the one shown, for "Newer"; forgotten when the filter changes.
  let pageTrail = { filter: '', cursors: [] };

  async function viewDeliveries(params, current) {
    performance.clearMarks('deliveries-rendered');
    const started = performance.now();
    const filter = {};
    for (const name of ['state', 'eventType', 'webhookId', 'since', 'until']) {
      if (params.get(name)) filter[name] = params.get(name);
    }
    const cursor = params.get('cursor') || '';
    const filterKey = JSON.stringify(filter);
    if (pageTrail.filter !== filterKey) pageTrail = { filter: filterKey, cursors: [] };

    const query = new URLSearchParams(filter);
    query.set('limit', params.get('limit') || '50');
    if (cursor) query.set('cursor', cursor);
    const [page, webhooks] = await Promise.all([
      api('GET', '/events/deliveries?' + query.toString()).then((r) => r.body),
      listWebhooks(),
    ]);
    if (!current()) return;
    const byId = new Map(webhooks.map((w) => [w.id, w]));

    const detail = h('div', { id: 'delivery-detail' });
    const rows = page.contents.map((d) => {
      const open = h('button', { type: 'button', class: 'open', 'aria-label': 'Open delivery ' + d.id, onclick: () => {
        main.querySelectorAll('tr.selected').forEach((r) => r.classList.remove('selected'));
        row.classList.add('selected');
        showDelivery(d.id, detail);
      } }, 'Open');
      const last = d.lastAttempt;
      const row = h('tr', { 'data-delivery': d.id, 'data-state': d.state },
        h('td', {}, when(d.createdAt)),
        h('td', { class: 'event-type' }, d.eventType),
        h('td', { class: 'wide-only url' }, byId.has(d.webhookId) ? byId.get(d.webhookId).url : short(d.webhookId) + ' (deleted)'),
        h('td', {}, badge(d.state.replace('_', ' '), 'state-' + d.state)),
        h('td', { class: 'num' }, d.attemptCount),
        h('td', { class: 'wide-only' }, last ? (last.statusCode !== undefined ? String(last.statusCode) : last.outcome.replace('_', ' ')) : '–'),
        h('td', {}, open));
      return row;
    });

    const next = page.next ? new URL(page.next, location.origin).searchParams.get('cursor') : null;
    const pager = h('div', { class: 'pager' },
      h('button', { type: 'button', id: 'page-first', disabled: !cursor, onclick: () => {
        pageTrail.cursors = [];
        go('/deliveries', filter);
      } }, 'Newest'),
      h('button', { type: 'button', id: 'page-newer', disabled: !cursor, onclick: () => {
        const previous = pageTrail.cursors.pop() || '';
        go('/deliveries', { ...filter, cursor: previous });
      } }, 'Newer'),
      h('button', { type: 'button', id: 'page-older', disabled: !next, onclick: () => {
        pageTrail.cursors.push(cursor);
        go('/deliveries', { ...filter, cursor: next });
      } }, 'Older'),
      h('span', { class: 'hint', id: 'page-info' }, page.contents.length + ' shown, newest first'));

    main.replaceChildren(
      h('h1', {}, 'Deliveries'),
      filterForm(filter, webhooks),
      h('div', { class: 'split' },
        h('div', {},
          table(null, ['Created (UTC)', 'Event type', { label: 'Webhook', cls: 'wide-only' }, 'State', { label: 'Attempts', cls: 'num' }, { label: 'Last result', cls: 'wide-only' }, { label: 'Details' }],
            rows.length ? rows : [h('tr', {}, h('td', { colspan: 7, id: 'no-deliveries' }, 'No delivery matches.'))],
            { id: 'deliveries', 'aria-label': 'Deliveries' }),
          pager),
        detail));
    performance.mark('deliveries-rendered');
    say(page.contents.length + ' deliveries in ' + Math.round(performance.now() - started) + ' ms');
  }

  function filterForm(filter, webhooks) {
    const state = h('select', { name: 'state', id: 'filter-state' }, h('option', { value: '' }, 'any'),
      STATES.map((s) => h('option', { value: s, selected: filter.state === s }, s.replace('_', ' '))));
    const type = h('input', { type: 'text', name: 'eventType', id: 'filter-type', list: 'filter-types', value: filter.eventType || '' });
    const webhook = h('select', { name: 'webhookId', id: 'filter-webhook' }, h('option', { value: '' }, 'any'),
      webhooks.map((w) => h('option', { value: w.id, selected: filter.webhookId === w.id }, w.url)),
      filter.webhookId && !webhooks.some((w) => w.id === filter.webhookId) ? h('option', { value: filter.webhookId, selected: true }, short(filter.webhookId) + ' (deleted)') : null);
    const since = h('input', { type: 'datetime-local', name: 'since', id: 'filter-since', value: toInputTime(filter.since) });
    const until = h('input', { type: 'datetime-local', name: 'until', id: 'filter-until', value: toInputTime(filter.until) });
    const find = h('input', { type: 'search', name: 'find', id: 'find-id', placeholder: 'delivery or event id', spellcheck: 'false' });
    return h('div', {},
      h('form', { class: 'card filters', role: 'search', 'aria-label': 'Filter deliveries', onsubmit: (e) => {
        e.preventDefault();
        go('/deliveries', { state: state.value, eventType: type.value.trim(), webhookId: webhook.value, since: fromInputTime(since.value), until: fromInputTime(until.value) });
      } },
        h('div', { class: 'grid' },
          field('State', state), field('Event type', type), field('Webhook', webhook),
          field('Created from (UTC)', since), field('Created before (UTC)', until),
          h('div', { class: 'field actions' },
            h('button', { type: 'submit', class: 'primary', id: 'filter-apply' }, 'Search'),
            h('button', { type: 'button', onclick: () => go('/deliveries', {}) }, 'Clear'))),
        h('datalist', { id: 'filter-types' }, IDENTUS_TYPES.map((t) => h('option', { value: t })))),
      h('form', { class: 'actions', role: 'search', 'aria-label': 'Find by id', onsubmit: (e) => {
        e.preventDefault();
        findById(find.value.trim());
      } }, h('label', { for: 'find-id', class: 'inline' }, 'Find by id'), find, h('button', { type: 'submit' }, 'Find')));
  }

  async function findById(id) {
    if (!UUID.test(id)) {
      fail('"' + id + '" is not a delivery or event id (a UUID)');
      return;
    }
    const detail = document.getElementById('delivery-detail');
    fail('');
    try {
      await api('GET', '/events/deliveries/' + id);
      showDelivery(id, detail);
      return;
    } catch (e) {
      if (e.status !== 404) { fail(e.message); return; }
    }
    const found = await attempt(() => api('GET', '/events/' + id + '/deliveries?limit=100'));
    if (!found) return;
    const deliveries = found.body.contents;
    detail.replaceChildren(h('div', { class: 'card' },
      h('h2', {}, 'Event ', h('span', { class: 'mono' }, id)),
      deliveries.length === 0 ? h('p', {}, 'This event has no deliveries.') : null,
      h('ul', {}, deliveries.map((d) => h('li', {},
        h('button', { type: 'button', onclick: () => showDelivery(d.id, detail) }, 'Delivery ' + short(d.id)), ' ', badge(d.state, 'state-' + d.state)))),
      await envelopeView(id)));
  }

  async function envelopeView(eventId) {
    try {
      const answer = await api('GET', '/events/' + eventId);
      return h('div', { class: 'envelope' },
        h('h3', {}, 'Envelope, as sent'),
        h('pre', { class: 'envelope-raw', tabindex: 0 }, answer.text),
        h('details', {}, h('summary', {}, 'Formatted'), h('pre', { class: 'envelope-pretty', tabindex: 0 }, JSON.stringify(answer.body, null, 2))));
    } catch (e) {
      return h('p', { class: 'hint' }, 'Envelope unavailable: ' + e.message);
    }
  }

  async function showDelivery(id, into) {
    into.replaceChildren(h('p', { class: 'hint' }, 'Loading delivery…'));
    const answer = await attempt(() => api('GET', '/events/deliveries/' + id));
    if (!answer) { into.replaceChildren(); return; }
    const d = answer.body;
    const final = d.state === 'exhausted' || d.state === 'cancelled';
    const attempts = (d.attempts || []).map((a) => h('tr', { class: 'attempt' },
      h('td', { class: 'num' }, a.number),
      h('td', {}, when(a.startedAt)),
      h('td', { class: 'num' }, ms(a.durationMs)),
      h('td', {}, a.outcome.replace('_', ' ')),
      h('td', { class: 'num' }, a.statusCode === undefined ? '–' : a.statusCode),
      h('td', {}, a.responseBody !== undefined ? h('pre', { class: 'response' }, a.responseBody) : '', a.error ? h('div', { class: 'error' }, a.error) : '')));
    into.replaceChildren(h('section', { class: 'card delivery', 'aria-label': 'Delivery ' + d.id, 'data-state': d.state },
      h('h2', { tabindex: -1 }, 'Delivery ', h('span', { class: 'mono' }, short(d.id)), ' ', badge(d.state.replace('_', ' '), 'state-' + d.state)),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Delivery'), h('dd', { class: 'mono' }, d.id),
        h('dt', {}, 'Event'), h('dd', { class: 'mono' }, d.eventId),
        h('dt', {}, 'Webhook'), h('dd', { class: 'mono' }, d.webhookId),
        h('dt', {}, 'Attempts'), h('dd', { class: 'attempt-count' }, d.attemptCount),
        d.nextAttemptAt ? [h('dt', {}, 'Next attempt'), h('dd', {}, when(d.nextAttemptAt))] : null,
        d.finishedAt ? [h('dt', {}, 'Finished'), h('dd', {}, when(d.finishedAt))] : null,
        d.cancelReason ? [h('dt', {}, 'Cancelled because'), h('dd', {}, d.cancelReason.replace(/_/g, ' '))] : null),
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'primary redeliver', disabled: !final, onclick: () => attempt(async () => {
          await api('POST', '/events/deliveries/' + d.id + '/redeliver');
          say('Delivery ' + short(d.id) + ' is due again');
          showDelivery(d.id, into);
        }) }, 'Redeliver'),
        h('button', { type: 'button', class: 'refresh', onclick: () => showDelivery(d.id, into) }, 'Refresh')),
      h('h3', {}, 'Attempts', d.attemptsTotal ? ' (the last ' + d.attempts.length + ' of ' + d.attemptsTotal + ')' : ''),
      attempts.length ? table(null, [{ label: '#', cls: 'num' }, 'Started (UTC)', { label: 'Duration', cls: 'num' }, 'Outcome', { label: 'Status', cls: 'num' }, 'Response / error'], attempts, { class: 'attempts' })
        : h('p', { class: 'hint' }, 'No attempt yet.'),
      await envelopeView(d.eventId)));
    into.querySelector('h2').focus();
  }

  // ---- operator (admin) ----

  async function viewOperator(params, current) {
    const tiles = h('div', { class: 'tiles', id: 'overview' });
    const circuits = h('div', { id: 'circuits' });
    const global = h('div', { id: 'global-webhook' });
    const wallets = h('div', { id: 'wallet-summary' });
    main.replaceChildren(h('h1', {}, 'Overview'), tiles, h('h2', {}, 'Global webhook'), global,
      h('h2', {}, 'Circuit breakers not closed'), circuits, h('h2', {}, 'Wallets'), wallets);
    const refresh = async () => {
      const [overview, ready, page] = await Promise.all([
        api('GET', '/system/overview').then((r) => r.body),
        fetch('/ready', { cache: 'no-store', credentials: 'omit' }).then((r) => r.ok).catch(() => false),
        api('GET', '/wallets?limit=100').then((r) => r.body),
      ]);
      if (!current()) return;
      tiles.replaceChildren(
        tile(ready ? 'ready' : 'not ready', 'database and migrations', 'ready'),
        tile(overview.backlog.deliveries, 'deliveries due now', 'backlog'),
        tile(Math.round(overview.backlog.oldestDueAgeSeconds * 10) / 10 + ' s', 'oldest due for', 'oldest'),
        tile(Math.round(overview.attemptsPerSecond * 100) / 100, 'attempts per second (last minute)', 'rate'),
        tile(overview.wallets, 'wallets', 'wallets'),
        tile(overview.webhooks, 'webhooks', 'webhooks'),
        tile(overview.version, 'version', 'version'));
      global.replaceChildren(overview.globalWebhook
        ? h('p', {}, h('span', { class: 'url' }, overview.globalWebhook.url), ' ', badge(overview.globalWebhook.enabled ? 'enabled' : 'disabled', overview.globalWebhook.enabled ? 'ok' : 'bad'))
        : h('p', { class: 'hint' }, 'None configured (GLOBAL_WEBHOOK_URL).'));
      circuits.replaceChildren(overview.circuits.length === 0 ? h('p', { class: 'hint' }, 'Every breaker is closed.')
        : h('ul', {}, overview.circuits.map((c) => h('li', {}, h('span', { class: 'mono' }, c.webhookId), ' ', badge(c.state.replace('_', '-'), 'breaker-' + c.state)))));
      wallets.replaceChildren(walletTable(page));
      say('Updated ' + when(new Date().toISOString()));
    };
    await refresh();
    timers.push(setInterval(() => refresh().catch((e) => fail(e.message)), 5000));
  }

  function walletTable(page) {
    return table(null, ['Name', 'Id', 'Created (UTC)'],
      page.contents.map((w) => h('tr', { 'data-wallet': w.id }, h('td', { class: 'wallet-name' }, w.name), h('td', { class: 'mono' }, w.id), h('td', {}, when(w.createdAt)))),
      { id: 'wallets', 'aria-label': 'Wallets' });
  }

  async function viewWallets(params, current) {
    const offset = Number(params.get('offset') || 0);
    const page = (await api('GET', '/wallets?limit=100&offset=' + offset)).body;
    if (!current()) return;
    main.replaceChildren(h('h1', {}, 'Wallets'), walletTable(page),
      h('div', { class: 'pager' },
        h('button', { type: 'button', disabled: offset === 0, onclick: () => go('/wallets', { offset: String(Math.max(0, offset - 100)) }) }, 'Previous'),
        h('button', { type: 'button', disabled: !page.next, onclick: () => go('/wallets', { offset: String(offset + 100) }) }, 'Next')));
  }

  window.addEventListener('hashchange', () => {
    fail('');
    render().then(() => main.focus({ preventScroll: true }));
  });
  render();
})();

// The ssehub console. Plain DOM, no dependencies. Event data is untrusted:
// it only ever reaches the page as textContent, never as markup. Keys and
// tokens live in their input fields only (never in storage).
//
// Every URL is relative, so the page works under a path prefix behind a proxy.

const $ = (selector) => document.querySelector(selector);

/** An element with a class and text; children appended. */
function el(tag, className, text, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  node.append(...children);
  return node;
}

function clock(date = new Date()) {
  const pad = (n, width = 2) => String(n).padStart(width, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/** A problem+json answer (RFC 9457), or whatever else came, as one object. */
async function readProblem(response) {
  const text = await response.text().catch(() => '');
  const status = `${response.status} ${response.statusText}`.trim();
  try {
    const problem = JSON.parse(text);
    if (problem && typeof problem === 'object') {
      return { status, title: problem.title, detail: problem.detail, type: problem.type };
    }
  } catch { /* not JSON: shown as text below */ }
  return { status, detail: text.slice(0, 400) || 'no explanation in the response' };
}

function problemView(problem) {
  const view = el('div', 'problem');
  view.append(el('strong', null, problem.status));
  if (problem.detail) view.append(el('p', null, problem.detail));
  if (problem.type) view.append(el('code', 'muted', problem.type));
  return view;
}

// ---------------------------------------------------------------- SSE ----

/**
 * The event stream interpretation of the WHATWG HTML standard: lines end
 * with CRLF, LF or CR; `data` lines join with LF; the last event id is kept
 * across events; `retry` takes digits only; comments are counted.
 */
class EventStreamParser {
  constructor(sink) {
    this.sink = sink;
    this.pending = '';
    this.skipLineFeed = false;
    this.data = '';
    this.type = '';
    this.idBuffer = '';
    this.frameHasId = false;
  }

  push(chunk) {
    if (this.skipLineFeed && chunk.startsWith('\n')) chunk = chunk.slice(1);
    this.skipLineFeed = false;
    const text = this.pending + chunk;
    const lines = text.split(/\r\n|\r|\n/);
    this.pending = lines.pop();
    // A CR at the end may be the first half of a CRLF split across chunks.
    if (text.endsWith('\r')) this.skipLineFeed = true;
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) return this.sink.comment(line.slice(1).trim());
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data += `${value}\n`;
    else if (field === 'event') this.type = value;
    else if (field === 'id' && !value.includes('\0')) {
      this.idBuffer = value;
      this.frameHasId = true;
    } else if (field === 'retry' && /^\d+$/.test(value)) this.sink.retry(Number(value));
  }

  dispatch() {
    const hasId = this.frameHasId;
    this.frameHasId = false;
    this.sink.lastEventId(this.idBuffer);
    if (this.data === '') {
      this.type = '';
      return;
    }
    const event = { id: hasId ? this.idBuffer : '', type: this.type || 'message', data: this.data.slice(0, -1) };
    this.data = '';
    this.type = '';
    this.sink.event(event);
  }
}

// ---------------------------------------------------------- subscribe ----

const RETRY_DEFAULT_MS = 3000; // what browsers start with, until the stream says
const LOG_MAX_ENTRIES = 500; // older entries are dropped so a busy topic can't fill memory

const GAP_REASONS = {
  history_exceeded: 'the id you resumed from is older than the history the hub keeps',
  unknown_epoch: 'the id is from before a restart of the hub (or not one of its ids); you get all the history there is',
  lagged: 'this subscriber fell behind its queue and the history',
  history_unavailable: 'the history could not be read (backplane down)',
  epoch_changed: 'the backplane started a new history under the open stream',
};

const subscription = {
  wanted: false, // the user asked to be connected
  controller: null, // aborts the current request
  timer: null, // pending reconnect
  topics: [],
  token: '',
  lastEventId: '',
  retry: RETRY_DEFAULT_MS,
  comments: 0,
  lastComment: '',
  opens: 0,
  dropping: false,
  tokenExpired: false, // the hub said so: don't reconnect with the same token
};

const log = $('#log');

function logEntry(entry) {
  const follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
  log.append(entry);
  while (log.childElementCount > LOG_MAX_ENTRIES) log.firstElementChild.remove();
  if (follow) log.scrollTop = log.scrollHeight;
}

function note(text, kind = 'note') {
  const entry = el('li', kind);
  entry.append(el('time', null, clock()), el('span', null, text));
  logEntry(entry);
}

function showEvent(event) {
  if (event.type === 'gap') return showGap(event);
  if (event.type === 'token_expired') return showTokenExpired(event);
  const entry = el('li', 'event');
  entry.dataset.id = event.id;
  entry.dataset.type = event.type;
  const meta = el('div', 'meta', null, el('time', null, clock()), el('code', 'id', event.id || '(no id)'));
  if (event.type !== 'message') meta.append(el('span', 'type', event.type));
  entry.append(meta, dataView(event.data));
  logEntry(entry);
}

/** JSON objects and arrays pretty-printed; everything else exactly as sent. */
function dataView(data) {
  let text = data;
  let json = false;
  try {
    const value = JSON.parse(data);
    if (value !== null && typeof value === 'object') {
      text = JSON.stringify(value, null, 2);
      json = true;
    }
  } catch { /* not JSON */ }
  return el('pre', json ? 'data json' : 'data', text === '' ? '(empty)' : text);
}

function showGap(event) {
  let gap = {};
  try { gap = JSON.parse(event.data) || {}; } catch { /* shown raw below */ }
  const entry = el('li', 'gap');
  entry.dataset.reason = gap.reason || '';
  const why = GAP_REASONS[gap.reason] || 'events were lost';
  const where = gap.resumes_at ? `Delivery resumes at ${gap.resumes_at}.` : 'Delivery resumes with the next live event.';
  const after = gap.last_event_id ? `after ${gap.last_event_id} ` : '';
  entry.append(
    el('div', 'meta', null, el('time', null, clock()), el('strong', null, 'Gap'), el('code', 'reason', gap.reason || 'unknown')),
    el('p', null, `Events ${after}were missed: ${why}. ${where}`),
  );
  if (!gap.reason) entry.append(el('pre', 'data', event.data));
  logEntry(entry);
}

/**
 * The stream's token reached its `exp`: the hub ends the stream. Reconnecting
 * with the same token would be refused, so the page waits for a new one and
 * offers to resume where it was.
 */
function showTokenExpired(event) {
  let exp = null;
  try { exp = JSON.parse(event.data).exp; } catch { /* shown without the time */ }
  const when = Number.isInteger(exp) ? ` at ${clock(new Date(exp * 1000)).slice(0, 8)}` : '';
  subscription.tokenExpired = true;
  const entry = el('li', 'expired');
  entry.append(
    el('div', 'meta', null, el('time', null, clock()), el('strong', null, 'Token expired'), el('code', 'reason', 'token_expired')),
    el('p', null, `The stream's token expired${when}, so the hub ended the stream. Enter a new access_token and connect: the page resumes after ${subscription.lastEventId || 'the start'}.`),
  );
  logEntry(entry);
}

function setConnection(state, text) {
  $('#connection').dataset.state = state;
  $('#connection-text').textContent = text;
  const connected = state !== 'closed' && state !== 'failed';
  $('#disconnect').disabled = !connected;
  $('#drop').disabled = state !== 'open';
}

function describeOpen() {
  const parts = [`Open: ${subscription.topics.join(', ')}`, `retry ${subscription.retry} ms`];
  if (subscription.lastEventId) parts.push(`last id ${subscription.lastEventId}`);
  if (subscription.comments) {
    const lines = subscription.comments === 1 ? 'comment line' : 'comment lines';
    parts.push(`${subscription.comments} ${lines}, the last ${subscription.lastComment}`);
  }
  return `${parts.join(' · ')}.`;
}

function streamUrl() {
  const query = new URLSearchParams();
  for (const topic of subscription.topics) query.append('topic', topic);
  if (subscription.token) query.set('access_token', subscription.token);
  return `v1/events?${query}`;
}

async function openStream() {
  const controller = new AbortController();
  subscription.controller = controller;
  subscription.timer = null;
  setConnection('connecting', subscription.lastEventId
    ? `Connecting, resuming after ${subscription.lastEventId}…` : 'Connecting…');
  const headers = { Accept: 'text/event-stream' };
  if (subscription.lastEventId) headers['Last-Event-ID'] = subscription.lastEventId;
  let response;
  try {
    response = await fetch(streamUrl(), { headers, signal: controller.signal, cache: 'no-store' });
  } catch (error) {
    return streamEnded(controller, `Could not connect (${error.message}).`);
  }
  if (subscription.controller !== controller) return;
  const type = response.headers.get('content-type') || '';
  if (response.status !== 200 || !type.startsWith('text/event-stream')) {
    // EventSource gives up for good here; so does the page, and says why.
    const problem = await readProblem(response);
    subscription.wanted = false;
    subscription.controller = null;
    setConnection('failed', `The hub refused the subscription: ${problem.status}.`);
    const entry = el('li', 'refused');
    entry.append(el('time', null, clock()), problemView(problem));
    logEntry(entry);
    return;
  }
  subscription.opens += 1;
  note(subscription.lastEventId ? `Connected; resuming after ${subscription.lastEventId}.` : 'Connected; live events only.');
  setConnection('open', describeOpen());
  const parser = new EventStreamParser({
    event: showEvent,
    lastEventId: (id) => { subscription.lastEventId = id; },
    retry: (ms) => { subscription.retry = ms; },
    comment: (text) => {
      subscription.comments += 1;
      subscription.lastComment = `“${text}” at ${clock().slice(0, 8)}`;
    },
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(value);
      if (subscription.controller === controller) setConnection('open', describeOpen());
    }
    streamEnded(controller, 'The hub ended the stream.');
  } catch {
    streamEnded(controller, subscription.dropping ? 'Connection dropped.' : 'Connection lost.');
  }
}

/** As EventSource does: wait `retry`, then reconnect with Last-Event-ID. */
function streamEnded(controller, why) {
  if (subscription.controller !== controller) return;
  subscription.controller = null;
  subscription.dropping = false;
  if (!subscription.wanted) return;
  if (subscription.tokenExpired) {
    subscription.wanted = false;
    $('#subscribe-form').elements.resume.value = subscription.lastEventId;
    $('#subscribe-form').elements.token.value = '';
    setConnection('closed', 'Token expired: enter a new access_token and connect to resume.');
    return;
  }
  const resume = subscription.lastEventId ? `, resuming after ${subscription.lastEventId}` : '';
  note(`${why} Reconnecting in ${subscription.retry} ms${resume}.`, 'note warn');
  setConnection('reconnecting', `${why} Reconnecting in ${subscription.retry} ms (retry)${resume}.`);
  subscription.timer = setTimeout(openStream, subscription.retry);
}

function stopStream() {
  subscription.wanted = false;
  clearTimeout(subscription.timer);
  subscription.timer = null;
  const controller = subscription.controller;
  subscription.controller = null;
  if (controller) controller.abort();
}

$('#subscribe-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = event.currentTarget.elements;
  const topics = form.topics.value.split(/[\s,]+/).filter(Boolean);
  if (topics.length === 0) return;
  const wasConnected = subscription.wanted;
  stopStream();
  if (wasConnected) note('Disconnected.');
  Object.assign(subscription, {
    wanted: true,
    topics,
    token: form.token.value.trim(),
    lastEventId: form.resume.value.trim(),
    retry: RETRY_DEFAULT_MS,
    comments: 0,
    lastComment: '',
    tokenExpired: false,
  });
  openStream();
});

$('#disconnect').addEventListener('click', () => {
  stopStream();
  note('Disconnected.');
  setConnection('closed', 'Not connected.');
});

$('#drop').addEventListener('click', () => {
  if (!subscription.controller) return;
  subscription.dropping = true;
  subscription.controller.abort();
});

$('#clear').addEventListener('click', () => log.replaceChildren());

// ------------------------------------------------------------ publish ----

const publishForm = $('#publish-form');
const result = $('#publish-result');

function showResult(kind, ...content) {
  result.dataset.kind = kind;
  result.replaceChildren(...content);
}

for (const radio of publishForm.elements.mode) {
  radio.addEventListener('change', () => {
    const batch = publishForm.elements.mode.value === 'batch';
    $('#single').hidden = batch;
    $('#batch').hidden = !batch;
  });
}

/** The request the form describes, or a message saying what to fix. */
function publishRequest(form) {
  if (form.mode.value === 'batch') {
    let events;
    try { events = JSON.parse(form.events.value); } catch (error) {
      return { fix: `The batch is not valid JSON: ${error.message}` };
    }
    return { url: 'v1/events', body: Array.isArray(events) ? { events } : events };
  }
  const topic = form.topic.value.trim();
  if (!topic) return { fix: 'Name a topic.' };
  let data = form.data.value;
  if (form.format.value === 'json') {
    try { data = JSON.parse(data); } catch (error) {
      return { fix: `Data is not valid JSON (${error.message}). Choose “text” to send it as a string.` };
    }
  }
  const body = { data };
  if (form.event.value.trim()) body.event = form.event.value.trim();
  if (form.retry.value !== '') body.retry = Number(form.retry.value);
  return { url: `v1/topics/${encodeURIComponent(topic)}/events`, body };
}

publishForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = publishForm.elements;
  const request = publishRequest(form);
  if (request.fix) return showResult('error', el('p', null, request.fix));
  const headers = { 'Content-Type': 'application/json' };
  const key = form.key.value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  // Busy, not disabled: disabling the focused button would throw a keyboard
  // user's focus back to the top of the page.
  if (publishForm.ariaBusy === 'true') return;
  publishForm.ariaBusy = 'true';
  try {
    const response = await fetch(request.url, { method: 'POST', headers, body: JSON.stringify(request.body) });
    if (!response.ok) return showResult('error', problemView(await readProblem(response)));
    const answer = await response.json();
    const accepted = answer.events || [answer];
    const ids = accepted.map((item) => `${item.id} on ${item.topic}`);
    showResult('ok', el('strong', null, `${response.status} Accepted`), el('p', null, ids.join(', ')));
  } catch (error) {
    showResult('error', el('p', null, `The hub could not be reached: ${error.message}`));
  } finally {
    publishForm.ariaBusy = 'false';
    pollStats();
  }
});

// --------------------------------------------------------------- hub ----

const STATS_EVERY_MS = 2000;
const CHART_POINTS = 60; // two minutes of readings
const series = { publishes: [], deliveries: [] };
let previous = null;
let statsTimer = null;

const number = new Intl.NumberFormat();

function setStat(name, text) {
  const node = document.querySelector(`[data-stat="${name}"]`);
  if (node) node.textContent = text;
}

function rate(value) {
  if (value === null) return '–';
  return value < 10 ? value.toFixed(1) : number.format(Math.round(value));
}

function uptime(seconds) {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  return m ? `${m}m ${seconds % 60}s` : `${seconds}s`;
}

function showStats(stats, now) {
  const elapsed = previous ? (now - previous.at) / 1000 : 0;
  const per = (pick) => (previous && elapsed > 0 ? Math.max(0, pick(stats) - pick(previous.stats)) / elapsed : null);
  const publishRate = per((s) => s.publishes.events_accepted);
  const deliveryRate = per((s) => s.deliveries.events);
  previous = { stats, at: now };

  setStat('subscribers', number.format(stats.subscribers.connected));
  setStat('limit', `of ${number.format(stats.subscribers.limit)}`);
  setStat('live_topics', number.format(stats.live_topics));
  setStat('publish_rate', rate(publishRate));
  setStat('events_accepted', `${number.format(stats.publishes.events_accepted)} total`);
  setStat('delivery_rate', rate(deliveryRate));
  setStat('deliveries', `${number.format(stats.deliveries.events)} total`);
  setStat('lagged', number.format(stats.deliveries.lagged));
  setStat('gap_frames', number.format(stats.deliveries.gap_frames));
  setStat('requests_rejected', number.format(stats.publishes.requests_rejected));
  setStat('shed', number.format(stats.subscribers.shed));
  setStat('phase', stats.phase);
  setStat('ready', stats.ready ? 'ready' : 'not ready');
  setStat('backplane', stats.backplane.kind);
  setStat('available', stats.backplane.available ? 'available' : 'unavailable');
  document.querySelector('[data-stat="phase"]').dataset.level = stats.phase === 'serving' ? 'ok' : 'warn';
  document.querySelector('[data-stat="backplane"]').dataset.level = stats.backplane.available ? 'ok' : 'bad';
  $('#summary').textContent = `v${stats.version} · ${stats.ready ? 'ready' : 'not ready'} · up ${uptime(stats.uptime_seconds)}`;

  if (publishRate !== null) {
    series.publishes.push(publishRate);
    series.deliveries.push(deliveryRate);
    for (const line of Object.values(series)) if (line.length > CHART_POINTS) line.shift();
    drawChart();
  }
}

function drawChart() {
  const max = Math.max(1, ...series.publishes, ...series.deliveries);
  const points = (values) => values.map((value, index) => {
    const x = (300 * (index + CHART_POINTS - values.length)) / (CHART_POINTS - 1);
    const y = 88 - (84 * value) / max;
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  }).join(' ');
  $('#chart .publishes').setAttribute('points', points(series.publishes));
  $('#chart .deliveries').setAttribute('points', points(series.deliveries));
  $('#chart-max').textContent = rate(max);
}

async function pollStats() {
  clearTimeout(statsTimer);
  try {
    const response = await fetch('v1/stats', { cache: 'no-store' });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    showStats(await response.json(), Date.now());
    $('#hub-status').dataset.level = 'ok';
    $('#hub-status').lastChild.textContent = ` every 2 s; last read ${clock().slice(0, 8)}.`;
  } catch (error) {
    $('#hub-status').dataset.level = 'bad';
    $('#summary').textContent = `The hub is not answering (${error.message}).`;
  } finally {
    statsTimer = setTimeout(pollStats, STATS_EVERY_MS);
  }
}

pollStats();

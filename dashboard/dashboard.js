// The tempered-mpc dashboard: live plots over the Foxglove WebSocket protocol (the same channels a
// Foxglove client gets), a parameter panel built from the server's schema, simulator controls in an
// embedded run. No framework; uPlot for the charts.
/* global uPlot, protobuf */

const MAX_POINTS = 2000;
const $ = (selector) => document.querySelector(selector);

const info = { frames: 0, statusFrames: 0, applied: [] };
window.dashboard = info;

let meta; // /status: names, goal, limits, period and budget
const history = { t: [], truth: [], measured: [], control: [], cost: [], solve: [], late: [], figures: new Map(), series: new Map() };
// the last plan's series, by name (PlannerStatus.series): what the planner's `last` charts draw
let lastSeries = new Map();
let plan; // { t0, times, states }
const charts = [];

function push(array, value) {
  array.push(value);
  if (array.length > MAX_POINTS) array.shift();
}

/** An angle (which states are, the server says) on the goal's branch, within pi of it: a pendulum held at -pi is at the goal. */
function onGoalBranch(i, v, goal) {
  if (!meta.angles[i] || v == null) return v;
  const d = v - goal;
  return goal + Math.atan2(Math.sin(d), Math.cos(d));
}

// beyond loopback a change needs the token: open the page as http://HOST:PORT/?token=TOKEN
const token = new URLSearchParams(location.search).get('token');

async function api(method, url, body) {
  const headers = { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...(token ? { authorization: `Bearer ${token}` } : {}) };
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const json = await res.json().catch(() => ({}));
  return { ok: res.ok, status: res.status, json };
}

// ---- the Foxglove WebSocket protocol, as much as the page needs ----
function connect() {
  const ws = new WebSocket(`ws://${location.host}/${token ? `?token=${encodeURIComponent(token)}` : ''}`, ['foxglove.websocket.v1']);
  ws.binaryType = 'arraybuffer';
  const channelOf = new Map();
  let nextSub = 1;
  ws.onmessage = async (event) => {
    if (typeof event.data === 'string') {
      const msg = JSON.parse(event.data);
      if (msg.op === 'advertise') {
        const wanted = msg.channels.filter((c) => /\/(true_state|state|command|plan|status)$/.test(c.topic));
        const subscriptions = await Promise.all(wanted.map(async (c) => ({ id: nextSub++, channelId: c.id, topic: c.topic, decode: await decoder(c) })));
        for (const s of subscriptions) channelOf.set(s.id, s);
        ws.send(JSON.stringify({ op: 'subscribe', subscriptions: subscriptions.map(({ id, channelId }) => ({ id, channelId })) }));
      }
      return;
    }
    const view = new DataView(event.data);
    if (view.getUint8(0) !== 1) return; // message data
    const channel = channelOf.get(view.getUint32(1, true));
    if (!channel) return;
    info.frames++;
    onMessage(channel.topic, channel.decode(new Uint8Array(event.data, 13)));
  };
  ws.onclose = () => {
    $('#status').textContent = 'disconnected (the run has ended?)';
  };
}

/** A channel's decoder: protobuf with the types the server derived from the .msg files, or JSON. */
async function decoder(channel) {
  if (channel.encoding === 'json') return (bytes) => JSON.parse(new TextDecoder().decode(bytes));
  const json = await (await fetch(`/protobuf/${encodeURIComponent(channel.schemaName)}`)).json();
  const type = protobuf.Root.fromJSON(json).lookupType(channel.schemaName);
  return (bytes) => type.toObject(type.decode(bytes), { defaults: true, arrays: true });
}

const stampS = (header) => header.stamp.sec + header.stamp.nanosec * 1e-9;

/** A state message (JointState or PoseStamped) as the physical state vector. */
function physical(msg) {
  if (msg.position) return [...msg.position, ...msg.velocity];
  const p = msg.pose;
  return [p.position.x, p.position.y, 2 * Math.atan2(p.orientation.z, p.orientation.w)];
}

function onMessage(topic, msg) {
  if (topic.endsWith('/true_state')) {
    push(history.t, stampS(msg.header));
    push(history.truth, physical(msg));
  } else if (topic.endsWith('/state')) {
    // without a true state (a robot) the measurement is the state plotted
    lastMeasured = physical(msg);
    if (!meta?.hasTruth) {
      push(history.t, stampS(msg.header));
      push(history.truth, lastMeasured);
    }
  } else if (topic.endsWith('/command')) {
    pendingControl = msg.data;
  } else if (topic.endsWith('/plan')) {
    const n = msg.state_names.length;
    plan = { t0: stampS(msg.header), times: msg.times, states: msg.times.map((_, k) => msg.states.slice(k * n, (k + 1) * n)) };
  } else if (topic.endsWith('/status')) {
    onStatus(msg);
  }
}

let lastMeasured = null;
let pendingControl = null;

function onStatus(s) {
  info.statusFrames++;
  // one row per tick: aligned with the latest state
  while (history.measured.length < history.t.length) push(history.measured, lastMeasured);
  while (history.control.length < history.t.length) push(history.control, pendingControl);
  while (history.cost.length < history.t.length) push(history.cost, Number.isFinite(s.cost) && s.cost > 0 ? s.cost : null);
  while (history.solve.length < history.t.length) push(history.solve, s.solve_ms > 0 ? s.solve_ms : null);
  while (history.late.length < history.t.length) push(history.late, s.mode_name === 'late' ? s.budget_ms : null);
  // the planner's series: each over time (a row per tick, null when no plan landed) and the last plan's
  const landed = new Map(s.series.map((x) => [x.name, x.values]));
  if (landed.size) lastSeries = landed;
  info.series = [...new Set([...(info.series ?? []), ...landed.keys()])];
  for (const name of new Set([...history.series.keys(), ...landed.keys()])) {
    if (!history.series.has(name)) history.series.set(name, []);
    const rows = history.series.get(name);
    while (rows.length < history.t.length) push(rows, landed.get(name)?.length ? landed.get(name) : null);
  }
  s.info_names.forEach((name, i) => {
    if (!history.figures.has(name)) history.figures.set(name, []);
  });
  for (const [name, values] of history.figures) {
    const i = s.info_names.indexOf(name);
    while (values.length < history.t.length) push(values, i >= 0 ? s.info_values[i] : null);
  }
  const mode = `<span class="mode-${s.mode_name}">${s.mode_name}</span>`;
  $('#status').innerHTML = `${mode} ${s.reason ? `(${escapeHtml(s.reason)})` : ''} · tick ${s.ticks} · solve ${s.solve_ms.toFixed(1)} / ${s.budget_ms.toFixed(1)} ms · misses ${s.deadline_misses} · errors ${s.planner_errors} · rejected ${s.rejected_states}`;
  scheduleDraw();
}

function escapeHtml(text) {
  return text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
}

// ---- charts ----
function chart(title, series, opts = {}) {
  const box = document.createElement('div');
  box.className = 'chart';
  box.innerHTML = `<h3>${title}</h3>`;
  $('#charts').append(box);
  const u = new uPlot({
    width: Math.max(400, $('#charts').clientWidth - 10), height: opts.height ?? 150,
    scales: { x: { time: false }, y: opts.log ? { distr: 3 } : {} },
    series: [{ label: 't [s]' }, ...series],
    legend: { live: false },
  }, [[], ...series.map(() => [])], box);
  charts.push({ u, build: opts.build });
  return u;
}

function buildCharts() {
  const names = meta.stateNames;
  const unit = (u) => (u ? ` [${u}]` : '');
  names.forEach((name, i) => {
    const half = meta.goalHalfWidths?.[i] ?? null;
    chart(name + unit(meta.stateUnits?.[i]) + (meta.angles[i] ? ' (on the goal\'s branch)' : '') + (half != null ? ', goal region dotted green' : ''), [
      // measured first, so the true state is drawn over it
      ...(meta.hasTruth ? [{ label: 'measured', stroke: '#bbbbbb' }] : []),
      { label: meta.hasTruth ? 'true' : 'measured', stroke: '#1f77b4' },
      { label: 'plan', stroke: '#ff7f0e', dash: [6, 3] },
      { label: 'goal', stroke: '#000000', dash: [2, 4] },
      ...(half != null ? [{ label: 'goal region −', stroke: '#2ca02c', dash: [1, 3] }, { label: 'goal region +', stroke: '#2ca02c', dash: [1, 3] }] : []),
    ], {
      build: () => {
        const g = meta.goal[i];
        const t = history.t;
        const planT = plan ? plan.times.map((dt) => plan.t0 + dt).filter((x) => x > (t.at(-1) ?? -Infinity)) : [];
        const planV = plan ? plan.states.slice(plan.states.length - planT.length).map((row) => onGoalBranch(i, row[i], g)) : [];
        const pad = (a) => [...a, ...planT.map(() => null)];
        const all = [...t, ...planT];
        return [
          all,
          ...(meta.hasTruth ? [pad(history.measured.map((row) => onGoalBranch(i, row?.[i], g)))] : []),
          pad(history.truth.map((row) => onGoalBranch(i, row?.[i], g))),
          [...t.map(() => null), ...planV],
          all.map(() => g),
          ...(half != null ? [all.map(() => g - half), all.map(() => g + half)] : []),
        ];
      },
    });
  });
  meta.controlNames.forEach((name, j) => chart(`command ${name}${unit(meta.controlUnits?.[j])} (saturated: dots)`, [
    { label: name, stroke: '#d62728' },
    { label: 'at a limit', stroke: '#d62728', width: 0, points: { show: true, size: 6, fill: '#d62728' } },
    { label: 'lower limit', stroke: '#999999', dash: [4, 4] },
    { label: 'upper limit', stroke: '#999999', dash: [4, 4] },
  ], {
    build: () => {
      const lo = meta.controlLimits.lower[j];
      const hi = meta.controlLimits.upper[j];
      const u = history.control.map((row) => row?.[j] ?? null);
      const saturated = u.map((v) => (v != null && ((hi != null && v >= hi - 1e-9) || (lo != null && v <= lo + 1e-9)) ? v : null));
      return [history.t.slice(0, u.length), u, saturated, u.map(() => lo), u.map(() => hi)];
    },
  }));
  chart('cost of the plan in effect', [{ label: 'cost', stroke: '#9467bd' }], {
    log: true, height: 120, build: () => [history.t.slice(0, history.cost.length), history.cost],
  });
  chart('solve time [ms] against budget and period (late ticks: dots)', [
    { label: 'solve', stroke: '#ff7f0e', points: { show: true, size: 3 } },
    { label: 'budget', stroke: '#000000', dash: [6, 3] },
    { label: 'period', stroke: '#888888', dash: [2, 4] },
    { label: 'late', stroke: '#b00020', width: 0, points: { show: true, size: 7, fill: '#b00020' } },
  ], {
    height: 140,
    build: () => [history.t.slice(0, history.solve.length), history.solve, history.solve.map(() => meta.budgetMs), history.solve.map(() => meta.periodMs), history.late],
  });
  // the planner's own charts, as its registry entry declares them (GET /status: plannerCharts)
  const palette = ['#2ca02c', '#1f77b4', '#ff7f0e', '#d62728', '#9467bd', '#8c564b', '#e377c2'];
  for (const c of meta.plannerCharts ?? []) {
    if (c.kind === 'last') {
      chart(c.title, c.series.map((name, i) => ({ label: c.labels?.[i] ?? name, stroke: palette[i % palette.length], points: { show: true } })), {
        height: 140, log: c.log,
        build: () => {
          const rows = c.series.map((name) => lastSeries.get(name) ?? []);
          const length = Math.max(0, ...rows.map((r) => r.length));
          return [Array.from({ length }, (_, k) => k + 1), ...rows.map((r) => Array.from({ length }, (_, k) => r[k] ?? null))];
        },
      });
    } else {
      const labels = c.perControl ? meta.controlNames : c.lineLabels ?? [];
      const lines = c.series.flatMap((name) => labels.map((label, k) => ({ name, k, label: c.series.length > 1 ? `${name} ${label}` : label })));
      chart(c.title, lines.map((l, i) => ({ label: l.label, stroke: palette[i % palette.length] })), {
        height: 140, log: c.log,
        build: () => {
          const length = Math.max(0, ...c.series.map((name) => history.series.get(name)?.length ?? 0));
          const value = (row, k) => (row && Number.isFinite(row[k]) && (!c.log || row[k] > 0) ? row[k] : null);
          return [history.t.slice(0, length), ...lines.map((l) => Array.from({ length }, (_, t) => value(history.series.get(l.name)?.[t], l.k)))];
        },
      });
    }
  }
  chart('planner figures per plan (PlannerStatus info), each over its largest value so far', [], { height: 140 });
}

function drawPlannerFigures() {
  const last = charts.at(-1);
  const names = [...history.figures.keys()];
  if (last.names?.join() !== names.join()) {
    // the figures are known once a plan has reported them
    const box = last.u.root.parentElement;
    last.u.destroy();
    const palette = ['#1f77b4', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2'];
    last.u = new uPlot({
      width: Math.max(400, $('#charts').clientWidth - 10), height: 140, scales: { x: { time: false } },
      series: [{ label: 't [s]' }, ...names.map((n, i) => ({ label: n, stroke: palette[i % palette.length] }))], legend: { live: false },
    }, [[], ...names.map(() => [])], box);
    last.names = names;
  }
  const t = history.t;
  // figures of different sizes (beta ~1, rollouts ~1e4) share one axis: each over its largest value
  const scaled = names.map((n) => {
    const values = history.figures.get(n);
    const max = Math.max(...values.filter((v) => v != null).map(Math.abs), 1e-300);
    return values.map((v) => (v == null ? null : v / max));
  });
  last.u.setData([t.slice(0, t.length), ...scaled]);
}

let drawPending = false;
function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  setTimeout(() => {
    drawPending = false;
    for (const c of charts.slice(0, -1)) c.u.setData(c.build());
    drawPlannerFigures();
  }, 100);
}

// ---- parameters ----
async function buildParams() {
  const { json } = await api('GET', '/params');
  const box = $('#params');
  let group = null;
  for (const p of json.schema) {
    const g = p.key.includes('.') ? p.key.split('.')[0] : 'controller';
    if (g !== group) {
      group = g;
      box.insertAdjacentHTML('beforeend', `<div class="group">${g}</div>`);
    }
    box.append(paramRow(p, json.values[p.key]));
  }
}

function paramRow(p, value) {
  const row = document.createElement('div');
  row.className = `param${p.readOnly ? ' readonly' : ''}`;
  row.dataset.key = p.key;
  row.title = `${p.doc}\n${p.rule}${p.readOnly ? `\nread-only: ${p.readOnly}` : ''}`;
  const label = document.createElement('label');
  label.textContent = p.key;
  const line = document.createElement('div');
  line.className = 'row';
  const note = document.createElement('span');
  // the value in use: a refused change puts it back in the field, so the field never shows what is not in effect
  let current = value;
  const refuse = (reason) => {
    note.className = 'error';
    note.textContent = reason;
    show(current);
  };
  const apply = async (v) => {
    const r = await api('PATCH', '/params', { [p.key]: v });
    if (!r.ok) return refuse(r.json.reasons?.[p.key] ?? r.json.error ?? `HTTP ${r.status}`);
    note.className = 'applied';
    note.textContent = '✓';
    current = r.json.applied[p.key];
    info.applied.push({ key: p.key, value: current });
  };
  // what was typed in a number field: a blank or non-number is refused here, naming what was typed (never sent as 0)
  const number = (text) => {
    const t = text.trim();
    const v = t === '' ? NaN : Number(t);
    if (!Number.isFinite(v)) {
      refuse(t === '' ? `${p.key} needs a number, got a blank field` : `${p.key} needs a number, got '${t}'`);
      return undefined;
    }
    return v;
  };
  let show = () => undefined;
  let input;
  if (p.kind === 'flag') {
    input = document.createElement('input');
    input.type = 'checkbox';
    input.checked = value === true;
    show = (v) => (input.checked = v === true);
    input.onchange = () => apply(input.checked);
    line.append(input);
  } else if (p.kind === 'enum') {
    input = document.createElement('select');
    for (const c of p.choices) input.add(new Option(c, c, false, c === value));
    show = (v) => (input.value = v);
    input.onchange = () => apply(input.value);
    line.append(input);
  } else if (p.kind === 'number') {
    input = document.createElement('input');
    input.type = 'number';
    input.value = String(value);
    input.step = p.integer ? '1' : 'any';
    const lo = p.min ?? 0;
    const hi = p.max;
    if (hi != null && Number.isFinite(hi) && hi - lo <= 1000) {
      const slider = document.createElement('input');
      slider.type = 'range';
      slider.min = String(lo);
      slider.max = String(hi);
      slider.step = p.integer ? '1' : String((hi - lo) / 1000);
      slider.value = String(value);
      slider.disabled = Boolean(p.readOnly);
      slider.oninput = () => (input.value = slider.value);
      // applied on release, not on every pixel of the drag
      slider.onchange = () => apply(Number(slider.value));
      line.append(slider);
      show = (v) => {
        input.value = String(v);
        slider.value = String(v);
      };
      input.onchange = () => {
        const v = number(input.value);
        if (v === undefined) return;
        slider.value = String(v);
        apply(v);
      };
    } else {
      show = (v) => (input.value = String(v));
      input.onchange = () => {
        const v = number(input.value);
        if (v !== undefined) apply(v);
      };
    }
    line.append(input);
  } else if (p.kind === 'text') {
    input = document.createElement('input');
    input.type = 'text';
    input.value = value;
    show = (v) => (input.value = v);
    input.onchange = () => apply(input.value);
    line.append(input);
  } else {
    input = document.createElement('input');
    input.type = 'text';
    input.value = value.join(', ');
    show = (v) => (input.value = v.join(', '));
    input.onchange = () => {
      const items = input.value.split(',').map((x) => x.trim()).filter(Boolean);
      if (!p.rule.includes('number')) return apply(items);
      const numbers = items.map(number);
      if (numbers.every((v) => v !== undefined)) apply(numbers);
    };
    line.append(input);
  }
  input.disabled = Boolean(p.readOnly);
  line.append(note);
  row.append(label, line);
  return row;
}

// ---- simulator controls (embedded runs) ----
async function buildSim() {
  const { json } = await api('GET', '/sim');
  if (!json.available) return;
  $('#sim').hidden = false;
  json.stateNames.forEach((n, i) => $('#push-state').add(new Option(n, String(i))));
  const error = $('#sim-error');
  const act = async (action, body) => {
    const r = await api('POST', `/sim/${action}`, body);
    error.textContent = r.ok ? '' : r.json.error;
    if (r.ok) $('#pause').textContent = r.json.paused ? 'resume' : 'pause';
  };
  $('#pause').onclick = () => act($('#pause').textContent === 'pause' ? 'pause' : 'resume');
  $('#step').onclick = () => act('step');
  $('#reset').onclick = () => act('reset');
  $('#push').onclick = () => act('push', { state: Number($('#push-state').value), size: Number($('#push-size').value) });
}

async function main() {
  const status = (await api('GET', '/status')).json;
  const sim = (await api('GET', '/sim')).json;
  meta = { ...status, hasTruth: sim.available };
  $('#system').textContent = `${status.system} · ${status.planner} · ${(1000 / status.periodMs).toFixed(0)} Hz`;
  buildCharts();
  await Promise.all([buildParams(), buildSim()]);
  connect();
}

main();

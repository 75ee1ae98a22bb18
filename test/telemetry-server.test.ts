import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SimControl } from '../src/run/loop.js';
import { ControllerSession } from '../src/run/session.js';
import { readParamsFile } from '../src/run/params-file.js';
import { resolveRunParams } from '../src/run/setup.js';
import foxglove from '@foxglove/ws-protocol';
import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import type { Channel } from '@foxglove/ws-protocol';
import { WebSocket } from 'ws';
import { logTopics, SCENE_TOPIC } from '../src/telemetry/channels.js';
import { CLIENT_QUEUE_LIMIT_BYTES } from '../src/telemetry/foxglove-live.js';
import { Telemetry } from '../src/telemetry/server.js';

const CONFIG = fileURLToPath(new URL('../../launch/config/pendulum.yaml', import.meta.url));

describe('telemetry server (fastify, routes through inject)', function () {
  let session: ControllerSession;
  before(async () => {
    const params = resolveRunParams('pendulum', { ...readParamsFile(CONFIG), planner: 'mppi', threads: 1, 'mppi.samples': 64, 'mppi.iterations': 2 });
    session = await ControllerSession.create(params, { lockstep: true });
  });
  after(() => session.dispose());

  async function ticked(telemetry: Telemetry, t: number) {
    session.onStateMessage(session.codec.encode([0.3, 0], t), t);
    telemetry.observe(await session.tick(t));
  }

  it('GET /healthz, /status, /metrics and /params', async () => {
    const telemetry = new Telemetry(session);
    try {
      assert.deepEqual((await telemetry.app.inject({ method: 'GET', url: '/healthz' })).json(), { ok: true });
      const before = (await telemetry.app.inject({ method: 'GET', url: '/status' })).json();
      assert.equal(before.tick, null);
      await ticked(telemetry, 0);
      await ticked(telemetry, 0.1);
      const status = (await telemetry.app.inject({ method: 'GET', url: '/status' })).json();
      assert.equal(status.planner, 'mppi');
      assert.deepEqual(status.angles, [true, false], 'theta is an angle, omega is not');
      assert.equal(status.tick.mode, 'ok');
      assert.equal(status.counters.ticks, 2);
      assert.ok(Math.abs(status.budgetMs - 80) < 1e-9);
      assert.ok(status.lastSolve.solveMs > 0);
      const metrics = await telemetry.app.inject({ method: 'GET', url: '/metrics' });
      assert.match(metrics.headers['content-type'] as string, /text\/plain/);
      assert.match(metrics.body, /tempered_mpc_ticks_total\{planner="mppi"\} 2/);
      assert.match(metrics.body, /tempered_mpc_solve_duration_seconds_bucket\{le="0\.08",planner="mppi"\} 2/);
      assert.match(metrics.body, /tempered_mpc_deadline_misses_total\{planner="mppi"\} 0/);
      assert.match(metrics.body, /tempered_mpc_watchdog_mode\{mode="ok",planner="mppi"\} 1/);
      assert.match(metrics.body, /tempered_mpc_planner_figure\{figure="iterations",planner="mppi"\} 2/);
      assert.match(metrics.body, /nodejs_eventloop_lag_seconds/);
      const params = (await telemetry.app.inject({ method: 'GET', url: '/params' })).json();
      assert.equal(params.values['mppi.samples'], 64);
      const temperature = params.schema.find((e: { key: string }) => e.key === 'mppi.temperature');
      assert.equal(temperature.kind, 'number');
      assert.equal(temperature.readOnly, null);
      assert.match(temperature.doc, /temperature/);
      assert.match(params.schema.find((e: { key: string }) => e.key === 'planner').readOnly, /built at configure/);
    } finally {
      await telemetry.close();
    }
  });

  it('PATCH /params: applied at the next tick and echoed; every kind of bad change is refused with its reason and nothing applied', async () => {
    const telemetry = new Telemetry(session);
    const patch = (payload: unknown) => telemetry.app.inject({ method: 'PATCH', url: '/params', payload: payload as object });
    try {
      const ok = await patch({ 'mppi.temperature': 0.02, budgetMs: 50 });
      assert.equal(ok.statusCode, 200, ok.body);
      assert.deepEqual(ok.json().applied, { 'mppi.temperature': 0.02, budgetMs: 50 });
      const planner = session.planner as unknown as { params: Record<string, unknown> };
      assert.notEqual(planner.params.temperature, 0.02, 'not before the tick boundary');
      await ticked(telemetry, 0.2);
      assert.equal(planner.params.temperature, 0.02);
      assert.equal(session.budgetMs, 50);

      const before = session.parameterValues();
      const bad = await patch({ 'mppi.temprature': 1, 'mppi.samples': 'many', 'mppi.sigmaMax': -1, planner: 'tsmc', 'mppi.iterations': 3 });
      assert.equal(bad.statusCode, 400);
      const { error, reasons } = bad.json();
      assert.equal(error, 'nothing applied');
      assert.match(reasons['mppi.temprature'], /unknown parameter.*mppi\.temperature/);
      assert.match(reasons['mppi.samples'], /mppi\.samples/);
      assert.match(reasons['mppi.sigmaMax'], /mppi\.sigmaMax must be/);
      assert.match(reasons.planner, /read-only/);
      assert.equal(reasons['mppi.iterations'], undefined, 'the good key has no reason');
      assert.deepEqual(session.parameterValues(), before, 'nothing applied, not even the good key');
      // a rule across keys
      const rule = await patch({ budgetMs: 500 });
      assert.equal(rule.statusCode, 400);
      assert.match(rule.json().reasons.budgetMs, /longer than the control period/);
      // not an object; not JSON
      assert.equal((await patch([1, 2])).statusCode, 400);
      const garbled = await telemetry.app.inject({ method: 'PATCH', url: '/params', payload: '{"budgetMs": ', headers: { 'content-type': 'application/json' } });
      assert.equal(garbled.statusCode, 400);
    } finally {
      await telemetry.close();
    }
  });

  it('GET /params.yaml is a parameter file `run --params` reads back to the same values; the dashboard\'s files are served', async () => {
    const telemetry = new Telemetry(session);
    try {
      const yaml = await telemetry.app.inject({ method: 'GET', url: '/params.yaml' });
      assert.equal(yaml.statusCode, 200);
      const dir = mkdtempSync(join(tmpdir(), 'tmpc-yaml-'));
      writeFileSync(join(dir, 'p.yaml'), yaml.body);
      const flat = readParamsFile(join(dir, 'p.yaml'));
      const values = session.parameterValues();
      for (const key of ['mppi.temperature', 'mppi.samples', 'budgetMs', 'planner', 'jointNames']) assert.deepEqual(flat[key], values[key], key);
      for (const url of ['/', '/dashboard.js', '/vendor/uPlot.js']) assert.equal((await telemetry.app.inject({ method: 'GET', url })).statusCode, 200, url);
      const noSim = await telemetry.app.inject({ method: 'POST', url: '/sim/pause' });
      assert.equal(noSim.statusCode, 404);
      assert.match(noSim.json().error, /embedded run/);
    } finally {
      await telemetry.close();
    }
  });

  it('simulator controls in an embedded run: pause, step, reset, push; a bad push or action is refused with the reason', async () => {
    const control = new SimControl();
    const telemetry = new Telemetry(session, { simulator: { control, stateNames: ['theta', 'omega'] } });
    const post = (action: string, payload?: object) => telemetry.app.inject({ method: 'POST', url: `/sim/${action}`, payload });
    try {
      assert.deepEqual((await post('pause')).json(), { paused: true });
      assert.equal(control.paused, true);
      assert.equal((await post('push', { state: 1, size: 0.5 })).statusCode, 200);
      const bad = await post('push', { state: 2, size: 0.5 });
      assert.equal(bad.statusCode, 400);
      assert.match(bad.json().error, /state index must be an integer in 0\.\.1, got 2/);
      assert.match((await post('fly')).json().error, /unknown simulator action 'fly'/);
      assert.deepEqual((await post('resume')).json(), { paused: false });
    } finally {
      await telemetry.close();
    }
  });

  it('beyond loopback a change needs the token (generated when not given); reads do not', async () => {
    const telemetry = new Telemetry(session, { host: '0.0.0.0' });
    try {
      assert.ok(telemetry.token && telemetry.token.length >= 20, 'a token was generated');
      const change = (authorization?: string) => telemetry.app.inject({
        method: 'PATCH', url: '/params', payload: { 'mppi.temperature': 0.03 }, headers: authorization ? { authorization } : {},
      });
      const none = await change();
      assert.equal(none.statusCode, 401);
      assert.match(none.json().error, /needs the token/);
      assert.equal((await change('Bearer wrong')).statusCode, 401);
      assert.equal((await change(`Bearer ${telemetry.token}`)).statusCode, 200);
      assert.equal((await telemetry.app.inject({ method: 'GET', url: '/params' })).statusCode, 200);
    } finally {
      await telemetry.close();
    }
    const local = new Telemetry(session);
    assert.equal(local.token, undefined, 'on loopback no token unless given');
    await local.close();
  });

  it('a storm of concurrent PATCHes ends in a consistent state: one whole accepted set, the cross-key rule holding', async () => {
    const telemetry = new Telemetry(session);
    try {
      const sets = Array.from({ length: 60 }, (_, i) => {
        const lo = 0.01 + 0.01 * (i % 7);
        // every third set breaks sigmaMin <= sigmaMax and must be refused whole
        return { 'mppi.sigmaMin': i % 3 === 0 ? 0.9 : lo, 'mppi.sigmaMax': i % 3 === 0 ? 0.2 : lo + 0.3 + 0.01 * i };
      });
      const replies = await Promise.all(sets.map((payload) => telemetry.app.inject({ method: 'PATCH', url: '/params', payload })));
      const accepted = sets.filter((_, i) => replies[i].statusCode === 200);
      assert.equal(accepted.length, 40);
      assert.ok(replies.every((r, i) => (i % 3 === 0 ? r.statusCode === 400 : r.statusCode === 200)));
      await ticked(telemetry, 0.3);
      const v = session.parameterValues();
      const pair = { 'mppi.sigmaMin': v['mppi.sigmaMin'], 'mppi.sigmaMax': v['mppi.sigmaMax'] };
      assert.ok(accepted.some((s) => s['mppi.sigmaMin'] === pair['mppi.sigmaMin'] && s['mppi.sigmaMax'] === pair['mppi.sigmaMax']), JSON.stringify(pair));
      assert.ok((pair['mppi.sigmaMin'] as number) <= (pair['mppi.sigmaMax'] as number));
      const planner = session.planner as unknown as { params: Record<string, number> };
      assert.deepEqual([planner.params.sigmaMin, planner.params.sigmaMax], [pair['mppi.sigmaMin'], pair['mppi.sigmaMax']], 'the planner has the same whole set');
    } finally {
      await telemetry.close();
    }
  });
});

describe('run --serve (a real-time run with the server up)', () => {
  const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

  it('serves /status and /metrics while it runs and applies a PATCH at the next tick', async function () {
    const out = mkdtempSync(join(tmpdir(), 'tmpc-serve-'));
    const child = spawn(process.execPath, [CLI, 'run', '--system', 'pendulum', '--planner', 'mppi', '--set', 'mppi.samples=64', '--set', 'mppi.iterations=2',
      '--set', 'threads=1', '--duration', '4', '--serve', '--port', '0', '--out', out, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    const address = await new Promise<string>((resolve, reject) => {
      child.stderr.on('data', (d) => {
        stderr += d;
        const m = /telemetry: (http:\/\/[^ ]+) /.exec(stderr);
        if (m) resolve(m[1]);
      });
      child.once('exit', () => reject(new Error(`run ended before serving: ${stderr}`)));
    });
    // the first tick comes after the warm-up (a 2 s rehearsal in real time): the server answers from the start
    type Status = { tick: { mode: string }; counters: { ticks: number } };
    let status = await (await fetch(`${address}/status`)).json() as Status;
    for (let waitedMs = 0; status.counters.ticks === 0 && waitedMs < 10_000; waitedMs += 100) {
      await new Promise((r) => setTimeout(r, 100));
      status = await (await fetch(`${address}/status`)).json() as Status;
    }
    assert.ok(status.counters.ticks > 0);
    const metrics = await (await fetch(`${address}/metrics`)).text();
    assert.match(metrics, /tempered_mpc_ticks_total/);
    const patched = await fetch(`${address}/params`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ 'mppi.temperature': 0.05 }) });
    assert.equal(patched.status, 200);
    await new Promise((r) => setTimeout(r, 300));
    const values = (await (await fetch(`${address}/params`)).json() as { values: Record<string, unknown> }).values;
    assert.equal(values['mppi.temperature'], 0.05);
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 0, stderr);
    assert.ok(JSON.parse(stdout).ticks === 40);
    // the live change is in the record: when it took effect, and the value the run ended with
    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    assert.equal(summary.params.planners.mppi.temperature !== 0.05, true, 'the start values stay as they were');
    assert.equal(summary.paramsAtEnd['mppi.temperature'], 0.05);
    assert.equal(summary.parameterChangeCount, 1);
    assert.deepEqual(summary.parameterChanges[0].changes, { 'mppi.temperature': 0.05 });
    assert.ok(summary.parameterChanges[0].timeS > 0 && summary.parameterChanges[0].timeS < 4);
  });

  it('--port without --serve is a usage error', () => {
    const r = spawnSync(process.execPath, [CLI, 'run', '--system', 'pendulum', '--port', '9000'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--port needs --serve/);
  });
});

const { FoxgloveClient } = foxglove;

describe('live in Foxglove (the protocol\'s own client class over a real socket)', () => {
  let session: ControllerSession;
  let telemetry: Telemetry;
  let url: string;
  before(async () => {
    const params = resolveRunParams('pendulum', { ...readParamsFile(CONFIG), planner: 'mppi', threads: 1, 'mppi.samples': 64, 'mppi.iterations': 2 });
    session = await ControllerSession.create(params, { lockstep: true });
    telemetry = new Telemetry(session, { port: 0, topics: logTopics(session.codec.type) });
    url = (await telemetry.listen()).replace(/^http/, 'ws');
  });
  after(async () => {
    await telemetry.close();
    session.dispose();
  });

  function connect(subprotocol: string) {
    const ws = new WebSocket(url, [subprotocol]);
    const client = new FoxgloveClient({ ws: ws as never });
    const advertised = new Promise<Channel[]>((resolve) => client.on('advertise', resolve));
    return { ws, client, advertised };
  }

  /** Ticks and offers every topic until `until` holds (the subscription takes a moment to arrive). */
  async function tickUntil(until: () => boolean, built: { plan: number }) {
    for (let k = 0; k < 100 && !until(); k++) {
      const t = 0.1 * k;
      session.onStateMessage(session.codec.encode([0.3, 0], t), t);
      const tick = await session.tick(t);
      telemetry.observe(tick);
      telemetry.publish('/tempered_mpc/status', t, () => session.statusMessage(tick));
      telemetry.publish('/tempered_mpc/plan', t, () => {
        built.plan++;
        return session.planMessage(tick);
      });
      telemetry.publish(SCENE_TOPIC, t, () => session.sceneMessage(tick));
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  it('advertises the log\'s channels, sends frames that fit the advertised schema, and builds nothing for a channel no one subscribes to', async () => {
    const { ws, client, advertised } = connect('foxglove.websocket.v1');
    try {
      const channels = await advertised;
      assert.deepEqual(channels.map((c) => c.topic).sort(), [...Object.keys(logTopics(session.codec.type)), SCENE_TOPIC].sort());
      const status = channels.find((c) => c.topic === '/tempered_mpc/status')!;
      assert.deepEqual([status.encoding, status.schemaEncoding, status.schemaName], ['protobuf', 'protobuf', 'tempered_mpc_msgs.msg.PlannerStatus']);
      // decoded as Foxglove decodes it: from the advertised FileDescriptorSet alone
      const root = (protobuf.Root as unknown as { fromDescriptor(d: unknown): protobuf.Root }).fromDescriptor(descriptor.FileDescriptorSet.decode(Buffer.from(status.schema, 'base64')));
      const type = root.lookupType(status.schemaName);
      client.subscribe(status.id);
      const frames: Record<string, unknown>[] = [];
      client.on('message', (m) => frames.push(type.toObject(type.decode(new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength)), { defaults: true, arrays: true })));
      const built = { plan: 0 };
      await tickUntil(() => frames.length >= 3, built);
      assert.ok(frames.length >= 3);
      assert.equal(built.plan, 0, 'the plan (a rollout) is not built while no one subscribes to it');
      for (const frame of frames) {
        assert.equal(frame.planner, 'mppi');
        assert.ok((frame.ticks as number) > 0);
        assert.equal(typeof frame.solve_ms, 'number');
      }
      assert.equal((frames.at(-1) as { mode_name: string }).mode_name, 'ok');
    } finally {
      ws.close();
    }
  });

  it('draws the plan as a foxglove.SceneUpdate: the pendulum at the plan\'s start and its tip\'s path, on the rod\'s circle', async () => {
    const { ws, client, advertised } = connect('foxglove.websocket.v1');
    try {
      const scene = (await advertised).find((c) => c.topic === SCENE_TOPIC)!;
      assert.deepEqual([scene.encoding, scene.schemaName, scene.schemaEncoding], ['json', 'foxglove.SceneUpdate', 'jsonschema']);
      assert.equal(JSON.parse(scene.schema).title, 'foxglove.SceneUpdate');
      client.subscribe(scene.id);
      const frames: { entities: { id: string; lines: { points: { x: number; y: number }[] }[] }[] }[] = [];
      client.on('message', (m) => frames.push(JSON.parse(new TextDecoder().decode(m.data))));
      await tickUntil(() => frames.some((f) => f.entities.length === 2), { plan: 0 });
      const frame = frames.find((f) => f.entities.length === 2)!;
      const plan = frame.entities.find((e) => e.id === 'plan')!.lines[0].points;
      assert.equal(plan.length, session.model.horizon + 1, 'one point per predicted state');
      for (const p of plan) assert.ok(Math.abs(Math.hypot(p.x, p.y) - 1) < 1e-9, 'the tip stays on the 1 m rod\'s circle');
      assert.deepEqual(frame.entities.find((e) => e.id === 'system')!.lines[0].points[0], { x: 0, y: 0, z: 0 }, 'the rod starts at the pivot');
    } finally {
      ws.close();
    }
  });

  it('sets a parameter through the `parameters` capability (the live-parameter path), and refuses a bad one with a status', async () => {
    const { ws, client, advertised } = connect('foxglove.sdk.v1');
    try {
      await advertised;
      assert.equal(ws.protocol, 'foxglove.sdk.v1', 'the SDK\'s subprotocol name is accepted too');
      const answer = (id: string) => new Promise<{ parameters: { name: string; value: unknown }[] }>((resolve) => {
        client.on('parameterValues', (e) => {
          if (e.id === id) resolve(e);
        });
      });
      const got = answer('get');
      client.getParameters(['mppi.temperature', 'planner'], 'get');
      assert.deepEqual((await got).parameters.map((p) => p.name), ['mppi.temperature', 'planner']);
      const set = answer('set');
      client.setParameters([{ name: 'mppi.temperature', value: 0.07 }], 'set');
      assert.deepEqual((await set).parameters, [{ name: 'mppi.temperature', value: 0.07, type: 'float64' }]);
      assert.equal(session.parameterValues()['mppi.temperature'], 0.07);
      const refused = new Promise<string>((resolve) => client.on('status', (s) => resolve(s.message)));
      const after = answer('bad');
      client.setParameters([{ name: 'mppi.temperature', value: -1 }, { name: 'mppi.samples', value: 32 }], 'bad');
      assert.match(await refused, /nothing applied: mppi\.temperature must be/);
      assert.deepEqual((await after).parameters.map((p) => p.value), [0.07, 64], 'unchanged, the good key included');
    } finally {
      ws.close();
    }
  });
});

describe('Foxglove beyond loopback', () => {
  it('a connection without ?token=TOKEN may watch but not change parameters', async () => {
    const params = resolveRunParams('pendulum', { planner: 'mppi', threads: 1, 'mppi.samples': 64, 'mppi.iterations': 2 });
    const session = await ControllerSession.create(params, { lockstep: true });
    const telemetry = new Telemetry(session, { host: '0.0.0.0', port: 0, topics: logTopics(session.codec.type) });
    const base = (await telemetry.listen()).replace(/^http:\/\/[^:]+/, 'ws://127.0.0.1');
    const attempt = async (url: string, value: number) => {
      const ws = new WebSocket(url, ['foxglove.websocket.v1']);
      const client = new FoxgloveClient({ ws: ws as never });
      await new Promise((r) => client.on('advertise', r));
      const status = new Promise<string>((r) => client.on('status', (s) => r(s.message)));
      const values = new Promise<void>((r) => client.on('parameterValues', () => r()));
      client.setParameters([{ name: 'mppi.temperature', value }], 'set');
      const outcome = await Promise.race([status, values.then(() => 'applied')]);
      ws.close();
      return outcome;
    };
    try {
      assert.match(await attempt(`${base}/`, 0.06), /nothing applied: a change needs the token/);
      assert.equal(session.parameterValues()['mppi.temperature'], 0.01);
      assert.equal(await attempt(`${base}/?token=${telemetry.token}`, 0.06), 'applied');
      assert.equal(session.parameterValues()['mppi.temperature'], 0.06);
    } finally {
      await telemetry.close();
      session.dispose();
    }
  });
});

describe('back-pressure: a client that stops reading', () => {
  it('is dropped once CLIENT_QUEUE_LIMIT_BYTES (1 MB) are queued for it, while a reading client keeps getting every message', async function () {
    const params = resolveRunParams('pendulum', { planner: 'mppi', threads: 1, 'mppi.samples': 64, 'mppi.iterations': 2 });
    const session = await ControllerSession.create(params, { lockstep: true });
    const telemetry = new Telemetry(session, { port: 0, topics: logTopics(session.codec.type) });
    const url = (await telemetry.listen()).replace(/^http/, 'ws');
    const subscribeAll = (ws: WebSocket, onAdvertised: () => void) => ws.on('message', (data: Buffer, binary: boolean) => {
      if (binary) return;
      const msg = JSON.parse(data.toString()) as { op: string; channels?: Channel[] };
      if (msg.op !== 'advertise') return;
      ws.send(JSON.stringify({ op: 'subscribe', subscriptions: msg.channels!.map((c, k) => ({ id: k, channelId: c.id })) }));
      onAdvertised();
    });
    const stalled = new WebSocket(url, ['foxglove.websocket.v1']);
    const reading = new WebSocket(url, ['foxglove.websocket.v1']);
    let received = 0;
    reading.on('message', (_d: Buffer, binary: boolean) => {
      if (binary) received++;
    });
    try {
      await Promise.all([
        new Promise<void>((r) => subscribeAll(stalled, () => {
          (stalled as unknown as { _socket: { pause(): void } })._socket.pause();
          r();
        })),
        new Promise<void>((r) => subscribeAll(reading, r)),
      ]);
      await new Promise((r) => setTimeout(r, 100));
      // plans of 40 kB each: a stalled reader's backlog outgrows the kernel's buffers and then the limit
      const big = { controls: new Array(5000).fill(0.5) };
      const plan = () => ({ ...session.planMessage({ timeS: 0, control: [0], plan: null, mode: 'ok', reason: '', planned: false, solveMs: 0, cost: 1, info: {}, diagnostics: {} }), ...big });
      let sent = 0;
      for (; sent < 2000 && telemetry.foxglove.dropped === 0; sent++) {
        telemetry.publish('/tempered_mpc/plan', sent * 0.1, plan);
        if (sent % 20 === 0) await new Promise((r) => setTimeout(r, 5));
        assert.ok(telemetry.foxglove.largestQueueBytes <= CLIENT_QUEUE_LIMIT_BYTES + 100 * 1024, `backlog ${telemetry.foxglove.largestQueueBytes} B`);
      }
      assert.equal(telemetry.foxglove.dropped, 1, `dropped after ${sent} plans`);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(received, sent, 'the reading client got every message');
    } finally {
      stalled.terminate();
      reading.close();
      await telemetry.close();
      session.dispose();
    }
  });
});

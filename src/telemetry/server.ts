import { SCENE_TOPIC } from './channels.js';
import { plannerDescriptor } from '../planners/registry.js';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify, { FastifyInstance } from 'fastify';
import type { ControllerCounters, TickResult } from '../controller/controller.js';
import { protobufSchema } from '../interfaces/protobuf.js';
import { SCENE_UPDATE, SCENE_UPDATE_SCHEMA } from '../interfaces/scene.js';
import { Model, physicalAngles, physicalNames, toPhysical } from '../models/model.js';
import type { ParamEntry, ParamValue, SetResult } from '../params.js';
import { describe, rangeText } from '../params.js';
import { InputError } from '../input-error.js';
import type { SimControl } from '../run/loop.js';
import { CONTROLLER_NODE, nodeParameterYaml } from '../run/params-file.js';
import { CLIENT_MESSAGE_ENTRIES_LIMIT, FoxgloveLive } from './foxglove-live.js';
import { sameOrigin } from './origin.js';
import { ControllerMetrics } from './metrics.js';

/**
 * What the server reads and changes: one ControllerSession, whichever door
 * drives it. Live parameter changes (PATCH, Foxglove) take the same path as
 * the ROS node's.
 */
export interface TelemetrySource {
  readonly planner: { readonly name: string };
  readonly budgetMs: number;
  readonly periodS: number;
  readonly live: { readonly list: readonly ParamEntry[] };
  readonly model: Model;
  readonly controller: { readonly counters: Readonly<ControllerCounters>; readonly lastRejection: string; readonly currentReference: readonly number[] };
  parameterValues(): Record<string, ParamValue>;
  requestParameters(changes: Readonly<Record<string, unknown>>): SetResult;
}

export interface TelemetryOptions {
  /** default 127.0.0.1 */
  host?: string;
  /** default 8765; 0 = any free port */
  port?: number;
  /** needed for changes when bound beyond loopback; generated there when not given */
  token?: string;
  /** the topics (and their message types) offered live to Foxglove clients: those of the MCAP log */
  topics?: Readonly<Record<string, string>>;
  /** of the live channels (default protobuf) */
  encoding?: 'protobuf' | 'json';
  /** an embedded run's simulator controls (pause, step, reset, push) */
  simulator?: { control: SimControl; stateNames: readonly string[] };
}

/** The dashboard's static files (dashboard/ at the package root) and the chart library's. */
const DASHBOARD_DIR = fileURLToPath(new URL('../../../dashboard/', import.meta.url));
const UPLOT_DIR = dirname(createRequire(import.meta.url).resolve('uplot'));
const STATIC: Readonly<Record<string, { path: string; type: string }>> = {
  '/': { path: join(DASHBOARD_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
  '/dashboard.js': { path: join(DASHBOARD_DIR, 'dashboard.js'), type: 'text/javascript; charset=utf-8' },
  '/dashboard.css': { path: join(DASHBOARD_DIR, 'dashboard.css'), type: 'text/css; charset=utf-8' },
  '/vendor/uPlot.js': { path: join(UPLOT_DIR, 'uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  '/vendor/uPlot.css': { path: join(UPLOT_DIR, 'uPlot.min.css'), type: 'text/css; charset=utf-8' },
  '/vendor/protobuf.js': { path: join(dirname(createRequire(import.meta.url).resolve('protobufjs')), 'dist', 'protobuf.min.js'), type: 'text/javascript; charset=utf-8' },
};

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);


/** The live topic of the plan as a foxglove.SceneUpdate. */

/**
 * Live telemetry and tuning over HTTP, free of any transport to the robot:
 * `run --serve` and the ROS node start the same server around their
 * session. Reads are open; a change (PATCH) needs the token when the server
 * listens beyond loopback (or whenever one was given).
 */
export class Telemetry {
  readonly metrics: ControllerMetrics;
  readonly app: FastifyInstance;
  readonly token: string | undefined;
  /** Foxglove WebSocket clients, on the same port */
  readonly foxglove: FoxgloveLive;
  private lastTick: TickResult | undefined;
  /** the port the server listens on (--serve, --port 0: the one the system chose), once listening */
  port: number | undefined;

  constructor(private readonly source: TelemetrySource, readonly options: TelemetryOptions = {}) {
    const host = options.host ?? '127.0.0.1';
    // an empty token would let a change through with no Authorization header at all
    if (options.token !== undefined && options.token.trim() === '') throw new InputError('the telemetry token must not be empty (leave it unset on loopback, or give one)');
    this.token = options.token ?? (LOOPBACK.has(host) ? undefined : randomBytes(18).toString('base64url'));
    this.metrics = new ControllerMetrics(source.planner.name, source.budgetMs / 1000);
    this.app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
    this.foxglove = new FoxgloveLive(source, options.topics ?? {}, options.encoding ?? 'protobuf', this.token);
    // the plan in Foxglove's 3-D panel, where the system has a planar sketch
    if (source.model.def.sketch) this.foxglove.addJsonChannel(SCENE_TOPIC, SCENE_UPDATE, SCENE_UPDATE_SCHEMA);
    this.foxglove.attach(this.app.server);
    this.routes();
  }

  /** Offers a message on a live topic; `build` runs only when a client subscribes to it. */
  publish(topic: string, timeS: number, build: () => object): void {
    this.foxglove.publish(topic, timeS, build);
  }

  /** The doors call this after every tick. */
  observe(tick: TickResult): void {
    this.lastTick = tick;
    this.metrics.observe(tick, this.source.controller.counters);
  }

  /** Listens; returns the address. */
  async listen(): Promise<string> {
    const address = await this.app.listen({ host: this.options.host ?? '127.0.0.1', port: this.options.port ?? 8765 });
    const bound = this.app.server.address();
    this.port = typeof bound === 'object' && bound ? bound.port : undefined;
    return address;
  }

  /** The parameters in effect, with telemetryPort as served (a run served by --serve has telemetryPort 0 in its parameters). */
  private parameterValues(): Record<string, ParamValue> {
    const values = this.source.parameterValues();
    return this.port !== undefined && Object.hasOwn(values, 'telemetryPort') ? { ...values, telemetryPort: this.port } : values;
  }

  close(): Promise<void> {
    this.foxglove.close();
    return this.app.close();
  }

  private routes(): void {
    const { app, source } = this;
    // every state-changing route: a page of another origin may not call it, token or not
    app.addHook('onRequest', async (req, reply) => {
      if (req.method === 'GET' || req.method === 'HEAD') return;
      if (!sameOrigin(req.headers.origin, req.headers.host)) {
        return reply.code(403).send({ error: `refused: a page at ${String(req.headers.origin).slice(0, 100)} may not change this server (cross-origin)` });
      }
    });
    for (const [url, file] of Object.entries(STATIC)) {
      app.get(url, async (_req, reply) => reply.type(file.type).send(await readFile(file.path)));
    }
    app.get('/params.yaml', async (_req, reply) => {
      const yaml = [
        '# The controller\'s parameters as they are now (tempered-mpc telemetry): `run --params` and the launch files read this file.',
        ...nodeParameterYaml(CONTROLLER_NODE, { entries: source.live.list, values: this.parameterValues() }),
      ].join('\n');
      return reply.type('application/yaml; charset=utf-8').header('content-disposition', `attachment; filename="${CONTROLLER_NODE}.yaml"`).send(`${yaml}\n`);
    });
    // the live channels' protobuf types as protobufjs JSON, by the schema name a channel advertises (the dashboard decodes with them)
    const protoTypes = new Map(Object.values(this.options.topics ?? {}).map((type) => [protobufSchema(type).name, type]));
    app.get<{ Params: { name: string } }>('/protobuf/:name', async (req, reply) => {
      const type = protoTypes.get(req.params.name);
      if (!type) return reply.code(404).send({ error: `no live channel has the protobuf type '${req.params.name}'` });
      return protobufSchema(type).json;
    });
    const sim = this.options.simulator;
    app.get('/sim', async () => (sim ? { available: true, paused: sim.control.paused, stateNames: sim.stateNames } : { available: false }));
    app.post<{ Params: { action: string } }>('/sim/:action', async (req, reply) => {
      if (this.token !== undefined && !this.authorized(req.headers.authorization)) {
        return reply.code(401).send({ error: 'a change needs the token: Authorization: Bearer TOKEN (printed when the server started)' });
      }
      if (!sim) return reply.code(404).send({ error: 'no simulator here: pause, step, reset and push exist in an embedded run (tempered-mpc run --serve)' });
      const { action } = req.params;
      if (action === 'pause') sim.control.pause();
      else if (action === 'resume') sim.control.resume();
      else if (action === 'step') sim.control.step();
      else if (action === 'reset') sim.control.reset();
      else if (action === 'push') {
        const body = (req.body ?? {}) as { state?: unknown; size?: unknown };
        if (typeof body.state !== 'number' || typeof body.size !== 'number') {
          return reply.code(400).send({ error: `a push needs {"state": INDEX, "size": NUMBER}, got state ${describe(body.state)} and size ${describe(body.size)}` });
        }
        const problem = sim.control.push(body.state, body.size, sim.stateNames.length);
        if (problem) return reply.code(400).send({ error: problem });
      } else return reply.code(404).send({ error: `unknown simulator action '${basename(action)}' (pause, resume, step, reset, push)` });
      return { paused: sim.control.paused };
    });
    app.get('/healthz', async () => ({ ok: true }));
    app.get('/status', async () => {
      const t = this.lastTick;
      const limits = source.model.controlLimits;
      return {
        planner: source.planner.name,
        // how to draw the planner's diagnostics (PlannerStatus.series), as its registry entry declares them
        plannerCharts: plannerDescriptor(source.planner.name).charts,
        system: source.model.name,
        stateNames: physicalNames(source.model),
        // which states are angles (plotted on the goal's branch), by the models' one rule
        angles: physicalAngles(source.model),
        controlNames: source.model.def.controlNames,
        stateUnits: source.model.def.physicalUnits,
        controlUnits: source.model.def.controlUnits,
        // the goal region as bands about the goal (null: unbounded along that state), and how long it must be held
        goalHalfWidths: source.model.def.goalRegion?.halfWidths.map(finiteOrNull) ?? null,
        holdS: source.model.def.goalRegion?.holdS ?? null,
        controlLimits: { lower: limits.lower.map(finiteOrNull), upper: limits.upper.map(finiteOrNull) },
        goal: toPhysical(source.model, source.controller.currentReference),
        periodMs: 1000 * source.periodS,
        budgetMs: source.budgetMs,
        counters: source.controller.counters,
        lastRejection: source.controller.lastRejection,
        tick: t ? { timeS: t.timeS, mode: t.mode, reason: t.reason, control: t.control, cost: finiteOrNull(t.cost) } : null,
        lastSolve: t?.planned ? { solveMs: t.solveMs, info: t.info } : null,
      };
    });
    app.get('/metrics', async (_req, reply) => {
      reply.type(this.metrics.registry.contentType);
      return this.metrics.registry.metrics();
    });
    app.get('/params', async () => ({
      values: this.parameterValues(),
      schema: source.live.list.map((e) => ({
        key: e.key, kind: e.def.kind, doc: e.def.doc, rule: rangeText(e.def), readOnly: e.readOnly ?? null,
        ...(e.def.kind === 'number' ? { min: e.def.min ?? null, max: e.def.max ?? null, integer: e.def.integer ?? false } : {}),
        ...(e.def.kind === 'enum' ? { choices: e.def.choices } : {}),
      })),
    }));
    app.patch('/params', async (req, reply) => {
      if (this.token !== undefined && !this.authorized(req.headers.authorization)) {
        return reply.code(401).send({ error: 'a change needs the token: Authorization: Bearer TOKEN (printed when the server started)' });
      }
      const body = req.body;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        return reply.code(400).send({ error: 'the body must be a JSON object of parameter changes, e.g. {"mppi.temperature": 0.02}', reasons: {} });
      }
      const count = Object.keys(body).length;
      if (count > CLIENT_MESSAGE_ENTRIES_LIMIT) return reply.code(400).send({ error: `nothing applied: ${count} parameters in one change, at most ${CLIENT_MESSAGE_ENTRIES_LIMIT}`, reasons: {} });
      const result = source.requestParameters(body as Record<string, unknown>);
      if (!result.ok) return reply.code(400).send({ error: 'nothing applied', reasons: result.reasons });
      return { applied: result.applied, appliesAt: 'the next tick' };
    });
  }

  private authorized(header: string | undefined): boolean {
    const given = Buffer.from(header?.startsWith('Bearer ') ? header.slice(7) : '');
    const want = Buffer.from(this.token!);
    return given.length === want.length && timingSafeEqual(given, want);
  }
}

const finiteOrNull = (v: number) => (Number.isFinite(v) ? v : null);

/**
 * Starts the telemetry server of a session as its parameters ask
 * (telemetryPort, telemetryBind), with a door's overrides (`run --serve
 * --host --port --token`); the error names the address it could not take.
 */
export async function serveTelemetry(
  source: TelemetrySource,
  params: { telemetryPort: number; telemetryBind: 'loopback' | 'all'; telemetryEncoding: 'protobuf' | 'json' },
  topics: Readonly<Record<string, string>>,
  overrides: { host?: string; port?: number; token?: string; simulator?: TelemetryOptions['simulator'] } = {},
): Promise<{ telemetry: Telemetry; address: string }> {
  const host = overrides.host ?? (params.telemetryBind === 'all' ? '0.0.0.0' : '127.0.0.1');
  const port = overrides.port ?? params.telemetryPort;
  const telemetry = new Telemetry(source, { host, port, token: overrides.token, topics, simulator: overrides.simulator, encoding: params.telemetryEncoding });
  try {
    return { telemetry, address: await telemetry.listen() };
  } catch (e) {
    await telemetry.close().catch(() => undefined);
    throw new Error(`the telemetry server could not listen on ${host}:${port}: ${(e as Error).message}`);
  }
}

/** One line for the log: where to look, and the token when a change needs one. */
export function telemetryBanner(telemetry: Telemetry, address: string): string {
  return `telemetry: ${address} (/status, /metrics, /params; Foxglove: ${address.replace(/^http/, 'ws')})`
    + (telemetry.token ? `; changes need the token: Authorization: Bearer ${telemetry.token} (HTTP), ${address.replace(/^http/, 'ws')}/?token=${telemetry.token} (Foxglove), ${address}/?token=${telemetry.token} (dashboard)` : '');
}

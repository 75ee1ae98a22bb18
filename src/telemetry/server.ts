import { randomBytes, timingSafeEqual } from 'node:crypto';
import Fastify, { FastifyInstance } from 'fastify';
import type { ControllerCounters, TickResult } from '../controller/controller.js';
import type { ParamEntry, ParamValue, SetResult } from '../params.js';
import { rangeText } from '../params.js';
import { FoxgloveLive } from './foxglove-live.js';
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
  readonly controller: { readonly counters: Readonly<ControllerCounters>; readonly lastRejection: string };
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
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

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

  constructor(private readonly source: TelemetrySource, readonly options: TelemetryOptions = {}) {
    const host = options.host ?? '127.0.0.1';
    this.token = options.token ?? (LOOPBACK.has(host) ? undefined : randomBytes(18).toString('base64url'));
    this.metrics = new ControllerMetrics(source.planner.name, source.budgetMs / 1000);
    this.app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
    this.foxglove = new FoxgloveLive(source, options.topics ?? {});
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
    return this.app.listen({ host: this.options.host ?? '127.0.0.1', port: this.options.port ?? 8765 });
  }

  close(): Promise<void> {
    this.foxglove.close();
    return this.app.close();
  }

  private routes(): void {
    const { app, source } = this;
    app.get('/healthz', async () => ({ ok: true }));
    app.get('/status', async () => {
      const t = this.lastTick;
      return {
        planner: source.planner.name,
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
      values: source.parameterValues(),
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
  params: { telemetryPort: number; telemetryBind: 'loopback' | 'all' },
  topics: Readonly<Record<string, string>>,
  overrides: { host?: string; port?: number; token?: string } = {},
): Promise<{ telemetry: Telemetry; address: string }> {
  const host = overrides.host ?? (params.telemetryBind === 'all' ? '0.0.0.0' : '127.0.0.1');
  const port = overrides.port ?? params.telemetryPort;
  const telemetry = new Telemetry(source, { host, port, token: overrides.token, topics });
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
    + (telemetry.token ? `; changes need the token: Authorization: Bearer ${telemetry.token}` : '');
}

import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import foxglove from '@foxglove/ws-protocol';
import type { Parameter } from '@foxglove/ws-protocol';
import { WebSocket, WebSocketServer } from 'ws';
import { msgJsonSchema } from '../interfaces/definitions.js';
import { protobufSchema } from '../interfaces/protobuf.js';
import { PARAMETERS_PER_REQUEST_LIMIT, type ParamValue, type SetResult } from '../params.js';
import { sameOrigin } from './origin.js';

/** The subprotocol names a Foxglove client may offer: the protocol's own and the SDK's newer name for the same protocol. */
export const SUBPROTOCOLS = ['foxglove.websocket.v1', 'foxglove.sdk.v1'] as const;

/** Bytes queued for one client beyond which it is dropped: a stalled client must not grow memory. */
export const CLIENT_QUEUE_LIMIT_BYTES = 2 ** 20;

/** The largest frame a client may send (HTTP bodies have the same cap); a larger one closes the connection (code 1009). */
export const CLIENT_FRAME_LIMIT_BYTES = 64 * 1024;

/** Most entries one client message may carry (subscriptions, parameter names or values; the keys of a PATCH): a message with more is refused whole, with one reason. */
export const CLIENT_MESSAGE_ENTRIES_LIMIT = PARAMETERS_PER_REQUEST_LIMIT;

/** Origins whose pages may change parameters without a token (Foxglove's web app connects from here). */
const FOXGLOVE_WEB_ORIGINS: readonly string[] = ['https://app.foxglove.dev'];

// a CommonJS package: its named exports come through the default import
const { FoxgloveServer, ServerCapability } = foxglove;

export interface LiveParameterSource {
  parameterValues(): Record<string, ParamValue>;
  requestParameters(changes: Readonly<Record<string, unknown>>): SetResult;
}

/**
 * Live telemetry in Foxglove over its WebSocket protocol. The one Node
 * server implementation (@foxglove/ws-protocol, no longer developed, pinned)
 * stays behind this class. It advertises the channels and schemas of the
 * MCAP log (protobuf by default, JSON selectable), encodes a message only
 * for a channel someone subscribes to,
 * serves the `parameters` capability through the live-parameter path (so
 * Foxglove's Parameters panel edits the controller), and drops a client that
 * stops reading once CLIENT_QUEUE_LIMIT_BYTES are queued for it.
 */
export class FoxgloveLive {
  private readonly server: InstanceType<typeof FoxgloveServer>;
  private readonly wss: WebSocketServer;
  private readonly channels = new Map<string, { id: number; encode: (message: object) => Uint8Array }>();
  private readonly subscribed = new Set<number>();
  private readonly clients = new Set<WebSocket>();
  /** connections that may change parameters (all of them when no token is needed) */
  private readonly authorized = new WeakSet<object>();
  /** clients dropped for not reading */
  dropped = 0;
  /** the longest time one client message held the command thread [ms] (the fuzzing's property) */
  longestMessageMs = 0;

  constructor(
    private readonly source: LiveParameterSource,
    topics: Readonly<Record<string, string>>,
    readonly encoding: 'protobuf' | 'json' = 'protobuf',
    /** when set, only a connection made with ?token=TOKEN may change parameters */
    private readonly token?: string,
    name = 'tempered-mpc',
  ) {
    this.server = new FoxgloveServer({ name, capabilities: [ServerCapability.parameters, ServerCapability.parametersSubscribe] });
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: CLIENT_FRAME_LIMIT_BYTES,
      handleProtocols: (offered) => [...offered].find((p) => (SUBPROTOCOLS as readonly string[]).includes(p)) ?? false,
    });
    this.wss.on('connection', (ws, req) => {
      this.clients.add(ws);
      const given = new URL(req.url ?? '/', 'ws://host').searchParams.get('token');
      // without a token, only a connection from no page, this server's own or a trusted one may change parameters: a page elsewhere may watch
      if (this.token === undefined ? sameOrigin(req.headers.origin, req.headers.host, FOXGLOVE_WEB_ORIGINS) : given === this.token) this.authorized.add(ws);
      ws.on('close', () => this.clients.delete(ws));
      ws.on('error', () => ws.terminate());
      this.server.handleConnection(ws as never, `${req.socket.remoteAddress}:${req.socket.remotePort}`);
      this.guard(ws);
    });
    const json = new TextEncoder();
    for (const [topic, type] of Object.entries(topics)) {
      if (encoding === 'protobuf') {
        const proto = protobufSchema(type);
        const id = this.server.addChannel({
          topic, encoding: 'protobuf', schemaName: proto.name, schemaEncoding: 'protobuf', schema: Buffer.from(proto.fileDescriptorSet).toString('base64'),
        });
        this.channels.set(topic, { id, encode: proto.encode });
      } else {
        const id = this.server.addChannel({ topic, encoding: 'json', schemaName: type, schemaEncoding: 'jsonschema', schema: JSON.stringify(msgJsonSchema(type)) });
        this.channels.set(topic, { id, encode: (m) => json.encode(JSON.stringify(m)) });
      }
    }
    this.server.on('subscribe', (id) => this.subscribed.add(id));
    this.server.on('unsubscribe', (id) => this.subscribed.delete(id));
    this.server.on('error', () => {
      // a client's protocol error is that client's; the server carries on
    });
    this.server.on('getParameters', ({ parameterNames, id }, connection) => {
      const values = this.source.parameterValues();
      const names = parameterNames.length ? parameterNames.filter((n) => Object.hasOwn(values, n)) : Object.keys(values);
      this.server.publishParameterValues(names.map((n) => toFoxglove(n, values[n])), id, connection);
    });
    this.server.on('setParameters', ({ parameters, id }, connection) => {
      if (!connection || !this.authorized.has(connection)) {
        this.server.sendStatus({ level: 2, message: 'nothing applied: a change needs the token: connect to ws://HOST:PORT/?token=TOKEN (printed when the server started)' }, connection);
        return;
      }
      const changes = Object.fromEntries(parameters.map((p) => [p.name, p.value]));
      const result = this.source.requestParameters(changes);
      if (!result.ok) {
        this.server.sendStatus({ level: 2, message: `nothing applied: ${Object.values(result.reasons).join('; ')}` }, connection);
      } else {
        this.server.updateParameterValues(Object.entries(result.applied).map(([n, v]) => toFoxglove(n, v)));
      }
      // the protocol answers a set with the values now in effect (refused ones unchanged)
      if (id !== undefined) {
        const values = this.source.parameterValues();
        this.server.publishParameterValues(parameters.map((p) => p.name).filter((n) => Object.hasOwn(values, n)).map((n) => toFoxglove(n, values[n])), id, connection);
      }
    });
  }

  /**
   * Bounds the work one client message can cause on the command thread: the
   * protocol library answers every entry of a message (100,000 subscriptions
   * would be 100,000 status replies), so a message with more than
   * CLIENT_MESSAGE_ENTRIES_LIMIT entries is refused whole, with one status.
   * Frames are already capped at CLIENT_FRAME_LIMIT_BYTES.
   */
  private guard(ws: WebSocket): void {
    const handle = ws.onmessage;
    ws.onmessage = (event) => {
      const start = performance.now();
      this.handleGuarded(ws, event, handle);
      this.longestMessageMs = Math.max(this.longestMessageMs, performance.now() - start);
    };
  }

  private handleGuarded(ws: WebSocket, event: WebSocket.MessageEvent, handle: WebSocket['onmessage']): void {
    if (typeof event.data === 'string') {
      let entries = 0;
      let op = '';
      try {
        const message = JSON.parse(event.data) as Record<string, unknown>;
        op = String(message?.op ?? '');
        for (const key of ['subscriptions', 'subscriptionIds', 'parameterNames', 'parameters', 'channels', 'channelIds']) {
          const list = message?.[key];
          if (Array.isArray(list)) entries = Math.max(entries, list.length);
        }
      } catch {
        this.server.sendStatus({ level: 2, message: 'refused: a message that is not JSON' }, ws as never);
        return;
      }
      if (entries > CLIENT_MESSAGE_ENTRIES_LIMIT) {
        this.server.sendStatus({ level: 2, message: `refused: '${op.slice(0, 40)}' with ${entries} entries, at most ${CLIENT_MESSAGE_ENTRIES_LIMIT} in one message` }, ws as never);
        return;
      }
    }
    handle?.call(ws, event);
  }

  /** A JSON channel beside the message types of msgs/ (e.g. foxglove.SceneUpdate for the 3-D panel). */
  addJsonChannel(topic: string, schemaName: string, schema: object): void {
    const json = new TextEncoder();
    const id = this.server.addChannel({ topic, encoding: 'json', schemaName, schemaEncoding: 'jsonschema', schema: JSON.stringify(schema) });
    this.channels.set(topic, { id, encode: (m) => json.encode(JSON.stringify(m)) });
  }

  /** Takes WebSocket upgrades on the HTTP server (any path). */
  attach(http: Server): void {
    http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.wss.handleUpgrade(req, socket, head, (ws) => this.wss.emit('connection', ws, req));
    });
  }

  /** The most bytes queued for any one client now (a stalled client's backlog, bounded by CLIENT_QUEUE_LIMIT_BYTES). */
  get largestQueueBytes(): number {
    let most = 0;
    for (const ws of this.clients) most = Math.max(most, ws.bufferedAmount);
    return most;
  }

  /** Whether anyone listens on `topic` (build a costly message only then). */
  wants(topic: string): boolean {
    const channel = this.channels.get(topic);
    return channel !== undefined && this.subscribed.has(channel.id);
  }

  /** Sends a message on `topic` to its subscribers; `build` runs only when there are some. */
  publish(topic: string, timeS: number, build: () => object): void {
    const channel = this.channels.get(topic);
    if (channel === undefined || !this.subscribed.has(channel.id)) return;
    for (const ws of this.clients) {
      if (ws.bufferedAmount > CLIENT_QUEUE_LIMIT_BYTES) {
        this.dropped++;
        this.clients.delete(ws);
        ws.terminate();
      }
    }
    this.server.sendMessage(channel.id, BigInt(Math.round(timeS * 1e9)), channel.encode(build()) as Uint8Array<ArrayBuffer>);
  }

  close(): void {
    for (const ws of this.clients) ws.terminate();
    this.clients.clear();
    this.wss.close();
  }
}

function toFoxglove(name: string, value: ParamValue): Parameter {
  if (typeof value === 'number') return { name, value, type: 'float64' };
  if (typeof value === 'boolean') return { name, value };
  if (Array.isArray(value) && value.every((v) => typeof v === 'number')) return { name, value: [...value] as number[], type: 'float64_array' };
  return { name, value: typeof value === 'string' ? value : [...value] };
}

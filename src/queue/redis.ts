import { isIP } from 'node:net';
import type { Queue, RedisOptions } from 'bullmq';
import type { Redis } from 'ioredis';

/**
 * BullMQ and ioredis, loaded by the commands that use a queue: every other
 * command (and every job a sweep starts, a process each) is spared the
 * second or so their loading costs.
 */
export const loadBullmq = (): Promise<typeof import('bullmq')> => import('bullmq');
export const newRedis = async (options: RedisOptions): Promise<Redis> => new (await import('ioredis')).Redis(options);
import { InputError } from '../input-error.js';

/** The one BullMQ queue sweeps (and train-prior's actors) put their jobs on and workers take them from. */
export const QUEUE_NAME = 'tempered-mpc-jobs';

/** A Redis URL without its password, for messages. */
export function redisLabel(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.hostname}:${u.port || 6379}${u.pathname && u.pathname !== '/' ? u.pathname : ''}`;
  } catch {
    return url.replace(/:[^:@/]*@/, ':***@');
  }
}

/**
 * A Redis URL (redis://[user:password@]host[:port][/db], or rediss:// for
 * TLS) as connection options for BullMQ. Commands wait for a lost
 * connection to come back instead of failing (BullMQ's workers need that),
 * and reconnecting never gives up: the caller says that it is waiting.
 */
export function redisConnection(url: string): RedisOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InputError(`--queue '${redisLabel(url)}' is not a URL (redis://host:port or rediss://host:port for TLS)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new InputError(`--queue '${redisLabel(url)}': the scheme must be redis:// or rediss:// (TLS), got ${u.protocol}//`);
  if (!u.hostname) throw new InputError(`--queue '${redisLabel(url)}' names no host`);
  const port = u.port ? Number(u.port) : 6379;
  const db = u.pathname && u.pathname !== '/' ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0 || db > 15) throw new InputError(`--queue '${redisLabel(url)}': the database must be 0..15, got '${u.pathname.slice(1)}'`);
  if (u.search) throw new InputError(`--queue '${redisLabel(url)}': options after '?' are not read; give host, port, database and user:password only`);
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''), port, db,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    // TLS verifies the server against the system's CAs (and NODE_EXTRA_CA_CERTS)
    ...(u.protocol === 'rediss:' ? { tls: isIP(u.hostname.replace(/^\[|\]$/g, '')) ? {} : { servername: u.hostname } } : {}),
    maxRetriesPerRequest: null,
    retryStrategy: (attempt: number) => Math.min(200 * attempt, 2000),
  };
}

/** BullMQ 6 needs at least this Redis. */
const MIN_REDIS = [6, 2];

/**
 * Connects once to check the URL before anything is queued: a refused
 * password or too old a Redis is refused in one line (retrying cannot
 * mend either); an unreachable one is reported as unreachable.
 */
export async function probeRedis(url: string): Promise<{ version: string } | { unreachable: string }> {
  const client = await newRedis({ ...redisConnection(url), lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 5000 });
  // the reason (a refused password) comes as an event; the failed connect only says the connection closed
  let reason: Error | undefined;
  client.on('error', (e: Error) => {
    reason ??= e;
  });
  try {
    await client.connect();
    const info = await client.info('server');
    const version = /redis_version:([\d.]+)/.exec(info)?.[1] ?? '0';
    const [major, minor] = version.split('.').map(Number);
    if (major < MIN_REDIS[0] || (major === MIN_REDIS[0] && minor < MIN_REDIS[1])) throw new InputError(`--queue ${redisLabel(url)}: BullMQ needs Redis ${MIN_REDIS.join('.')} or newer, this one is ${version}`);
    return { version };
  } catch (e) {
    if (e instanceof InputError) throw e;
    const err = (reason ?? e) as NodeJS.ErrnoException;
    if (/WRONGPASS|NOAUTH|invalid (username-)?password|AUTH/i.test(err.message)) throw new InputError(`--queue ${redisLabel(url)}: Redis refused the credentials (${err.message.split('\n')[0]})`);
    if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(err.code ?? '')) throw new InputError(`--queue ${redisLabel(url)}: the server's TLS certificate is not trusted (${err.code}): give its CA with NODE_EXTRA_CA_CERTS=ca.pem`);
    return { unreachable: err.code ?? err.message.split('\n')[0] };
  } finally {
    client.disconnect();
  }
}

/** A queue for submitting jobs, with the connection's comings and goings reported. */
export async function openQueue<D, R>(url: string, onConnection: (up: boolean, why: string) => void): Promise<Queue<D, R>> {
  // our own client, so its connection events can be watched
  const client = await newRedis(redisConnection(url));
  let up = true;
  const down = (why: string) => {
    if (!up) return;
    up = false;
    onConnection(false, why);
  };
  client.on('error', (e: NodeJS.ErrnoException) => down(e.code ?? e.message));
  client.on('close', () => down('connection closed'));
  client.on('ready', () => {
    if (up) return;
    up = true;
    onConnection(true, 'ready');
  });
  const { Queue } = await loadBullmq();
  const queue = new Queue<D, R>(QUEUE_NAME, { connection: client });
  queue.on('error', (e: Error) => down((e as NodeJS.ErrnoException).code ?? e.message));
  return queue;
}

/** What a job asks of its runner: a command line (a command a worker knows) and a parameter file's text. */
export interface JobInput {
  kind: string;
  argv: string[];
  paramsText?: string;
}

/** What a job carries through the queue. */
export interface QueuedJob extends JobInput {
  /** the cell's index in its sweep (the episode's, for train-prior's actors), for the worker's log */
  cell: number;
}

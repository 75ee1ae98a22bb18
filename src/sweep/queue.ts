import { hostname } from 'node:os';
import { join } from 'node:path';
import { Job, Queue, type RedisOptions, UnrecoverableError, WaitingError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { InputError } from '../input-error.js';
import { checkJob, JobFailure, JobInput, JobResult, removeFolder, runJob, scratchFolder } from './jobs.js';

/** The one BullMQ queue sweeps put their cells on and workers take them from. */
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
    ...(u.protocol === 'rediss:' ? { tls: { servername: u.hostname } } : {}),
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
  const client = new Redis({ ...redisConnection(url), lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 5000 });
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
    return { unreachable: err.code ?? err.message.split('\n')[0] };
  } finally {
    client.disconnect();
  }
}

/** What a job carries through the queue. */
export interface QueuedJob extends JobInput {
  /** the cell's index in its sweep, for the worker's log */
  cell: number;
}

export interface WorkerOptions {
  url: string;
  concurrency: number;
  /** where each job's output folder goes */
  out: string;
  /** how long a job stays with a worker that stops answering before another may take it [s] */
  lockS: number;
  maxMemoryMb: number;
  log: (line: string) => void;
}

/**
 * A BullMQ worker running each job in a child process (runJob). A job whose
 * command line its own checks refuse fails at once, without retries (a
 * queue anyone can write to must not make it run anything else); a job
 * that fails for other reasons fails with its reason. stop(): the jobs
 * under way are killed and put back on the queue for another worker.
 */
export async function startWorker(opts: WorkerOptions) {
  const connection = redisConnection(opts.url);
  const me = `${hostname()}:${process.pid}`;
  const running = new Map<string, AbortController>();
  let stopping = false;
  const scratch = scratchFolder();
  const worker = new Worker<QueuedJob, JobResult>(QUEUE_NAME, async (job: Job<QueuedJob, JobResult>, token?: string) => {
    const id = job.id!;
    try {
      await checkJob(job.data, scratch);
    } catch (e) {
      throw new UnrecoverableError(`refused: ${(e as Error).message}`);
    }
    const abort = new AbortController();
    running.set(id, abort);
    opts.log(`cell ${job.data.cell} (${id}): ${job.data.argv.slice(0, 2).join(' ')} started`);
    try {
      const result = await runJob(job.data, { out: join(opts.out, id), maxMemoryMb: opts.maxMemoryMb, signal: abort.signal, worker: me });
      opts.log(`cell ${job.data.cell} (${id}): done in ${result.wallS.toFixed(1)} s`);
      return result;
    } catch (e) {
      if (stopping) {
        // back to the queue at once, for another worker (not counted as a failure)
        await job.moveToWait(token);
        throw new WaitingError();
      }
      const why = e instanceof JobFailure ? e.message : (e as Error).message;
      opts.log(`cell ${job.data.cell} (${id}): failed: ${why}`);
      throw new UnrecoverableError(why);
    } finally {
      running.delete(id);
    }
  }, {
    connection, concurrency: opts.concurrency, autorun: false,
    lockDuration: opts.lockS * 1000,
    stalledInterval: Math.max(500, (opts.lockS * 1000) / 2),
    // a worker lost mid-job (killed, its machine gone) gives the job back; a job that kills every worker that takes it is failed at the third
    maxStalledCount: 3,
    name: me,
  });
  return {
    worker,
    me,
    running: () => running.size,
    run: () => worker.run(),
    /** Kills the jobs under way (they go back to the queue) and closes the worker. */
    async stop() {
      stopping = true;
      for (const a of running.values()) a.abort();
      // the killed jobs put themselves back before the worker closes
      const deadline = Date.now() + 5000;
      while (running.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await worker.close(true);
      removeFolder(scratch);
    },
  };
}

/** A queue for submitting cells, with the connection's comings and goings reported. */
export function openQueue(url: string, onConnection: (up: boolean, why: string) => void): Queue<QueuedJob, JobResult> {
  // our own client, so its connection events can be watched
  const client = new Redis(redisConnection(url));
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
  const queue = new Queue<QueuedJob, JobResult>(QUEUE_NAME, { connection: client });
  queue.on('error', (e: Error) => down((e as NodeJS.ErrnoException).code ?? e.message));
  return queue;
}

import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';

const REDIS_SERVER = process.env.TEMPERED_MPC_REDIS_SERVER ?? 'redis-server';

/** Why a real Redis cannot run here (undefined: it can). Under TEMPERED_MPC_REQUIRE_REDIS=1 (CI) a missing one fails instead. */
export function redisMissing(): string | undefined {
  const r = spawnSync(REDIS_SERVER, ['--version'], { encoding: 'utf8' });
  if (r.status === 0) return undefined;
  const why = `no ${REDIS_SERVER} (install Debian's redis-server: bash .ci/install-redis.sh)`;
  if (process.env.TEMPERED_MPC_REQUIRE_REDIS === '1') throw new Error(why);
  return why;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/**
 * A real redis-server on 127.0.0.1, on a free port, without persistence
 * (a restart loses everything, the hardest case for a sweep), stopped by stop().
 */
export class RedisServer {
  private proc?: ChildProcess;

  private constructor(readonly port: number, private readonly extra: string[]) {}

  static async start(extra: string[] = [], port?: number): Promise<RedisServer> {
    const server = new RedisServer(port ?? await freePort(), extra);
    await server.up();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts it (again, on the same port after stop()): resolves once it answers. */
  async up(): Promise<void> {
    this.proc = spawn(REDIS_SERVER, ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', ...this.extra], { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const c = new Redis({ host: '127.0.0.1', port: this.port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, ...this.auth() });
      c.on('error', () => undefined);
      try {
        await c.connect();
        await c.ping();
        c.disconnect();
        return;
      } catch {
        c.disconnect();
        if (Date.now() > deadline) throw new Error(`redis-server on port ${this.port} did not answer within 10 s`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  private auth(): { password?: string } {
    const i = this.extra.indexOf('--requirepass');
    return i >= 0 ? { password: this.extra[i + 1] } : {};
  }

  /** Stops it at once (SIGKILL: nothing is saved, nothing is flushed). */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGKILL');
    });
  }
}

import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

export interface TlsFiles { ca: string; cert: string; key: string }

/** A throwaway CA and a certificate for 127.0.0.1 signed by it (openssl), or why not. */
export function testCertificates(): TlsFiles | string {
  const dir = mkdtempSync(join(tmpdir(), 'redis-tls-'));
  const f = (name: string) => join(dir, name);
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  for (const args of [
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '1', '-subj', '/CN=tempered-mpc test CA'],
    ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1'],
    ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.crt'), '-days', '1', '-extfile', f('ext.cnf')],
  ]) {
    const r = spawnSync('openssl', args, { encoding: 'utf8' });
    if (r.status !== 0) return `openssl ${args[0]} failed: ${(r.stderr ?? r.error?.message ?? '').trim().split('\n')[0]}`;
  }
  return { ca: f('ca.crt'), cert: f('server.crt'), key: f('server.key') };
}

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

  private constructor(readonly port: number, private readonly extra: string[], private readonly tls?: TlsFiles) {}

  /** `tls`: listen with TLS only (rediss://), with this certificate; clients need its CA. */
  static async start(extra: string[] = [], tls?: TlsFiles): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), extra, tls);
    await server.up();
    return server;
  }

  get url(): string {
    return `${this.tls ? 'rediss' : 'redis'}://127.0.0.1:${this.port}`;
  }

  /** Starts it (again, on the same port after stop()): resolves once it answers. */
  async up(): Promise<void> {
    const ports = this.tls
      ? ['--port', '0', '--tls-port', String(this.port), '--tls-cert-file', this.tls.cert, '--tls-key-file', this.tls.key, '--tls-ca-cert-file', this.tls.ca, '--tls-auth-clients', 'no']
      : ['--port', String(this.port)];
    this.proc = spawn(REDIS_SERVER, [...ports, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', ...this.extra], { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const c = new Redis({ host: '127.0.0.1', port: this.port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, ...this.auth(), ...(this.tls ? { tls: { ca: readFileSync(this.tls.ca) } } : {}) });
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

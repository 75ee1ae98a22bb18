import { probeRedis, QUEUE_NAME, redisConnection, redisLabel } from '../queue/redis.js';
import { startWorker } from '../sweep/worker.js';
import { shutdown } from '../shutdown.js';
import { Command, optionalInteger, outputFolder, requireString } from './command.js';
import { MEMORY_OPTION } from './sweep.js';

export const workerCommand: Command = {
  name: 'worker',
  summary: 'Take sweep jobs from a BullMQ queue in Redis and run each in a child process of its own, until Ctrl-C (the jobs under way go back to the queue).',
  usage: 'worker --queue redis://HOST:PORT [--concurrency N] [--lock-s S] [--max-memory-mb MB] [--out DIR]',
  options: {
    queue: { type: 'string', description: 'the Redis the sweep queues on (rediss:// for TLS, redis://:PASSWORD@HOST:PORT)', valueName: 'URL' },
    concurrency: { type: 'string', description: 'jobs at once (default 1; a job is one process, a core each)', valueName: 'N' },
    'lock-s': { type: 'string', description: 'how long a job stays with a worker that stops answering (killed, its machine gone) before another takes it (default 30)', valueName: 'S' },
    'max-memory-mb': MEMORY_OPTION,
    out: { type: 'string', description: 'where each job\'s output folder goes (default runs/worker-TIME)', valueName: 'DIR' },
  },
  interruptible: true,
  interruptFinishing: 'putting the jobs under way back on the queue',
  async run(values) {
    const url = requireString(values, 'queue');
    redisConnection(url);
    const concurrency = optionalInteger(values, 'concurrency', 1, 1, 256);
    const lockS = optionalInteger(values, 'lock-s', 30, 2, 3600);
    const maxMemoryMb = optionalInteger(values, 'max-memory-mb', 4096, 64, 65536);
    const out = outputFolder(values, 'worker');
    const log = (line: string) => console.error(`worker: ${line}`);
    // a refused password or too old a Redis ends here; an unreachable one is waited for (a worker may start first)
    const probe = await probeRedis(url);
    if ('unreachable' in probe) log(`Redis at ${redisLabel(url)} is unreachable (${probe.unreachable}): waiting for it`);
    const w = await startWorker({ url, concurrency, out, lockS, maxMemoryMb, log });
    let away = 'unreachable' in probe;
    w.worker.on('error', (e: NodeJS.ErrnoException) => {
      if (away) return;
      away = true;
      log(`Redis at ${redisLabel(url)} is unreachable (${e.code ?? e.message}): waiting for it`);
    });
    w.worker.on('ready', () => {
      if (!away) return;
      away = false;
      log(`Redis at ${redisLabel(url)} is back`);
    });
    log(`${w.me} takes jobs from ${redisLabel(url)} (queue ${QUEUE_NAME}), ${concurrency} at a time; job folders in ${out}`);
    const running = w.run();
    await new Promise<void>((resolve) => {
      if (shutdown.signal.aborted) resolve();
      shutdown.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    const under = w.running();
    await w.stop();
    await running.catch(() => undefined);
    log(`stopped (${shutdown.received}); ${under} job(s) under way went back to the queue`);
  },
};

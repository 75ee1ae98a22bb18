import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runLoop, RunSummary } from '../run/loop.js';
import { assemble } from '../run/setup.js';
import { logTopics, TICK_CHANNELS, tickMessages, topicOf } from '../telemetry/channels.js';
import { CLIENT_QUEUE_LIMIT_BYTES } from '../telemetry/foxglove-live.js';
import { serveTelemetry } from '../telemetry/server.js';
import { Command, JSON_OPTION, optionalInteger, printJson } from './command.js';
import { RUN_OPTIONS, runOptions } from './run.js';
import { InputError } from '../input-error.js';

const CLIENTS = fileURLToPath(new URL('../telemetry/bench-clients.js', import.meta.url));

interface MemorySample { timeS: number; rssMB: number; heapMB: number; externalMB: number }
interface Leg { summary: RunSummary; memory: { settled: MemorySample; end: MemorySample; maxRssMB: number; samples: MemorySample[] } }

type LegKind = 'none' | 'clients' | 'stalled' | 'hostile';

/**
 * Telemetry's cost to the loop: the same real-time run three times: without
 * a server; with one and N Foxglove clients (in a process of their own)
 * subscribed to every channel at the control rate; and with the same N plus
 * one client that subscribes and stops reading. Compares p99 solve time and
 * command jitter (first two legs), and memory of the last two, so that the
 * stalled client's own effect on memory is the difference between them.
 */
export const benchTelemetryCommand: Command = {
  name: 'bench telemetry',
  summary: 'Telemetry\'s cost to a real-time run: p99 solve time and command jitter without the server and with N Foxglove clients on every channel, and memory with and without one more, stalled client.',
  usage: 'bench telemetry --system NAME [--planner NAME] [--clients N] [--duration SEC] [--params FILE.yaml] [--set key=value] [--x0 ..] [--json]',
  options: {
    ...RUN_OPTIONS,
    clients: { type: 'string', description: 'Foxglove clients (default 10)', valueName: 'N' },
    leg: { type: 'string', description: 'run one leg only (none|clients|stalled) and print it as JSON: each leg runs in a process of its own, so memory is compared from the same start', valueName: 'L' },
    json: JSON_OPTION,
  },
  async run(values) {
    const { system, params, durationS, lockstep } = runOptions(values);
    if (lockstep) throw new InputError('bench telemetry runs in real time: drop --lockstep');
    // the legs with the server measure what its clients cost: at least one
    const clients = optionalInteger(values, 'clients', 10, 1, 100);
    const leg = async (kind: LegKind): Promise<Leg & { received?: number[]; dropped?: number; stalledQueueKB?: number; hostile?: Record<string, number> }> => {
      const { session, sim } = await assemble(params, { lockstep: false });
      const topics = logTopics(session.codec.type, session.estimator !== undefined);
      const served = kind !== 'none' ? await serveTelemetry(session, params.controller, topics, { port: 0 }) : undefined;
      const child = served && spawn(process.execPath, [CLIENTS, served.address.replace(/^http/, 'ws'), String(clients), ...(kind === 'stalled' || kind === 'hostile' ? [kind] : [])], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child?.stdout!.on('data', (d) => (out += d));
      // let the clients connect and subscribe
      if (child) await new Promise((r) => setTimeout(r, 1500));
      const samples: MemorySample[] = [];
      const sample = (timeS: number) => {
        const m = process.memoryUsage();
        samples.push({ timeS, rssMB: m.rss / 2 ** 20, heapMB: m.heapUsed / 2 ** 20, externalMB: m.external / 2 ** 20 });
      };
      try {
        const { summary } = await runLoop(sim, session, {
          durationS, lockstep: false, keepRecords: false,
          onTick: (r, k) => {
            if (k % Math.max(1, Math.round(5 * session.rateHz)) === 0) sample(r.timeS);
            const t = served?.telemetry;
            if (!t) return;
            // every topic at the control rate, as `run --serve` sends them
            t.observe(r.tick);
            if (r.stateMessage) t.publish(topicOf('state'), r.timeS, () => r.stateMessage!);
            t.publish(topicOf('true_state'), r.timeS, () => session.codec.encode(r.state, r.timeS));
            const message = tickMessages(session, r.tick);
            for (const c of TICK_CHANNELS) t.publish(topicOf(c.name), r.timeS, () => message(c)!);
          },
        });
        (globalThis as { gc?: () => void }).gc?.();
        sample(durationS);
        const stalledQueueKB = served && served.telemetry.foxglove.largestQueueBytes / 1024;
        let received: number[] | undefined;
        let hostile: Record<string, number> | undefined;
        if (child) {
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await exited;
          ({ received, hostile } = JSON.parse(out.trim() || '{"received":[]}') as { received: number[]; hostile?: Record<string, number> });
        }
        // from 10 s on: the first seconds allocate what a run needs
        const settled = samples.find((m) => m.timeS >= Math.min(10, durationS / 2)) ?? samples[0];
        return {
          summary, received, dropped: served?.telemetry.foxglove.dropped, stalledQueueKB, ...(kind === 'hostile' ? { hostile } : {}),
          memory: { settled, end: samples.at(-1)!, maxRssMB: Math.max(...samples.map((m) => m.rssMB)), samples },
        };
      } finally {
        child?.kill();
        await served?.telemetry.close();
        session.dispose();
      }
    };
    const only = values.leg as string | undefined;
    if (only !== undefined) {
      if (!['none', 'clients', 'stalled', 'hostile'].includes(only)) throw new InputError(`--leg must be none, clients, stalled or hostile, got '${only}'`);
      return printJson(await leg(only as LegKind));
    }
    // each leg in a fresh process: RSS never shrinks back, so legs sharing a process would inherit each other's peaks
    const inChild = async (kind: LegKind): Promise<Awaited<ReturnType<typeof leg>>> => {
      const args = [...process.execArgv, process.argv[1], ...process.argv.slice(2).filter((a) => a !== '--json'), '--leg', kind, '--json'];
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
      let text = '';
      child.stdout!.on('data', (d) => (text += d));
      const code = await new Promise<number | null>((r) => child.once('exit', r));
      if (code !== 0) throw new Error(`the '${kind}' leg exited with ${code}`);
      return JSON.parse(text) as Awaited<ReturnType<typeof leg>>;
    };
    const without = await inChild('none');
    const withClients = await inChild('clients');
    const withStalled = await inChild('stalled');
    const withHostile = await inChild('hostile');
    const p99 = (l: Leg) => l.summary.solveMs.p99;
    // the stalled client's own cost: the leg with it against the same clients without it
    const stalledEffectMB = {
      end: withStalled.memory.end.rssMB - withClients.memory.end.rssMB,
      max: withStalled.memory.maxRssMB - withClients.memory.maxRssMB,
      growthWith: withStalled.memory.end.rssMB - withStalled.memory.settled.rssMB,
      growthWithout: withClients.memory.end.rssMB - withClients.memory.settled.rssMB,
    };
    const result = {
      system, planner: params.controller.planner, durationS, clients,
      solveP99Ms: { without: p99(without), with: p99(withClients), change: p99(withClients) / p99(without) - 1, withStalled: p99(withStalled) },
      commandJitterP99Ms: { without: without.summary.commandJitterMs?.p99, with: withClients.summary.commandJitterMs?.p99, withStalled: withStalled.summary.commandJitterMs?.p99, withHostile: withHostile.summary.commandJitterMs?.p99 },
      deadlineMisses: { without: without.summary.deadlineMisses, with: withClients.summary.deadlineMisses, withStalled: withStalled.summary.deadlineMisses, withHostile: withHostile.summary.deadlineMisses },
      // the first-hour review's attacks, every 200 ms from loopback, beside the N clients: does the plant stay controlled?
      hostile: { success: withHostile.summary.success, timeToGoalS: withHostile.summary.timeToGoalS, heldFraction: withHostile.summary.heldFraction, sent: withHostile.hostile },
      messagesPerClient: withClients.received, stalledClientDropped: withStalled.dropped, stalledClientQueueKB: withStalled.stalledQueueKB,
      stalledEffectMB,
      memory: { without: without.memory, with: withClients.memory, withStalled: withStalled.memory },
    };
    if (values.json) return printJson(result);
    console.log(`${result.planner} on ${system}, ${durationS} s real time per leg: no server; ${clients} Foxglove clients on every channel; the same + 1 stalled client`);
    console.log(`  solve p99 ${p99(without).toFixed(1)} ms without the server, ${p99(withClients).toFixed(1)} ms with (${(100 * result.solveP99Ms.change).toFixed(1)}%)`);
    console.log(`  command jitter p99 ${result.commandJitterP99Ms.without?.toFixed(2)} -> ${result.commandJitterP99Ms.with?.toFixed(2)} ms; deadline misses ${result.deadlineMisses.without} -> ${result.deadlineMisses.with}`);
    console.log(`  messages per client ${withClients.received?.join(', ')}; stalled clients dropped ${withStalled.dropped}`);
    const h = result.hostile;
    console.log(`  with a hostile client beside them (oversized and malformed PATCHes, cross-origin changes, 100k-entry subscribes, oversized frames every 200 ms): `
      + `${h.success ? `goal at ${h.timeToGoalS?.toFixed(2)} s and held (${(100 * (h.heldFraction ?? 0)).toFixed(0)}% of the time after)` : 'goal NOT reached and held'}; `
      + `jitter p99 ${result.commandJitterP99Ms.withHostile?.toFixed(2)} ms; deadline misses ${result.deadlineMisses.withHostile}; sent ${Object.entries(h.sent ?? {}).map(([k, n]) => `${k} ${n}`).join(', ')}`);
    const mem = (l: Leg) => `RSS ${l.memory.settled.rssMB.toFixed(1)} -> ${l.memory.end.rssMB.toFixed(1)} MB (max ${l.memory.maxRssMB.toFixed(1)}), heap ${l.memory.settled.heapMB.toFixed(1)} -> ${l.memory.end.heapMB.toFixed(1)} MB, external ${l.memory.settled.externalMB.toFixed(1)} -> ${l.memory.end.externalMB.toFixed(1)} MB`;
    console.log(`  memory from t=${withClients.memory.settled.timeS.toFixed(0)} s without the server: ${mem(without)}`);
    console.log(`  with the clients: ${mem(withClients)}`);
    console.log(`  with the clients and the stalled one: ${mem(withStalled)}; queued for the stalled client at the end ${withStalled.stalledQueueKB?.toFixed(0)} kB (dropped at ${CLIENT_QUEUE_LIMIT_BYTES / 2 ** 20} MB)`);
    console.log(`  the stalled client's effect on RSS: ${stalledEffectMB.end.toFixed(1)} MB at the end, ${stalledEffectMB.max.toFixed(1)} MB at the peak; growth from t=${withStalled.memory.settled.timeS.toFixed(0)} s ${stalledEffectMB.growthWith.toFixed(1)} MB with it, ${stalledEffectMB.growthWithout.toFixed(1)} MB without`);
  },
};

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { runLoop, RunSummary } from '../run/loop.js';
import { assemble } from '../run/setup.js';
import { logTopics } from '../telemetry/mcap-log.js';
import { serveTelemetry } from '../telemetry/server.js';
import { Command, JSON_OPTION, optionalInteger, printJson, UsageError } from './command.js';
import { RUN_OPTIONS, runOptions } from './run.js';

const CLIENTS = fileURLToPath(new URL('../telemetry/bench-clients.js', import.meta.url));

interface Leg { summary: RunSummary; rssMB: { start: number; end: number }; heapMB: { start: number; end: number } }

/**
 * Telemetry's cost to the loop: the same real-time run without a server,
 * then with one and N Foxglove clients (in a process of their own)
 * subscribed to every channel at the control rate, plus one client that
 * stops reading. Compares p99 solve time and command jitter, and memory
 * over the run with the stalled client.
 */
export const benchTelemetryCommand: Command = {
  name: 'bench telemetry',
  summary: 'Telemetry\'s cost to a real-time run: p99 solve time and command jitter without the server and with N Foxglove clients on every channel, and memory with one stalled client.',
  usage: 'bench telemetry --system NAME [--planner tsmc|mppi] [--clients N] [--duration SEC] [--params FILE.yaml] [--set key=value] [--x0 ..] [--json]',
  options: { ...RUN_OPTIONS, clients: { type: 'string', description: 'Foxglove clients (default 10)', valueName: 'N' }, json: JSON_OPTION },
  async run(values) {
    const { system, params, durationS, lockstep } = runOptions(values);
    if (lockstep) throw new UsageError('bench telemetry runs in real time: drop --lockstep');
    const clients = optionalInteger(values, 'clients', 10, 0);
    if (clients > 100) throw new UsageError(`--clients must be <= 100, got ${clients}`);
    const leg = async (withServer: boolean): Promise<Leg & { received?: number[]; dropped?: number }> => {
      const { session, sim } = await assemble(params, { lockstep: false });
      const topics = logTopics(session.codec.type, session.estimator !== undefined);
      const served = withServer ? await serveTelemetry(session, params.controller, topics, { port: 0 }) : undefined;
      const child = served && spawn(process.execPath, [CLIENTS, served.address.replace(/^http/, 'ws'), String(clients), 'stalled'], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child?.stdout!.on('data', (d) => (out += d));
      // let the clients connect and subscribe
      if (child) await new Promise((r) => setTimeout(r, 1500));
      const memory = () => process.memoryUsage();
      const start = memory();
      try {
        const { summary } = await runLoop(sim, session, {
          durationS, lockstep: false, keepRecords: false,
          onTick: (r) => {
            const t = served?.telemetry;
            if (!t) return;
            // every topic at the control rate, as `run --serve` sends them
            t.observe(r.tick);
            if (r.stateMessage) t.publish('/tempered_mpc/state', r.timeS, () => r.stateMessage!);
            t.publish('/tempered_mpc/true_state', r.timeS, () => session.codec.encode(r.state, r.timeS));
            t.publish('/tempered_mpc/command', r.timeS, () => session.commandMessage(r.tick));
            t.publish('/tempered_mpc/plan', r.timeS, () => session.planMessage(r.tick));
            t.publish('/tempered_mpc/status', r.timeS, () => session.statusMessage(r.tick));
          },
        });
        (globalThis as { gc?: () => void }).gc?.();
        const end = memory();
        const mb = (b: number) => b / 2 ** 20;
        let received: number[] | undefined;
        if (child) {
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await exited;
          received = (JSON.parse(out.trim() || '{"received":[]}') as { received: number[] }).received;
        }
        return {
          summary, received, dropped: served?.telemetry.foxglove.dropped,
          rssMB: { start: mb(start.rss), end: mb(end.rss) }, heapMB: { start: mb(start.heapUsed), end: mb(end.heapUsed) },
        };
      } finally {
        child?.kill();
        await served?.telemetry.close();
        session.dispose();
      }
    };
    const without = await leg(false);
    const withClients = await leg(true);
    const p99 = (l: Leg) => l.summary.solveMs.p99;
    const result = {
      system, planner: params.controller.planner, durationS, clients,
      solveP99Ms: { without: p99(without), with: p99(withClients), change: p99(withClients) / p99(without) - 1 },
      commandJitterP99Ms: { without: without.summary.commandJitterMs?.p99, with: withClients.summary.commandJitterMs?.p99 },
      deadlineMisses: { without: without.summary.deadlineMisses, with: withClients.summary.deadlineMisses },
      messagesPerClient: withClients.received, stalledClientDropped: withClients.dropped,
      memoryWithStalledClient: { rssMB: withClients.rssMB, heapMB: withClients.heapMB },
    };
    if (values.json) return printJson(result);
    console.log(`${result.planner} on ${system}, ${durationS} s real time, ${clients} Foxglove clients on every channel + 1 stalled client`);
    console.log(`  solve p99 ${p99(without).toFixed(1)} ms without the server, ${p99(withClients).toFixed(1)} ms with (${(100 * result.solveP99Ms.change).toFixed(1)}%)`);
    console.log(`  command jitter p99 ${result.commandJitterP99Ms.without?.toFixed(2)} -> ${result.commandJitterP99Ms.with?.toFixed(2)} ms; deadline misses ${result.deadlineMisses.without} -> ${result.deadlineMisses.with}`);
    console.log(`  messages per client ${withClients.received?.join(', ')}; stalled clients dropped ${withClients.dropped}`);
    console.log(`  with the stalled client: RSS ${withClients.rssMB.start.toFixed(1)} -> ${withClients.rssMB.end.toFixed(1)} MB, heap ${withClients.heapMB.start.toFixed(1)} -> ${withClients.heapMB.end.toFixed(1)} MB`);
  },
};

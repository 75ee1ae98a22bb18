import { runLoop } from './loop.js';
import { assemble, RunParams } from './setup.js';
import { quantile } from '../samplers/stats.js';

export interface LockstepOutcome {
  seeds: number;
  successes: number;
  /** over the successful runs */
  timeToGoalS: { median: number | null; max: number | null };
  /** the median over runs of each run's median solve time */
  solveMsP50: number;
}

/**
 * The embedded controller closed around the simulator in lockstep, once per
 * seed from `firstSeed` (its plant's noise from seed + 1, as `bench mpc`):
 * how many runs reached the goal and held it, and how soon. `progress` gets
 * the fraction done after every tick, `onEpisode` the count after every
 * run; a `signal` ends the run under way at its next tick and starts no other.
 */
export async function lockstepEpisodes(
  params: RunParams,
  opts: { seeds: number; firstSeed?: number; durationS: number; signal?: AbortSignal; progress?: (fraction: number, note: string) => void; onEpisode?: (done: number, total: number) => void },
): Promise<LockstepOutcome> {
  const { seeds, durationS, signal, progress } = opts;
  const firstSeed = opts.firstSeed ?? 0;
  const runs = [];
  for (let k = 0; k < seeds && !signal?.aborted; k++) {
    const seed = firstSeed + k;
    const { session, sim } = await assemble({ ...params, controller: { ...params.controller, seed } }, { lockstep: true });
    try {
      const { summary } = await runLoop(sim, session, {
        durationS, lockstep: true, keepRecords: false, signal,
        onTick: progress && ((_r, i, total) => progress((k + (i + 1) / total) / seeds, `seed ${seed}`)),
      });
      runs.push(summary);
    } finally {
      session.dispose();
    }
    if (!signal?.aborted) opts.onEpisode?.(k + 1, seeds);
  }
  const ttg = runs.filter((r) => r.success).map((r) => r.timeToGoalS!);
  return {
    seeds, successes: ttg.length,
    timeToGoalS: { median: ttg.length ? quantile(ttg, 0.5) : null, max: ttg.length ? Math.max(...ttg) : null },
    solveMsP50: quantile(runs.map((r) => r.solveMs.p50), 0.5),
  };
}

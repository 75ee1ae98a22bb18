import { buildStepGraphs } from '../kernels/graphs.js';
import { compileStageCostFunction } from '../kernels/js-source.js';
import { controlScaling, toControls } from '../models/controls.js';
import type { Model } from '../models/model.js';
import type { Replay } from './trainer.js';

/** What the acting planner paid from a buffered state over some steps, and where its record ended if sooner. */
export interface DemonstratedCost {
  /** the stage costs summed over the steps recorded (at most the steps asked for) */
  cost: number;
  /** the state after the episode's last recorded step, when the record ends before the steps asked for */
  end?: number[];
  /** the steps asked for that the record does not cover */
  missingSteps: number;
}

/**
 * The replay buffer's episodes as demonstrations: the stage costs the acting
 * planner (train-prior's teacher) actually incurred from each buffered state,
 * recomputed with this model's own cost (the teacher may have planned with
 * extra terms; the value learns the model's). A controller that was actually
 * run is feasible, so its cost over k steps from x is at least the optimal
 * k-step cost-to-go at x: an upper bound on what a value of horizon k may
 * say there (up to the process noise the episode met), whatever a planner
 * found or missed from x this sweep.
 */
export class Demonstrations {
  /** per buffered row: its episode's rows in order (index into `episodes`) and its place in it; -1 if not recorded */
  private readonly episodeOf: Int32Array;
  private readonly placeOf: Int32Array;
  /** per episode: cumulative stage costs (length + 1) and its rows in order */
  private readonly episodes: { cumulative: Float64Array; rows: number[] }[] = [];
  /** the buffer's states after each row's step (read where a record ends short) */
  private readonly next: Float64Array;
  private readonly n: number;

  constructor(replay: Replay, model: Model) {
    const { n, m, size, capacity } = replay;
    this.next = replay.next;
    this.n = n;
    const cost = compileStageCostFunction(buildStepGraphs(model, false));
    const scaling = controlScaling(model);
    const reference = [...model.goal];
    const first = replay.oldest;
    const rowsOf = new Map<number, number[]>();
    // oldest first, so each episode's rows come in the order they were acted
    for (let p = 0; p < size; p++) {
      const row = (first + p) % capacity;
      const e = replay.episode[row];
      const rows = rowsOf.get(e) ?? [];
      rows.push(row);
      rowsOf.set(e, rows);
    }
    this.episodeOf = new Int32Array(capacity).fill(-1);
    this.placeOf = new Int32Array(capacity).fill(-1);
    for (const rows of rowsOf.values()) {
      const cumulative = new Float64Array(rows.length + 1);
      // an episode starts from rest: the acting loop's first previous control is zero
      let uPrev = new Array<number>(m).fill(0);
      rows.forEach((row, j) => {
        const x = Array.from(replay.x.subarray(row * n, (row + 1) * n));
        const u = Array.from(toControls(replay.z.slice(row * m, (row + 1) * m), scaling));
        cumulative[j + 1] = cumulative[j] + cost(x, u, uPrev, reference);
        uPrev = u;
        this.episodeOf[row] = this.episodes.length;
        this.placeOf[row] = j;
      });
      this.episodes.push({ cumulative, rows });
    }
  }

  /** The most any buffered state's episode paid from it to the episode's end: the worst cost-to-go the teacher demonstrated. */
  largestCostToGo(): number {
    let largest = 0;
    for (const { cumulative } of this.episodes) {
      const total = cumulative[cumulative.length - 1];
      for (let j = 0; j < cumulative.length - 1; j++) largest = Math.max(largest, total - cumulative[j]);
    }
    return largest;
  }

  /** The demonstrated cost over `steps` steps from buffered row `row`; undefined for a row the buffer does not hold. */
  costFrom(row: number, steps: number): DemonstratedCost | undefined {
    const e = this.episodeOf[row];
    if (e === undefined || e < 0) return undefined;
    const { cumulative, rows } = this.episodes[e];
    const j = this.placeOf[row];
    const end = Math.min(j + steps, rows.length);
    const missingSteps = j + steps - end;
    const last = rows[end - 1];
    return { cost: cumulative[end] - cumulative[j], missingSteps, ...(missingSteps > 0 ? { end: Array.from(this.next.subarray(last * this.n, (last + 1) * this.n)) } : {}) };
  }
}

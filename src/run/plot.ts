import { onGoalBranch, physicalNames, Model, toPhysical } from '../models/model.js';
import { lineChart, Panel } from '../plot/svg.js';
import type { RunSummary, TickRecord } from './loop.js';

/** State, control, plan cost and solve time over a run, as one SVG. */
export function runChart(model: Model, records: TickRecord[], summary: RunSummary, title: string, budgetMs: number, reference: readonly number[]): string {
  const t = records.map((r) => r.timeS);
  const names = physicalNames(model);
  const goal = toPhysical(model, reference);
  const panels: Panel[] = names.map((name, i) => ({
    title: name,
    series: [
      // angles on the goal's branch: a pendulum held at -pi is at the goal, and reads so
      { name: 'true', x: t, y: records.map((r) => onGoalBranch(name, r.state[i], goal[i])) },
      { name: 'measured', x: t, y: records.map((r) => onGoalBranch(name, r.measured[i] ?? NaN, goal[i])), color: '#aaaaaa' },
      { name: 'goal', x: [t[0], t[t.length - 1]], y: [goal[i], goal[i]], color: '#000000', dashed: true },
    ],
  }));
  model.def.controlNames.forEach((name, j) => panels.push({
    title: `control ${name}`,
    series: [{ name, x: t, y: records.map((r) => r.tick.control[j]), color: '#d62728' }],
  }));
  panels.push({
    title: 'plan cost',
    logY: records.every((r) => !(r.tick.cost <= 0)),
    series: [{ name: 'cost', x: t, y: records.map((r) => r.tick.cost), color: '#9467bd' }],
  });
  panels.push({
    title: 'solve time [ms]',
    xLabel: 'time [s]',
    series: [
      { name: 'solve', x: t, y: records.map((r) => (r.tick.planned ? r.tick.solveMs : NaN)), color: '#ff7f0e' },
      { name: 'budget', x: [t[0], t[t.length - 1]], y: [budgetMs, budgetMs], color: '#000000', dashed: true },
    ],
  });
  const outcome = summary.success ? `success, goal at ${summary.timeToGoalS?.toFixed(2)} s` : 'goal not reached and held';
  return lineChart(`${title}: ${outcome}`, panels, 1, 760, 150);
}

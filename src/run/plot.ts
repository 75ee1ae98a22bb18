import { onGoalBranch, physicalAngles, physicalNames, Model, toPhysical, withUnit } from '../models/model.js';
import { lineChart, Panel } from '../plot/svg.js';
import type { RunSummary, TickRecord } from './loop.js';

/** State, control, plan cost and solve time over a run, as one SVG. */
export function runChart(model: Model, records: TickRecord[], summary: RunSummary, title: string, budgetMs: number, reference: readonly number[]): string {
  const t = records.map((r) => r.timeS);
  const names = physicalNames(model);
  const angles = physicalAngles(model);
  const goal = toPhysical(model, reference);
  const region = model.def.goalRegion;
  // the time the goal was held (success), or first entered: shaded on every panel
  const spans = summary.timeToGoalS !== null
    ? [{ from: summary.timeToGoalS, to: summary.timeToGoalS + summary.holdS, label: `held ${summary.holdS} s` }]
    : summary.firstInGoalS !== null ? [{ from: summary.firstInGoalS, to: summary.firstInGoalS + summary.longestStayS, label: `in goal ${summary.longestStayS.toFixed(1)} s (needs ${summary.holdS} s)` }] : [];
  const panels: Panel[] = names.map((name, i) => {
    const half = region?.halfWidths[i] ?? Infinity;
    return {
      title: name,
      yLabel: withUnit(name, model.def.physicalUnits[i]),
      spans,
      ...(Number.isFinite(half) ? { band: { lo: goal[i] - half, hi: goal[i] + half, label: 'goal region' } } : {}),
      series: [
        // measured first, so the true state is drawn over it; angles on the goal's branch (a pendulum held at -pi is at the goal, and reads so)
        { name: 'measured', x: t, y: records.map((r) => onGoalBranch(angles[i], r.measured[i] ?? NaN, goal[i])), color: '#bbbbbb' },
        { name: 'true', x: t, y: records.map((r) => onGoalBranch(angles[i], r.state[i], goal[i])), color: '#1f77b4' },
        { name: 'goal', x: [t[0], t[t.length - 1]], y: [goal[i], goal[i]], color: '#000000', dashed: true },
      ],
    };
  });
  model.def.controlNames.forEach((name, j) => panels.push({
    title: `control ${name}`,
    yLabel: withUnit(name, model.def.controlUnits[j]),
    spans,
    series: [{ name, x: t, y: records.map((r) => r.tick.control[j]), color: '#d62728' }],
  }));
  panels.push({
    title: 'plan cost',
    yLabel: 'cost',
    logY: records.every((r) => !(r.tick.cost <= 0)),
    series: [{ name: 'cost', x: t, y: records.map((r) => r.tick.cost), color: '#9467bd' }],
  });
  panels.push({
    title: 'solve time',
    yLabel: 'solve [ms]',
    xLabel: 'time [s]',
    series: [
      { name: 'solve', x: t, y: records.map((r) => (r.tick.planned ? r.tick.solveMs : NaN)), color: '#ff7f0e' },
      { name: 'budget', x: [t[0], t[t.length - 1]], y: [budgetMs, budgetMs], color: '#000000', dashed: true },
    ],
  });
  const outcome = summary.success ? `success, goal at ${summary.timeToGoalS?.toFixed(2)} s, held ${summary.holdS} s`
    : summary.firstInGoalS !== null ? `goal reached at ${summary.firstInGoalS.toFixed(2)} s, not held ${summary.holdS} s` : 'goal not reached';
  return lineChart(`${title}: ${outcome}`, panels, 1, 760, 150);
}

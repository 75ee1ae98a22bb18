import { availableParallelism } from 'node:os';
import { CONTROLLER_PARAMS, Controller } from '../controller/controller.js';
import { MPC_TSMC_PARAMS, MppiPlanner, RecedingPlanner, TsmcPlanner } from '../controller/receding.js';
import { MPPI_PARAMS } from '../planners/mppi.js';
import { createBackend } from '../kernels/index.js';
import type { RolloutBackend } from '../kernels/backend.js';
import { modelDefinition } from '../models/index.js';
import { Model, resolveModel } from '../models/model.js';
import { ParamsOf, resolveParams, Schema } from '../params.js';
import { resolveSimParams, SimParams, Simulator } from '../../sim/simulator.js';

/**
 * MPC defaults per system: sampling budgets sized for real time on a small
 * CPU (the papers' N=100 solves are offline). Every value can be overridden.
 */
// Tuned on the pendulum swing-up: white noise at PO-MPC's sigmaMax = 2 chatters
// and cannot hold the upright; smooth noise and a carried-over sigma can.
const PENDULUM_MPPI = { samples: 1024, iterations: 8, temperature: 0.01, sigmaMax: 0.5, noiseCorrelation: 0.9, sigmaWarmStart: 'carry' };

export const MPC_SYSTEM_DEFAULTS: Readonly<Record<string, { tsmc?: Record<string, unknown>; mppi?: Record<string, unknown>; model?: Record<string, unknown> }>> = {
  // A 2 s horizon, not the offline 3 s: near the upright an open-loop plan
  // diverges like exp(sqrt(g/l) t), so with noise the last second of a 3 s
  // plan is noise and the shifted plan is a poor warm start (plan cost at the
  // upright ~1 instead of ~0.03, and TSMC falls into swing-around minima).
  pendulum: { tsmc: { lambda: 0.1, stepSize: 0.2, particles: 64, targetAcceptance: 0.75 }, mppi: PENDULUM_MPPI, model: { horizon: 20 } },
  // 0.6 s ahead with the LQR cost-to-go as terminal cost, and an energy term
  // for the swing-up. Longer plans at the upright are hopelessly ill-conditioned
  // (at 2 s, 1e-4 on the first control moves the cost by ~300), and shorter
  // plans without the LQR term cannot see why to act now (non-minimum phase).
  acrobot: {
    tsmc: { lambda: 0.1, stepSize: 0.02, particles: 32, maxTreeDepth: 3 },
    mppi: { samples: 512, iterations: 4, temperature: 10, sigmaMax: 0.5, noiseCorrelation: 0.9, sigmaWarmStart: 'carry' },
    model: { horizon: 24, wEnergy: 10, terminalLqr: 1 },
  },
  'cart-double-pendulum': { tsmc: { lambda: 0.1, stepSize: 0.05, particles: 64 }, mppi: { samples: 512, iterations: 4 } },
  'pusher-slider': { tsmc: { lambda: 0.2, stepSize: 0.01, particles: 64 }, mppi: { samples: 512, iterations: 4 } },
  'double-integrator': { tsmc: { particles: 64 }, mppi: { samples: 128, iterations: 3 } },
};

export const MPC_PLANNER_SCHEMAS = { tsmc: MPC_TSMC_PARAMS, mppi: MPPI_PARAMS } as const;

/** All parameters of a run, grouped by who owns them; keys in YAML and --set are `group.key` (or bare for the controller). */
export interface RunParams {
  system: string;
  controller: ParamsOf<typeof CONTROLLER_PARAMS>;
  planner: Record<string, unknown>;
  model: Record<string, unknown>;
  sim: SimParams;
}

/**
 * Splits flat parameters into their owners. Accepted keys: controller keys
 * bare (rateHz), `tsmc.KEY` / `mppi.KEY`, `model.KEY` and `sim.KEY`.
 */
export function resolveRunParams(system: string, flat: Record<string, unknown>): RunParams {
  if (flat.system !== undefined && flat.system !== system) {
    throw new Error(`the parameters are for system '${String(flat.system)}', not '${system}'`);
  }
  const groups: Record<string, Record<string, unknown>> = { controller: {}, tsmc: {}, mppi: {}, model: {}, sim: {} };
  for (const [key, value] of Object.entries(flat)) {
    if (key === 'system') continue;
    const dot = key.indexOf('.');
    const group = dot < 0 ? 'controller' : key.slice(0, dot);
    if (!(group in groups)) throw new Error(`unknown parameter group in '${key}' (use controller keys bare, or tsmc., mppi., model., sim.)`);
    groups[group][dot < 0 ? key : key.slice(dot + 1)] = value;
  }
  const controller = resolveParams('controller', CONTROLLER_PARAMS, groups.controller);
  const name = controller.planner;
  const schema = MPC_PLANNER_SCHEMAS[name] as Schema;
  const planner = resolveParams(name, schema, groups[name], MPC_SYSTEM_DEFAULTS[system]?.[name] ?? {});
  // the other planner's keys are checked too, so a typo never passes silently
  const other = name === 'tsmc' ? 'mppi' : 'tsmc';
  resolveParams(other, MPC_PLANNER_SCHEMAS[other] as Schema, groups[other]);
  const model = { ...MPC_SYSTEM_DEFAULTS[system]?.model, ...groups.model };
  resolveModel(modelDefinition(system), model); // rejects unknown or out-of-range model.* keys now, not at assembly
  return { system, controller, planner, model, sim: resolveSimParams(groups.sim) };
}

export interface Assembly {
  model: Model;
  backend: RolloutBackend;
  planner: RecedingPlanner;
  controller: Controller;
  sim: Simulator;
  rateHz: number;
  periodS: number;
  budgetMs: number;
}

export async function assemble(params: RunParams, opts: { seed: number; lockstep: boolean; x0?: readonly number[] }): Promise<Assembly> {
  const def = modelDefinition(params.system);
  const model = resolveModel(def, params.model);
  const c = params.controller;
  const threads = c.threads > 0 ? c.threads : availableParallelism();
  const backend = await createBackend(model, c.backend, { threads });
  const planner: RecedingPlanner = c.planner === 'tsmc'
    ? new TsmcPlanner(model, backend, params.planner as ParamsOf<typeof MPC_TSMC_PARAMS>)
    : new MppiPlanner(model, backend, params.planner as ParamsOf<typeof MPPI_PARAMS>);
  const rateHz = c.rateHz > 0 ? c.rateHz : 1 / model.dtS;
  const periodS = 1 / rateHz;
  const budgetMs = c.budgetMs > 0 ? c.budgetMs : 0.8 * periodS * 1000;
  const controller = new Controller(model, planner, {
    periodS, budgetMs, staleTimeoutS: c.staleTimeoutS, enforceDeadline: !opts.lockstep, seed: opts.seed,
  });
  const sim = new Simulator(def, periodS, params.sim, opts.seed + 1, params.model, opts.x0);
  return { model, backend, planner, controller, sim, rateHz, periodS, budgetMs };
}

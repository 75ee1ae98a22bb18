import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { buildPlanner, PlannerSpec } from '../controller/planner-spec.js';
import { parseBackend, WebGpuBackend } from '../kernels/index.js';
import { gpuContext } from '../kernels/webgpu.js';
import { modelDefinition } from '../models/index.js';
import { resolveModel } from '../models/model.js';
import { resolveParams } from '../params.js';
import { PLANNER_NAMES, plannerDescriptor } from '../planners/registry.js';
import { PRIOR_PARAMS } from '../learned/params.js';
import { quantile } from '../samplers/stats.js';
import { Command, JSON_OPTION, MAX_THREADS, optionalInteger, parseInteger, parseOverrides, printJson, stringOpt, table, outputFolder } from './command.js';
import { progressBar } from './progress.js';
import { InputError } from '../input-error.js';

/** MPPI-Generic's published grid (samples x 100 steps, one iteration per optimisation) and the figures beside it [ms]. */
const PRESETS = {
  'mppi-generic': { samples: [2048, 8192, 16384], steps: 100, iterations: 1 },
} as const;

const PUBLISHED_MS = {
  'MPPI-Generic, RTX 4090': { 2048: 0.146, 8192: 0.232, 16384: 0.389 },
  'nav2 MPPI (CPU), i9-13900K': { 2048: 6.74, 8192: 29.9, 16384: 62.3 },
} as const;

export const benchPlannerCommand: Command = {
  name: 'bench planner',
  summary: 'Time one planner\'s optimisations (ms median and p99, rollout-steps/s) on cpu or webgpu, with the GPU round trips per plan.',
  usage: 'bench planner [--planner NAME] [--prior DIR] [--system NAME] [--samples M[,M...]] [--steps T] [--iterations J] [--backend cpu|webgpu|cpu,webgpu] [--gpu-path resident|rollouts|resident,rollouts] [--preset mppi-generic] [--repeats N] [--threads N] [--set key=value] [--out DIR] [--json]',
  options: {
    planner: { type: 'string', description: `a planner of the registry (${PLANNER_NAMES.join(', ')}; default mppi)`, valueName: 'NAME' },
    prior: { type: 'string', description: 'a learned prior (train-prior --out) for the planner to use', valueName: 'DIR' },
    system: { type: 'string', description: 'system (default pendulum)', valueName: 'NAME' },
    samples: { type: 'string', description: 'the planner\'s size (MPPI: samples M; TSMC, SPO, TRT-SMC: particles), a comma-separated list (default the planner\'s)', valueName: 'M' },
    steps: { type: 'string', description: 'horizon T in model steps (default the system\'s)', valueName: 'T' },
    iterations: { type: 'string', description: 'MPPI iterations per optimisation (default the planner\'s)', valueName: 'J' },
    backend: { type: 'string', description: 'cpu, webgpu, or cpu,webgpu (both timed interleaved, with their ratio); default webgpu where an adapter is found, else cpu', valueName: 'NAME' },
    'gpu-path': { type: 'string', description: 'webgpu: resident (whole iterations on the GPU, default), rollouts (planner on the CPU, GPU rollouts: the path before), or resident,rollouts (timed interleaved, with their ratio)', valueName: 'PATH' },
    preset: { type: 'string', description: 'mppi-generic: M in {2048, 8192, 16384}, T = 100, J = 1, beside the published figures', valueName: 'NAME' },
    repeats: { type: 'string', description: 'timed optimisations per size (default 50; 5 warm-up ones run first)', valueName: 'N' },
    threads: { type: 'string', description: 'CPU threads (0 = all cores; default 0)', valueName: 'N' },
    set: { type: 'string', multiple: true, description: 'planner parameter, e.g. --set elites=64', valueName: 'key=value' },
    out: { type: 'string', description: 'where to write results.json (default runs/bench-planner-TIME)', valueName: 'DIR' },
    json: JSON_OPTION,
  },
  async run(values) {
    const planner = stringOpt(values, 'planner') ?? 'mppi';
    const descriptor = plannerDescriptor(planner);
    const priorPath = stringOpt(values, 'prior');
    const prior = priorPath !== undefined ? resolveParams('prior', PRIOR_PARAMS, { path: priorPath, tsmcCentre: 'policy' }) : undefined;
    const presetName = stringOpt(values, 'preset');
    if (presetName !== undefined && !Object.hasOwn(PRESETS, presetName)) throw new InputError(`unknown --preset '${presetName}' (known: ${Object.keys(PRESETS).join(', ')})`);
    const preset = presetName ? PRESETS[presetName as keyof typeof PRESETS] : undefined;
    const system = stringOpt(values, 'system') ?? 'pendulum';
    const def = modelDefinition(system);
    const out = outputFolder(values, 'bench-planner');
    // a planner without a GPU path is measured on the CPU unless --backend says otherwise (and is then refused with the reason)
    const backendText = stringOpt(values, 'backend');
    const backends = backendText?.includes(',')
      ? [...new Set(backendText.split(',').map((b) => parseBackend(b.trim())))]
      : [descriptor.gpu || backendText !== undefined ? await chooseBackend(backendText) : 'cpu'];
    const backend = backends.join(',');
    const paths = (stringOpt(values, 'gpu-path') ?? 'resident').split(',').map((p) => p.trim()) as ('resident' | 'rollouts')[];
    for (const p of paths) if (p !== 'resident' && p !== 'rollouts') throw new InputError(`--gpu-path takes resident, rollouts or both (comma-separated), got '${p}'`);
    if (!backends.includes('webgpu') && paths.length > 1) throw new InputError('--gpu-path with two paths needs --backend webgpu');
    // what is timed, interleaved plan by plan: the CPU planner and/or each GPU path
    type Variant = { backend: 'cpu' | 'webgpu'; gpuPath: 'resident' | 'rollouts'; label: string };
    const variants = backends.flatMap((b): Variant[] => (b === 'cpu'
      ? [{ backend: b, gpuPath: 'resident', label: 'cpu' }]
      : paths.map((gpuPath) => ({ backend: b, gpuPath, label: gpuPath }))));
    const stepsText = stringOpt(values, 'steps');
    const steps = stepsText !== undefined ? parseInteger('--steps', stepsText, 1) : preset?.steps;
    const iterationsText = stringOpt(values, 'iterations');
    const iterations = iterationsText !== undefined ? parseInteger('--iterations', iterationsText, 1) : preset?.iterations;
    const samplesText = stringOpt(values, 'samples');
    const sizes = samplesText !== undefined
      ? samplesText.split(',').map((s) => parseInteger('--samples', s.trim(), 2))
      : preset ? [...preset.samples] : [undefined];
    const repeats = optionalInteger(values, 'repeats', 50, 1);
    const threads = optionalInteger(values, 'threads', 0, 0, MAX_THREADS, `this machine has ${MAX_THREADS} cores`);
    const overrides: Record<string, unknown> = parseOverrides(values.set as string[] | undefined);
    let model;
    try {
      model = resolveModel(def, steps !== undefined ? { horizon: steps } : {}, 'model');
    } catch (e) {
      throw new InputError(`--steps ${steps}: ${(e as Error).message}`);
    }
    const reqBase = { x0: [...model.x0], uPrev: new Array<number>(model.controlDim).fill(0), reference: [...model.goal], shiftSteps: 1 };
    const bar = progressBar(`${planner} ${system} ${backend}`, !values.json);
    const rows = [];
    const cpuName = `${cpus()[0]?.model ?? 'CPU'} (${threads || cpus().length} threads)`;
    let gpuName = '';
    const { sizeKey } = descriptor;
    const hasIterations = Object.hasOwn(descriptor.schema, 'iterations');
    if (iterations !== undefined && !hasIterations) throw new InputError(`--iterations: planner ${planner} has no iterations`);
    for (const [index, size] of sizes.entries()) {
      const sized = { ...overrides, ...(size !== undefined ? { [sizeKey]: size } : {}), ...(iterations !== undefined ? { iterations } : {}) };
      // the schema's defaults, not the system's: the figures measure the planner at a given size
      const params = resolveParams(planner, descriptor.schema, sized);
      const count = params[sizeKey] as number;
      // several variants are timed interleaved, plan by plan, so their ratio holds when the machine's speed drifts
      const built = await Promise.all(variants.map((v) => buildPlanner({
        system, model: steps !== undefined ? { horizon: steps } : {}, planner, params, prior, backend: v.backend, threads, seed: 1, gpuPath: v.gpuPath,
      } satisfies PlannerSpec)));
      for (const b of built) if (b.backend instanceof WebGpuBackend) gpuName = b.backend.adapterName;
      const times = variants.map(() => [] as number[]);
      const info = variants.map(() => ({}) as Record<string, number[]>);
      for (let k = 0; k < 5 + repeats; k++) {
        for (const [p, b] of built.entries()) {
          const t0 = performance.now();
          const r = await b.planner.plan(reqBase);
          const ms = performance.now() - t0;
          if (k < 5) continue;
          times[p].push(ms);
          for (const [key, v] of Object.entries(r.info)) (info[p][key] ??= []).push(v);
        }
        bar.update((index + (k + 1) / (5 + repeats)) / sizes.length, `${sizeKey} ${count}`);
      }
      for (const b of built) b.backend.dispose();
      for (const [p, v] of variants.entries()) {
        const median = quantile(times[p], 0.5);
        const meanOf = (key: string) => (info[p][key] ? info[p][key].reduce((a, b) => a + b, 0) / info[p][key].length : null);
        const rollouts = meanOf('rollouts');
        rows.push({
          path: v.label,
          samples: count,
          steps: model.horizon,
          iterations: hasIterations ? params.iterations as number : null,
          msMedian: median,
          msP99: quantile(times[p], 0.99),
          rolloutStepsPerS: rollouts !== null ? (rollouts * model.horizon) / (median / 1000) : null,
          perPlan: {
            gpuSubmits: meanOf('gpuSubmits'), gpuReadbacks: meanOf('gpuReadbacks'), gpuWaits: meanOf('gpuWaits'),
            gpuKiBUp: meanOf('gpuKiBUp'), gpuKiBDown: meanOf('gpuKiBDown'), levels: meanOf('levels'),
          },
        });
      }
    }
    bar.done();
    const device = backends.map((b) => (b === 'cpu' ? cpuName : gpuName)).join('; ');
    const result = {
      planner, system, backend, device, preset: presetName ?? null, repeats, rows,
      published: presetName === 'mppi-generic' ? PUBLISHED_MS : undefined,
    };
    writeFileSync(join(out, 'results.json'), `${JSON.stringify(result, null, 1)}\n`);
    if (values.json) return printJson({ ...result, out });
    const f = (v: number | null, digits = 1) => (v === null ? '-' : v.toFixed(digits));
    console.log(table(rows.map((r) => [r.path, r.samples, r.steps, r.iterations ?? '-', f(r.msMedian, 2), f(r.msP99, 2), r.rolloutStepsPerS === null ? '-' : r.rolloutStepsPerS.toExponential(2),
      f(r.perPlan.gpuSubmits), f(r.perPlan.gpuReadbacks), f(r.perPlan.gpuKiBUp), f(r.perPlan.gpuKiBDown)]),
    ['path', sizeKey, 'T', 'J', 'ms p50', 'ms p99', 'rollout-steps/s', 'submits', 'read-backs', 'KiB up', 'KiB down']));
    console.log(`\n${planner} on ${system}, ${backend}: ${device}`);
    for (const r of rows.filter((row) => row.path === 'resident')) {
      const before = rows.find((row) => row.path === 'rollouts' && row.samples === r.samples);
      if (before) console.log(`  ${r.samples}: rollouts / resident = ${(before.msMedian / r.msMedian).toFixed(2)}x (medians, timed interleaved)`);
      const onCpu = rows.find((row) => row.path === 'cpu' && row.samples === r.samples);
      if (onCpu) console.log(`  ${r.samples}: cpu / resident = ${(onCpu.msMedian / r.msMedian).toFixed(2)}x (medians, timed interleaved)`);
    }
    if (presetName === 'mppi-generic') {
      for (const [who, ms] of Object.entries(PUBLISHED_MS)) console.log(`  published, ${who}: ${Object.entries(ms).map(([m, v]) => `M=${m} ${v} ms`).join(', ')}`);
    }
    console.log(`wrote ${join(out, 'results.json')}`);
  },
};

/** --backend as given; without it the GPU where an adapter is found, else the CPU (said on stderr: a bench must say what it measured). */
async function chooseBackend(given: string | undefined): Promise<'cpu' | 'webgpu'> {
  if (given !== undefined) return parseBackend(given);
  try {
    await gpuContext();
    return 'webgpu';
  } catch (e) {
    console.error(`bench planner: no WebGPU adapter (${(e as Error).message.split('.')[0]}): measuring the CPU planners; --backend webgpu insists`);
    return 'cpu';
  }
}

import { CpuBackend, RolloutBackend, WebGpuBackend } from '../kernels/index.js';
import { sharedZeros } from '../kernels/pool.js';
import { Rng } from '../random.js';
import { Command, JSON_OPTION, MAX_THREADS, optionalInteger, parseNumber, printJson, stringOpt, table } from './command.js';
import { BACKEND_OPTION, backendFromOptions, modelFromOptions, SET_OPTION, SYSTEM_OPTION } from './rollout.js';
import { InputError } from '../input-error.js';

/** Most samples `bench rollout` takes: 2^20 rollouts of a 100-step horizon are already 800 MB of controls. */
const MAX_BENCH_SAMPLES = 2 ** 20;

interface Timing { batches: number; msPerBatch: number; stepsPerS: number }

async function time(run: () => Promise<unknown>, seconds: number): Promise<Timing & { steps?: number }> {
  await run(); // warm-up: compiles kernels, wakes workers
  await run();
  let batches = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000 || batches < 3) {
    await run();
    batches++;
  }
  const ms = (performance.now() - t0) / batches;
  return { batches, msPerBatch: ms, stepsPerS: 0 };
}

export const benchRolloutCommand: Command = {
  name: 'bench rollout',
  summary: 'Measure rollout throughput (rollout steps per second) for cost only and for cost plus exact gradient.',
  usage: 'bench rollout --system NAME [--samples M] [--backend cpu|webgpu] [--threads N] [--cpu-code wasm|js] [--seconds S] [--json]',
  options: {
    system: SYSTEM_OPTION,
    samples: { type: 'string', description: 'control sequences per batch (default 4096)', valueName: 'M' },
    backend: BACKEND_OPTION,
    threads: { type: 'string', description: 'CPU threads including the caller (default: all cores)', valueName: 'N' },
    'cpu-code': { type: 'string', description: 'CPU kernels as WebAssembly SIMD where the model gains from it (wasm, the default) or all as JavaScript (js, the reference)', valueName: 'wasm|js' },
    seconds: { type: 'string', description: 'measuring time per kernel (default 2)', valueName: 'S' },
    set: SET_OPTION,
    json: JSON_OPTION,
  },
  async run(values) {
    const { model } = modelFromOptions(values);
    const kind = backendFromOptions(values);
    const samples = optionalInteger(values, 'samples', 4096, 1, MAX_BENCH_SAMPLES, 'the controls alone would need gigabytes');
    const threads = optionalInteger(values, 'threads', MAX_THREADS, 1, MAX_THREADS, `this machine has ${MAX_THREADS} cores`);
    const code = stringOpt(values, 'cpu-code') ?? 'wasm';
    if (code !== 'wasm' && code !== 'js') throw new InputError(`--cpu-code must be wasm or js, got '${code}'`);
    const secondsText = stringOpt(values, 'seconds');
    const seconds = secondsText === undefined ? 2 : parseNumber('--seconds', secondsText);
    if (!(seconds > 0 && seconds <= 600)) throw new InputError(`--seconds must be in (0, 600], got '${secondsText}'`);
    // compile time: from the model to kernels that have rolled out once (graphs, generated code, the JS engine's or the GPU driver's compile)
    const compileStart = performance.now();
    const backend: RolloutBackend = kind === 'cpu' ? new CpuBackend(model, { threads, code }) : await WebGpuBackend.create(model);
    const one = sharedZeros(model.horizon * model.controlDim);
    await backend.cost({ controls: one });
    await backend.costGrad({ controls: one });
    const compileMs = performance.now() - compileStart;
    const controls = sharedZeros(samples * model.horizon * model.controlDim);
    new Rng(1).fillNormal(controls, 0.3);
    const steps = samples * model.horizon;
    const measure = async (run: () => Promise<unknown>) => {
      const t = await time(run, seconds);
      return { ...t, stepsPerS: steps / (t.msPerBatch / 1000) };
    };
    const forward = await measure(() => backend.cost({ controls }));
    const gradient = await measure(() => backend.costGrad({ controls }));
    const result = {
      system: model.name,
      backend: kind,
      device: backend instanceof WebGpuBackend ? backend.adapterName : `cpu x${threads} threads`,
      /** how each CPU kernel was emitted */
      cpuCode: backend instanceof CpuBackend ? { cost: backend.codeOf('cost'), gradient: backend.codeOf('grad') } : undefined,
      threads: kind === 'cpu' ? threads : undefined,
      samples,
      horizon: model.horizon,
      stateDim: model.stateDim,
      compileMs,
      forward,
      gradient,
      gradientOverForward: gradient.msPerBatch / forward.msPerBatch,
    };
    if (values.json) return printJson(result);
    const codeNote = result.cpuCode ? ` (cost kernel ${result.cpuCode.cost}, gradient kernel ${result.cpuCode.gradient})` : '';
    console.log(`${model.name}: ${samples} samples x ${model.horizon} steps on ${result.device}${codeNote}; compiled in ${(compileMs / 1000).toFixed(2)} s`);
    console.log(table([
      ['cost', forward.stepsPerS / 1e6, forward.msPerBatch, forward.batches],
      ['cost+gradient', gradient.stepsPerS / 1e6, gradient.msPerBatch, gradient.batches],
    ], ['kernel', 'M steps/s', 'ms/batch', 'batches']));
    console.log(`gradient / forward time: ${result.gradientOverForward.toFixed(2)}x`);
  },
};

import { buildStepGraphs } from '../../kernels/graphs.js';
import { GpuProgram, tickHeader, WebGpuBackend } from '../../kernels/webgpu.js';
import { NO_COST } from '../../kernels/wgsl-mppi.js';
import { LEVEL_OUT, TSMC_BUFFERS, TSMC_FLAG, TSMC_HEADER, TSMC_SCALAR, TSMC_WORKGROUP, tsmcAuxLayout, wgslTsmcSource } from '../../kernels/wgsl-tsmc.js';
import type { Model } from '../../models/model.js';
import type { ParamsOf } from '../../params.js';
import { controlScaling, toControls } from '../../models/controls.js';
import { leapfrogStepsAt } from './tsmc.js';
import type { PlanRequest, PlanResult, RecedingPlanner } from '../receding.js';
import type { MPC_TSMC_PARAMS } from './receding.js';

const ENTRY_POINTS = [
  'evaluate', 'prepare_mean', 'prepare', 'store_prepared', 'flip', 'reweight', 'resample',
  'hmc_begin', 'kick_drift', 'kick', 'hmc_end', 'adapt', 'level_end', 'polish_begin', 'polish_load', 'adam_step', 'polish_end',
] as const;
type EntryPoint = (typeof ENTRY_POINTS)[number];

interface ParticleBuffers {
  capacity: number;
  PS: GPUBuffer;
  SCR: GPUBuffer;
  TAPE: GPUBuffer;
  AUX: GPUBuffer;
  bindGroup: GPUBindGroup;
}

/**
 * TSMC with particles resident on the GPU (`backend: webgpu`): the same
 * tempering, warm start and polish as `TsmcPlanner`, in f32, with HMC moves
 * (NUTS's data-dependent tree sizes would leave most invocations idle in
 * lockstep; HMC's fixed L keeps every particle busy). Each tempering level
 * is one submit (reweight, resample, the moves, the step-size adaptation)
 * and one read-back of LEVEL_OUT.length numbers, which tell the host
 * whether beta reached 1; the plan is read back once at the end.
 */
export class GpuTsmcPlanner implements RecedingPlanner {
  readonly name = 'tsmc';
  private warm = false;
  private tick = 0;
  private lastParticles = 0;
  private levelMs = 0;
  /** the step size the last tick ended with (the GPU carries it; the host needs it for an adapted path length) */
  private stepSize: number | undefined;
  private particleBuffers: ParticleBuffers | undefined;
  private readonly scaling;
  private readonly dim: number;
  private readonly H: GPUBuffer;
  private readonly SC: GPUBuffer;
  private readonly levelStaging: GPUBuffer;
  private readonly planStaging: GPUBuffer;

  private constructor(
    readonly model: Model,
    readonly params: ParamsOf<typeof MPC_TSMC_PARAMS>,
    private readonly seed: number,
    private readonly program: GpuProgram<EntryPoint>,
  ) {
    const { stateDim: n, controlDim: m, horizon: T } = model;
    this.scaling = controlScaling(model);
    this.dim = T * m;
    this.H = program.storage(TSMC_HEADER.context + 2 * n + m, GPUBufferUsage.COPY_DST);
    this.SC = program.storage(TSMC_SCALAR.outPlan + this.dim, GPUBufferUsage.COPY_SRC);
    this.levelStaging = program.staging(LEVEL_OUT.length);
    this.planStaging = program.staging(1 + this.dim);
  }

  static async create(model: Model, backend: WebGpuBackend, params: ParamsOf<typeof MPC_TSMC_PARAMS>, seed: number): Promise<GpuTsmcPlanner> {
    const code = wgslTsmcSource(buildStepGraphs(model, false), controlScaling(model));
    const program = await GpuProgram.create(backend, code, `${model.name}-tsmc`, TSMC_BUFFERS, ENTRY_POINTS);
    return new GpuTsmcPlanner(model, params, seed, program);
  }

  reset(): void {
    this.warm = false;
    this.levelMs = 0;
    this.stepSize = undefined;
  }

  /** A new particle count takes effect at the next tick; more particles than the buffers hold make that tick cold. */
  updateParams(changes: Readonly<Record<string, unknown>>): void {
    Object.assign(this.params, changes);
  }

  private buffersFor(particles: number): ParticleBuffers {
    const have = this.particleBuffers;
    if (have && have.capacity >= particles) return have;
    if (have) for (const b of [have.PS, have.SCR, have.TAPE, have.AUX]) b.destroy();
    const { stateDim: n, horizon: T } = this.model;
    const d = this.dim;
    const program = this.program;
    const capacity = particles;
    const sizedBy = `tsmc.particles = ${capacity} (x ${d} controls per particle)`;
    const PS = program.storage(2 * capacity * (3 * d + 2), GPUBufferUsage.COPY_SRC, sizedBy);
    const SCR = program.storage(capacity * (4 * d + 3), 0, sizedBy);
    const TAPE = program.storage(capacity * (T + 1) * n, 0, sizedBy);
    const AUX = program.storage(tsmcAuxLayout(capacity, d).length);
    const bindGroup = program.bindGroup({ H: this.H, PS, SCR, TAPE, SC: this.SC, AUX });
    // the previous particles and plan were in the old buffers: this tick starts cold
    this.warm = false;
    this.particleBuffers = { capacity, PS, SCR, TAPE, AUX, bindGroup };
    return this.particleBuffers;
  }

  private header(req: PlanRequest, particles: number, capacity: number, carried: number, polishSteps: number): ArrayBuffer {
    const { horizon: T } = this.model;
    const p = this.params;
    const H = TSMC_HEADER;
    const { buffer, words, floats } = tickHeader(H.context, req);
    words[H.particles] = particles;
    words[H.tick] = this.tick;
    words[H.seed] = this.seed >>> 0;
    words[H.carried] = carried;
    words[H.flags] = (this.warm ? 0 : TSMC_FLAG.cold) | (p.resampling === 'systematic' ? TSMC_FLAG.systematic : 0) | (p.targetAcceptance > 0 ? TSMC_FLAG.adaptStep : 0);
    words[H.leapfrogSteps] = p.leapfrogSteps;
    words[H.polishSteps] = polishSteps;
    words[H.shiftSteps] = Math.min(Math.max(0, Math.round(req.shiftSteps ?? 1)), T - 1);
    words[H.capacity] = capacity;
    floats[H.lambda] = p.lambda;
    floats[H.rho] = p.rho;
    floats[H.targetAcceptance] = p.targetAcceptance;
    floats[H.stepSize] = p.stepSize;
    floats[H.priorSigma] = this.warm ? p.warmSigma : p.priorSigma;
    floats[H.priorGamma] = p.prior === 'ar1' ? p.priorGamma : 0;
    floats[H.startBeta] = this.warm ? p.warmStartBeta : 0;
    floats[H.polishRate] = p.polishRate;
    return buffer;
  }

  async plan(req: PlanRequest): Promise<PlanResult> {
    const program = this.program;
    const p = this.params;
    const N = p.particles;
    const d = this.dim;
    const buffers = this.buffersFor(N);
    const warm = this.warm;
    const carried = warm ? Math.min(Math.round(N * (1 - p.freshFraction)), this.lastParticles) : 0;
    program.write(this.H, 0, this.header(req, N, buffers.capacity, carried, p.polishSteps));
    this.tick++;

    const perParticle = Math.ceil(N / TSMC_WORKGROUP);
    program.submit(buffers.bindGroup, (dispatch) => {
      dispatch('prepare_mean', Math.ceil(d / TSMC_WORKGROUP));
      dispatch('prepare', perParticle);
      dispatch('evaluate', perParticle);
      dispatch('store_prepared', perParticle);
      dispatch('flip');
    });

    type Level = Record<(typeof LEVEL_OUT)[number], number> & { wallMs: number };
    const levels: Level[] = [];
    let beta = warm ? p.warmStartBeta : 0;
    let levelMs = warm ? this.levelMs : 0;
    // the step size each level starts with (the GPU adapts it; the host sees it per level), for an adapted path length
    let stepSize = warm && p.targetAcceptance > 0 && this.stepSize !== undefined ? this.stepSize : p.stepSize;
    const move = { ...p, integrationTime: p.leapfrogSteps * p.stepSize };
    while (beta < 1) {
      // stop when the next level, judged by the slowest so far, would end past the deadline
      if (req.deadline !== undefined && (levels.length > 0 || levelMs > 0) && performance.now() + levelMs >= req.deadline) break;
      if (levels.length >= p.maxLevels) {
        if (req.deadline !== undefined) break;
        throw new Error(`tempering did not reach beta = 1 within maxLevels = ${p.maxLevels} (beta = ${beta.toExponential(3)}); raise lambda or maxLevels`);
      }
      const t0 = performance.now();
      program.submit(buffers.bindGroup, (dispatch) => {
        dispatch('reweight');
        dispatch('resample', perParticle);
        dispatch('flip');
        const leapfrogSteps = leapfrogStepsAt(move, stepSize);
        for (let k = 0; k < p.movesPerLevel; k++) {
          dispatch('hmc_begin', perParticle);
          for (let l = 0; l < leapfrogSteps; l++) {
            dispatch('kick_drift', perParticle);
            dispatch('evaluate', perParticle);
            dispatch('kick', perParticle);
          }
          dispatch('hmc_end', perParticle);
          dispatch('adapt');
        }
        dispatch('level_end');
      }, (enc) => enc.copyBufferToBuffer(this.SC, TSMC_SCALAR.outLevel * 4, this.levelStaging, 0, this.levelStaging.size));
      const out = await program.read(this.levelStaging);
      const level = Object.fromEntries(LEVEL_OUT.map((k, i) => [k, out[i]])) as Level;
      if (level.noValid > 0) throw new Error('every particle has a non-finite energy (NaN or infinite cost); cannot reweight');
      level.wallMs = performance.now() - t0;
      levels.push(level);
      beta = level.beta;
      stepSize = level.stepSizeNext;
      levelMs = Math.max(levelMs, level.wallMs);
    }
    const times = levels.map((l) => l.wallMs);
    // no level fitted: trust the estimate less, so a slow outlier cannot stop tempering for good
    this.levelMs = times.length ? Math.max(...times) : 0.5 * this.levelMs;

    const polish = p.polishSteps > 0 && (req.deadline === undefined || performance.now() < req.deadline) ? p.polishSteps : 0;
    if (polish !== p.polishSteps) program.write(this.H, TSMC_HEADER.polishSteps * 4, Uint32Array.of(polish));
    program.submit(buffers.bindGroup, (dispatch) => {
      dispatch('polish_begin');
      for (let t = 0; t <= polish; t++) {
        if (t > 0) dispatch('adam_step');
        if (polish === 0) break;
        dispatch('polish_load');
        dispatch('evaluate');
      }
      dispatch('polish_end');
    }, (enc) => enc.copyBufferToBuffer(this.SC, TSMC_SCALAR.outCost * 4, this.planStaging, 0, this.planStaging.size));
    const out = await program.read(this.planStaging);
    this.warm = true;
    this.lastParticles = N;
    this.stepSize = stepSize;
    const last = levels.at(-1);
    const cost = out[0];
    return {
      controls: toControls(Float64Array.from(out.subarray(1, 1 + d)), this.scaling),
      cost: cost >= NO_COST ? Infinity : cost,
      info: {
        levels: levels.length, beta, stepSize: last?.stepSizeNext ?? p.stepSize, logZ: last?.logZ ?? 0, acceptance: last?.acceptance ?? 0,
        essRatio: (last?.ess ?? N) / N,
      },
      diagnostics: {
        series: { ladder_beta: levels.map((l) => l.beta), ladder_ess_ratio: levels.map((l) => l.ess / N), ladder_acceptance: levels.map((l) => l.acceptance) },
        // said once (and again after a reset), not on every tick
        ...(p.kernel === 'nuts' && !warm ? { notice: `GPU TSMC moves with HMC (${p.pathLength === 'adapted' ? 'adapted path length' : `leapfrogSteps = ${p.leapfrogSteps}`}); NUTS runs on the CPU planner (backend cpu)` } : {}),
      },
    };
  }

  /** The current particles (normalised controls, N x d): one read-back, for tests and diagnostics. */
  async particles(): Promise<Float64Array> {
    const buffers = this.particleBuffers;
    if (!buffers) return new Float64Array(0);
    const program = this.program;
    const N = this.lastParticles;
    const d = this.dim;
    const rec = 3 * d + 2;
    const staging = program.staging(1 + buffers.PS.size / 4);
    program.submit(buffers.bindGroup, () => undefined, (enc) => {
      enc.copyBufferToBuffer(this.SC, TSMC_SCALAR.current * 4, staging, 0, 4);
      enc.copyBufferToBuffer(buffers.PS, 0, staging, 4, buffers.PS.size);
    });
    const all = await program.read(staging);
    staging.destroy();
    const set = all[0];
    const out = new Float64Array(N * d);
    for (let i = 0; i < N; i++) {
      const at = 1 + (set * buffers.capacity + i) * rec;
      for (let k = 0; k < d; k++) out[i * d + k] = all[at + k];
    }
    return out;
  }
}

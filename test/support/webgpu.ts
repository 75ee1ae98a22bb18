import { gpuContext } from '../../src/kernels/webgpu.js';

let probe: Promise<string | undefined> | undefined;

/**
 * Every GPU test's guard, in one place: undefined when a WebGPU adapter is
 * there, else why not. Where CI asks for the GPU path
 * (TEMPERED_MPC_REQUIRE_WEBGPU=1) a missing adapter fails instead; elsewhere
 * the caller skips and the reason is printed once per suite.
 */
export function webgpuMissing(): Promise<string | undefined> {
  probe ??= gpuContext().then(() => undefined, (e: Error) => {
    if (process.env.TEMPERED_MPC_REQUIRE_WEBGPU === '1') throw e;
    return e.message;
  });
  return probe;
}

/** A mocha `before` hook body: skips the suite's tests (printing why) when no adapter is there. */
export async function skipWithoutWebGpu(ctx: Mocha.Context, what: string): Promise<boolean> {
  const missing = await webgpuMissing();
  if (missing === undefined) return false;
  console.log(`      skipping ${what}: ${missing}`);
  ctx.skip();
  return true;
}

import { getHeapStatistics } from 'node:v8';
import { parentPort, workerData } from 'node:worker_threads';
import { InputError } from '../input-error.js';
import { buildPlanner, BuiltPlanner, PlannerSpec } from './planner-spec.js';
import { lowerThreadPriority } from './thread-priority.js';
import { PlanFeedbackMaker } from './feedback.js';
import type { FromPlanner, ToPlanner } from './planner-thread.js';

// The planner's own thread (see PlannerThread): builds the planner from its spec, then answers requests in order.
const port = parentPort!;
const send = (m: FromPlanner, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

/** how many of the latest plans' feedback times the reserve for the next one is judged by */
const FEEDBACK_TIMES_KEPT = 20;

/**
 * The time the feedback (gains, refinement) took after the latest plans, as
 * the wall clock saw it: a plan with feedback stops searching this long before
 * its deadline. About 1 ms on an idle computer; under CPU load the thread is
 * descheduled in it (p99 9 ms on the acrobot with two busy processes), so the
 * search plans less instead of the plan landing late.
 */
const feedbackWallMs: number[] = [];
const feedbackReserveMs = () => (feedbackWallMs.length ? Math.max(...feedbackWallMs) : 0);

async function handle(built: BuiltPlanner & { feedback: PlanFeedbackMaker }, msg: ToPlanner): Promise<void> {
  const { planner } = built;
  if (msg.type === 'close') {
    // after the plan in flight (messages are handled in order): the thread ends with nothing of the GPU's outstanding
    built.backend.dispose();
    process.exit(0);
  }
  if (msg.type === 'reset') planner.reset();
  else if (msg.type === 'update') planner.updateParams(msg.changes);
  else if (msg.type === 'block') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, msg.ms);
  else if (msg.type === 'heap') {
    (globalThis as { gc?: () => void }).gc?.();
    const h = getHeapStatistics();
    send({ type: 'heap', id: msg.id, heap: { usedBytes: h.used_heap_size, committedBytes: h.total_heap_size } });
  }
  else {
    const { deadlineEpochMs, ...req } = msg.req;
    const reserveMs = req.feedback ? feedbackReserveMs() : 0;
    try {
      const result = await planner.plan({ ...req, deadline: deadlineEpochMs === undefined ? undefined : deadlineEpochMs - performance.timeOrigin - reserveMs });
      const controls = result.controls.slice();
      if (req.feedback) {
        // off the command thread: the gains and the refinement cost ~1 ms for the built-in systems, 30 ms for a 7-joint arm
        const startMs = performance.now();
        const feedback = built.feedback.make(req.x0, controls, req.uPrev, req.reference, req.feedback.refine);
        const feedbackMs = performance.now() - startMs;
        feedbackWallMs.push(feedbackMs);
        if (feedbackWallMs.length > FEEDBACK_TIMES_KEPT) feedbackWallMs.shift();
        const info = { ...result.info, feedbackMs, ...(deadlineEpochMs === undefined ? {} : { feedbackReserveMs: reserveMs }) };
        const buffers = [feedback.states.buffer, ...(feedback.gains ? [feedback.gains.buffer] : [])] as ArrayBuffer[];
        if (feedback.controls !== controls) buffers.push(feedback.controls.buffer as ArrayBuffer);
        send({ type: 'result', id: msg.id, result: { ...result, info, controls, feedback } }, [controls.buffer, ...buffers]);
        return;
      }
      send({ type: 'result', id: msg.id, result: { ...result, controls } }, [controls.buffer]);
    } catch (e) {
      send({ type: 'error', id: msg.id, message: (e as Error).message });
    }
  }
}

try {
  const spec = workerData as PlannerSpec;
  // before anything starts threads: the kernel workers inherit this thread's niceness
  const niceProblem = spec.nice ? lowerThreadPriority(spec.nice) : undefined;
  const planned = await buildPlanner(spec);
  const built = { ...planned, feedback: new PlanFeedbackMaker(planned.model) };
  // one message at a time: a plan that awaits (the WebGPU backend) is finished before the next starts
  let queue = Promise.resolve();
  port.on('message', (msg: ToPlanner) => {
    queue = queue.then(() => handle(built, msg));
  });
  send({ type: 'ready', niceProblem });
} catch (e) {
  send({ type: 'failed', message: (e as Error).message, input: e instanceof InputError });
}

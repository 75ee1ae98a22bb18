import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';

/**
 * Raises the calling thread's niceness (lowers its priority) on Linux, where
 * niceness is per thread and threads it starts later inherit it. Why: the
 * planner and its kernel threads are CPU-bound and the command thread is
 * not; at equal niceness, on a busy computer, the command thread waits for
 * their time slices and its commands come late. Lowering one's own priority
 * needs no privilege. Returns why it could not, or undefined.
 */
export function lowerThreadPriority(nice: number): string | undefined {
  if (process.platform !== 'linux') return `thread priorities are per process on ${process.platform}: the planner runs at the command thread's`;
  try {
    // /proc/thread-self -> "<pid>/task/<tid>"
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (!Number.isInteger(tid) || tid <= 0) return 'could not read this thread\'s id from /proc/thread-self';
    setPriority(tid, nice);
    return undefined;
  } catch (e) {
    return `could not lower the planner thread's priority: ${(e as Error).message}`;
  }
}

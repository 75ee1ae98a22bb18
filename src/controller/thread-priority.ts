import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { spawnSync } from 'node:child_process';

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
  const tid = threadId();
  if (typeof tid === 'string') return tid;
  try {
    setPriority(tid, nice);
    return undefined;
  } catch (e) {
    return `could not lower the planner thread's priority: ${(e as Error).message}`;
  }
}

/** The calling thread's Linux id (/proc/thread-self -> "<pid>/task/<tid>"), or why it could not be read. */
function threadId(): number | string {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    return Number.isInteger(tid) && tid > 0 ? tid : 'could not read this thread\'s id from /proc/thread-self';
  } catch (e) {
    return `could not read this thread's id from /proc/thread-self: ${(e as Error).message}`;
  }
}

/** How long `chrt` may take to answer before the command thread gives up on its priority. */
const CHRT_TIMEOUT_MS = 2000;

/**
 * Puts the calling thread (the command thread) under real-time scheduling,
 * SCHED_FIFO at `priority` (1-99), with reset-on-fork so that threads it
 * starts later (kernel pools, the telemetry's) run normally. Why: under CPU
 * load a thread at normal priority waits for a core after its timer fires
 * (measured on 2 cores with two busy processes: p99 3.9 ms for a loop doing
 * nothing else, 16% of a 40 Hz period); at real-time priority it takes the
 * core at once. This is what ros2_control's `thread_priority` does. The
 * planner stays under normal scheduling: CPU-bound at real-time priority it
 * starved the other processes until the kernel's fair server ran them
 * anyway, stopping the command thread for up to 41 ms (docs/real-time.md).
 * Node has no call for it, so util-linux's `chrt` sets it on this thread's
 * id; it needs CAP_SYS_NICE or an rtprio limit. Returns why it could not,
 * or undefined.
 */
export function raiseToRealTime(priority: number): string | undefined {
  if (process.platform !== 'linux') return `real-time scheduling is set through Linux's chrt; on ${process.platform} the command thread runs at normal priority`;
  return chrt(['--fifo', '--reset-on-fork', '--pid', String(priority)]);
}

/** The calling thread back under normal scheduling (always permitted). */
export function restoreNormalScheduling(): string | undefined {
  if (process.platform !== 'linux') return undefined;
  return chrt(['--other', '--pid', '0']);
}

function chrt(args: string[]): string | undefined {
  const tid = threadId();
  if (typeof tid === 'string') return tid;
  const r = spawnSync('chrt', [...args, String(tid)], { encoding: 'utf8', timeout: CHRT_TIMEOUT_MS });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'chrt (util-linux) is not installed' : `chrt failed: ${r.error.message}`;
  }
  if (r.status === 0) return undefined;
  const said = (r.stderr || r.stdout || '').trim().split('\n').pop() ?? '';
  if (/not permitted/i.test(said)) {
    return 'not permitted: real-time priority needs CAP_SYS_NICE or an rtprio limit (e.g. "@realtime - rtprio 98" in /etc/security/limits.conf and the user in group realtime; docs/real-time.md)';
  }
  return `chrt exited ${r.status}: ${said}`;
}

/**
 * The one way out of every process, the CLI's commands and the ROS nodes:
 * a normal end, an error, SIGINT or SIGTERM. Each main() installs it. The first signal aborts `signal`: a command
 * that declares itself interruptible ends its loop at the next step and
 * writes what it has (the log closed and readable, the summary saying it was
 * interrupted, checkpoints whole); any other command is ended at once, by
 * the signal's default action (no handler: see install). A
 * second signal, or an interruptible command still running its grace time
 * (10 s unless it says otherwise) after the first, ends the process without
 * waiting. Every way out of a process with handlers ends in process.exit, so nothing left behind (a
 * planner thread, a socket) can keep the process alive.
 */
const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;
type ShutdownSignal = keyof typeof SIGNAL_EXIT_CODES;

/** How long an interruptible command may take to finish after the first signal, unless it says otherwise. */
export const INTERRUPT_GRACE_S = 10;

class Shutdown {
  private readonly abort = new AbortController();
  /** the first signal received, if any */
  received: ShutdownSignal | undefined;

  /** Aborted by the first SIGINT or SIGTERM; its reason is the signal's name. */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** The exit code a run ended by a signal has (128 + the signal's number). */
  get signalExitCode(): number | undefined {
    return this.received && SIGNAL_EXIT_CODES[this.received];
  }

  /**
   * Handles SIGINT and SIGTERM for the command about to run. `who` and
   * `finishing` word the notice (who is interrupted, what it finishes).
   */
  install(interruptible: boolean, exit: (code: number) => void, graceS = INTERRUPT_GRACE_S, who = 'tempered-mpc', finishing = 'finishing the log and summary'): void {
    // A handler runs only when the event loop turns, and a command that computes
    // without awaiting (bench rollout, bench to) would hold the signal until it
    // ended. A command with nothing to finish keeps the default: the signal ends
    // it at once, wherever it is (exit status 128 + the signal's number).
    if (!interruptible) return;
    for (const name of Object.keys(SIGNAL_EXIT_CODES) as ShutdownSignal[]) {
      process.on(name, () => {
        const code = SIGNAL_EXIT_CODES[name];
        if (this.received) {
          process.stderr.write(`${who}: ${name} again: quitting now\n`);
          exit(code);
          return;
        }
        this.received = name;
        this.abort.abort(name);
        process.stderr.write(`${who}: interrupted (${name}): ${finishing} (${name === 'SIGINT' ? 'Ctrl-C' : name} again to quit at once)\n`);
        setTimeout(() => {
          process.stderr.write(`${who}: not finished ${graceS} s after ${name}: quitting\n`);
          exit(code);
        }, graceS * 1000).unref();
      });
    }
  }
}

/** The process's one shutdown path (the CLI's commands read its signal). */
export const shutdown = new Shutdown();

/**
 * The one way out of every command: a normal end, an error, SIGINT or
 * SIGTERM. main() installs it. The first signal aborts `signal`: a command
 * that declares itself interruptible ends its loop at the next step and
 * writes what it has (the log closed and readable, the summary saying it was
 * interrupted, checkpoints whole); any other command is ended at once. A
 * second signal, or an interruptible command still running its grace time
 * (10 s unless it says otherwise) after the first, ends the process without waiting. Whatever happened, the registered
 * closers run (planner threads, servers) and the process exits, so nothing
 * left behind (a worker, a socket) can keep it alive.
 */
export const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;
export type ShutdownSignal = keyof typeof SIGNAL_EXIT_CODES;

/** How long an interruptible command may take to finish after the first signal, unless it says otherwise. */
export const INTERRUPT_GRACE_S = 10;
/** How long one closer may take before the exit goes on without it. */
const CLOSER_LIMIT_MS = 5_000;

export class Shutdown {
  private readonly abort = new AbortController();
  private readonly closers: (() => unknown)[] = [];
  /** the first signal received, if any */
  received: ShutdownSignal | undefined;

  /** Aborted by the first SIGINT or SIGTERM; its reason is the signal's name. */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** Registers cleanup for every way out (run last-registered first); returns its removal. */
  onExit(close: () => unknown): () => void {
    this.closers.push(close);
    return () => {
      const i = this.closers.indexOf(close);
      if (i >= 0) this.closers.splice(i, 1);
    };
  }

  /** Runs the closers once, each bounded in time; a failing one is reported and the rest still run. */
  async close(): Promise<void> {
    for (const close of this.closers.splice(0).reverse()) {
      try {
        await Promise.race([Promise.resolve().then(close), new Promise((resolve) => setTimeout(resolve, CLOSER_LIMIT_MS).unref())]);
      } catch (e) {
        process.stderr.write(`tempered-mpc: while shutting down: ${(e as Error).message}\n`);
      }
    }
  }

  /** The exit code a run ended by a signal has (128 + the signal's number). */
  get signalExitCode(): number | undefined {
    return this.received && SIGNAL_EXIT_CODES[this.received];
  }

  /** Handles SIGINT and SIGTERM for the command about to run. */
  install(interruptible: boolean, exit: (code: number) => void, graceS = INTERRUPT_GRACE_S): void {
    for (const name of Object.keys(SIGNAL_EXIT_CODES) as ShutdownSignal[]) {
      process.on(name, () => {
        const code = SIGNAL_EXIT_CODES[name];
        if (this.received) {
          process.stderr.write(`tempered-mpc: ${name} again: quitting now\n`);
          exit(code);
          return;
        }
        this.received = name;
        this.abort.abort(name);
        if (!interruptible) {
          process.stderr.write(`tempered-mpc: interrupted (${name})\n`);
          void this.close().then(() => exit(code));
          return;
        }
        process.stderr.write(`tempered-mpc: interrupted (${name}): finishing the log and summary (${name === 'SIGINT' ? 'Ctrl-C' : name} again to quit at once)\n`);
        setTimeout(() => {
          process.stderr.write(`tempered-mpc: not finished ${graceS} s after ${name}: quitting\n`);
          exit(code);
        }, graceS * 1000).unref();
      });
    }
  }
}

/** The process's one shutdown path (the CLI's commands register with it). */
export const shutdown = new Shutdown();

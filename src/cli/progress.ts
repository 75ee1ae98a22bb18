/** A one-line progress bar on stderr, shown only on a terminal (and never with --json). */
export function progressBar(label: string, enabled: boolean) {
  const tty = enabled && process.stderr.isTTY;
  let last = 0;
  return {
    update(fraction: number, note = '') {
      if (!tty) return;
      const now = Date.now();
      if (now - last < 100 && fraction < 1) return;
      last = now;
      const width = 30;
      const f = Math.max(0, Math.min(1, fraction));
      const filled = Math.round(f * width);
      process.stderr.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(f * 100).toFixed(0).padStart(3)}% ${note}`.padEnd(100).slice(0, 100));
    },
    done() {
      if (tty) process.stderr.write(`\r${' '.repeat(100)}\r`);
    },
  };
}

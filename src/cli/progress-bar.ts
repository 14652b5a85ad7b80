/** A one-line progress bar on a terminal (stderr), redrawn at most ten times a second; nothing when not a TTY. */
export interface ProgressBar {
  update(fraction: number, detail: string): void;
  done(): void;
}

export function createProgressBar(stream: NodeJS.WriteStream, label: string, enabled = true): ProgressBar {
  if (!enabled || !stream.isTTY) return { update: () => undefined, done: () => undefined };
  const width = 24;
  let drawnAt = 0;
  let drawn = false;
  return {
    update(fraction, detail) {
      const now = Date.now();
      if (now - drawnAt < 100 && fraction < 1) return;
      drawnAt = now;
      drawn = true;
      const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
      const line = `${label} ${'█'.repeat(filled)}${'░'.repeat(width - filled)} ${String(Math.floor(fraction * 100)).padStart(3)}% ${detail}`;
      // \r and erase-line: redraw in place; cut to the terminal's width so it never wraps.
      stream.write(`\r\x1b[K${line.slice(0, Math.max(20, (stream.columns ?? 80) - 1))}`);
    },
    done() {
      if (drawn) stream.write('\r\x1b[K');
    },
  };
}

/**
 * The bytes of impressions one process may hold in delivery at once, whatever the job
 * concurrency: jobs of big batches take more of it than jobs of small ones. A job that does not
 * get its share within `waitMs` is handed back before its rows are read. A job bigger than the
 * whole budget runs alone.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiting: { bytes: number; grant: () => void }[] = [];

  constructor(readonly limit: number) {}

  get inUse(): number {
    return this.used;
  }

  /** Resolves true once `bytes` are held, or false after `waitMs` without them. */
  async acquire(bytes: number, waitMs: number): Promise<boolean> {
    if (this.fits(bytes) && this.waiting.length === 0) {
      this.used += bytes;
      return true;
    }
    return new Promise<boolean>((resolve) => {
      const entry = {
        bytes,
        grant: () => {
          clearTimeout(timer);
          resolve(true);
        },
      };
      const timer = setTimeout(() => {
        const index = this.waiting.indexOf(entry);
        if (index >= 0) this.waiting.splice(index, 1);
        resolve(false);
        this.admit();
      }, waitMs);
      this.waiting.push(entry);
    });
  }

  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
    this.admit();
  }

  private fits(bytes: number): boolean {
    return this.used === 0 || this.used + bytes <= this.limit;
  }

  /** First come, first served: a big job is not overtaken for ever by small ones. */
  private admit(): void {
    while (this.waiting.length > 0 && this.fits((this.waiting[0] as { bytes: number }).bytes)) {
      const next = this.waiting.shift() as { bytes: number; grant: () => void };
      this.used += next.bytes;
      next.grant();
    }
  }
}

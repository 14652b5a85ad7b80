/**
 * Requests in flight per destination within this process. A job that finds its destination
 * busy may wait here for a slot, but only as many as the destination has slots: beyond that it
 * goes back to the delayed set, so a slow destination never holds more than twice its
 * concurrency of the worker's job slots and every other destination keeps the rest.
 */
export class DestinationSlots {
  private readonly inFlight = new Map<string, number>();
  private readonly waiting = new Map<string, (() => void)[]>();

  /** Resolves true with a slot held, or false at once when the destination's wait line is full too. */
  async acquire(destinationId: string, concurrency: number): Promise<boolean> {
    const used = this.inFlight.get(destinationId) ?? 0;
    if (used < concurrency) {
      this.inFlight.set(destinationId, used + 1);
      return true;
    }
    const line = this.waiting.get(destinationId) ?? [];
    if (line.length >= concurrency) return false;
    this.waiting.set(destinationId, line);
    await new Promise<void>((resolve) => line.push(resolve));
    return true;
  }

  release(destinationId: string): void {
    const next = this.waiting.get(destinationId)?.shift();
    // The slot passes straight to the next waiter; otherwise it is freed.
    if (next !== undefined) next();
    else this.inFlight.set(destinationId, Math.max(0, (this.inFlight.get(destinationId) ?? 1) - 1));
  }
}

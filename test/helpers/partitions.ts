import { partitionOf } from '../../src/stores/redis-keys.js';

/** `count` environment ids, the one at index k in partition k of `count` (the first such `<stem>-<n>`). */
export function environmentPerPartition(stem: string, count: number): string[] {
  const found = new Map<number, string>();
  for (let n = 0; found.size < count; n += 1) {
    const id = `${stem}-${n}`;
    const partition = partitionOf(id, count);
    if (!found.has(partition)) found.set(partition, id);
  }
  return Array.from({ length: count }, (_, partition) => found.get(partition) as string);
}

/**
 * The name of a transaction that must apply once however often it runs (ioredis re-sends a
 * transaction whose reply was lost; a worker that lost its job's lock may still finish it): the
 * job, flush or ingest commit it belongs to (`id`) and what it does there (`mark`, e.g.
 * `settled:2`). Every mark of one id is a field of one hash, `once:<id>`, which expires after the
 * max delivery age plus a day: a request's marks cost Redis one key instead of one key each.
 */
export interface OnceName {
  readonly id: string;
  readonly mark: string;
}

export function onceName(id: string, mark: string): OnceName {
  return { id, mark };
}

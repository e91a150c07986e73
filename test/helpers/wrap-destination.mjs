// A destination that is `inner` in every way but `write`: the test wrappers
// (crash-points.mjs, pause-points.mjs) change only when a write returns.
export function withWrite(inner, write) {
  return {
    name: inner.name,
    capabilities: inner.capabilities,
    describe: () => inner.describe(),
    open: (ctx) => inner.open?.(ctx),
    prepare: (table, writeMode) => inner.prepare(table, writeMode),
    hasLoaded: inner.hasLoaded === undefined ? undefined : (query) => inner.hasLoaded(query),
    close: () => inner.close?.(),
    write,
  }
}

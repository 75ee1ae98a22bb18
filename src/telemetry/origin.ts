/**
 * Whether a request comes from this server's own pages or from no page at
 * all (curl, Foxglove's desktop app): a browser names the page's origin on
 * every cross-origin request, and a page elsewhere must not pause the
 * simulator or change a parameter (a simple POST needs no preflight).
 */
export function sameOrigin(origin: string | undefined, host: string | undefined, trusted: readonly string[] = []): boolean {
  if (origin === undefined) return true;
  if (trusted.includes(origin)) return true;
  try {
    return host !== undefined && new URL(origin).host === host;
  } catch {
    return false;
  }
}

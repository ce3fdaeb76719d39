/** Shared by the path rules: the path and the query of a request URL, apart. */
export function splitUrl(url: string): { path: string; query: string } {
  const q = url.indexOf('?');
  return q < 0 ? { path: url, query: '' } : { path: url.slice(0, q), query: url.slice(q) };
}

/** A path that starts with one slash (a rewrite to "" or "//x" must not leave the origin). */
export function cleanPath(path: string): string {
  const trimmed = path.replace(/^\/+/, '');
  return `/${trimmed}`;
}

// Tiny DOM helpers. Data only ever reaches the page through textContent and
// attributes set one by one, never through innerHTML, so a server name or path
// containing markup stays text.

/** Creates an element with a class and optional text. */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

/** Sets text only when it changed (avoids needless layout and keeps selections). */
export function setText(node, text) {
  const value = text === undefined || text === null ? '' : String(text);
  if (node.textContent !== value) node.textContent = value;
}

export function fmt(n, digits = 1) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en');
  return Number(n.toFixed(digits)).toString();
}

export const pct = (share) => `${fmt(share * 100, 1)}%`;

export function clockTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour12: false });
}

/** Fills a definition list from [label, value] pairs, reusing its nodes (one div per pair). */
export function fillStats(dl, pairs) {
  while (dl.children.length > pairs.length) dl.lastElementChild.remove();
  pairs.forEach(([label, value], i) => {
    let group = dl.children[i];
    if (!group) {
      group = dl.appendChild(el('div'));
      group.append(el('dt'), el('dd'));
    }
    setText(group.children[0], label);
    setText(group.children[1], value);
  });
}

/**
 * Fetches a JSON API path now and every `ms`, handing `render` the body (or undefined when the
 * route is absent, e.g. 404 outside fleet mode). Errors wait for the next round: the overview
 * already says when Velocity is unreachable. Returns a function that refreshes at once.
 */
export function poll(path, headers, render, ms) {
  let timer;
  const refresh = async () => {
    clearTimeout(timer);
    try {
      const res = await fetch(path, { headers: headers(), cache: 'no-store' });
      render(res.ok ? await res.json().catch(() => undefined) : undefined);
    } catch {
      // Next round.
    }
    timer = setTimeout(refresh, ms);
  };
  refresh();
  return refresh;
}

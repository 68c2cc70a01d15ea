// Keeping the row the reader looks at where it is while rows come and go above it: the first
// row in view and how far below the top it starts, found again after each change.

export interface Anchor {
  key: string;
  offset: number;  // the row's top, in pixels below the top of the list's viewport
}

export function rowsOf(list: HTMLElement): HTMLElement[] {
  return Array.from(list.querySelectorAll<HTMLElement>("li[data-key]"));
}

/** The first row whose bottom is below the top of the viewport (rows are in order: a binary search). */
export function anchorOf(list: HTMLElement): Anchor | null {
  const rows = rowsOf(list);
  let low = 0;
  let high = rows.length - 1;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (rows[middle].offsetTop + rows[middle].offsetHeight <= list.scrollTop) low = middle + 1;
    else high = middle;
  }
  const row = rows[low];
  return row ? { key: row.dataset.key!, offset: row.offsetTop - list.scrollTop } : null;
}

export function restore(list: HTMLElement, anchor: Anchor): void {
  const row = rowsOf(list).find((element) => element.dataset.key === anchor.key);
  if (row) list.scrollTop = row.offsetTop - anchor.offset;
}

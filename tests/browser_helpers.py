"""Helpers for the browser tests."""
from __future__ import annotations

_RECORD = """(selector) => {
  window.__barValues = [];
  const record = () => {
    const bar = document.querySelector(selector);
    const v = bar && bar.getAttribute('aria-valuenow');
    const seen = window.__barValues;
    if (v !== null && v !== '' && seen[seen.length - 1] !== v) seen.push(v);
  };
  new MutationObserver(record).observe(document.body, {subtree: true, childList: true, attributes: true});
  record();
}"""


def record_progress(page, bar_selector: str) -> None:
    """Start recording every distinct ``aria-valuenow`` the bar shows (not a sample of them)."""
    page.evaluate(_RECORD, bar_selector)


def recorded_progress(page) -> list[float]:
    """The values recorded since :func:`record_progress`, in the order shown."""
    return [float(v) for v in page.evaluate("window.__barValues")]


def assert_bar_moved(values: list[float]) -> None:
    """At least two different values strictly between 0 and 100, only ever going forward."""
    moving = [v for v in values if 0 < v < 100]
    assert len(set(moving)) >= 2, values
    assert moving == sorted(moving), values


def lasso_left_half(page, graph: str) -> None:
    """Draw a lasso around the left half of the plot area of the plotly graph ``graph`` (a selector)."""
    page.locator(graph).scroll_into_view_if_needed()
    left, top, w, h = page.evaluate("""(sel) => { const gd = document.querySelector(sel), s = gd._fullLayout._size,
        r = gd.getBoundingClientRect(); return [r.left + s.l, r.top + s.t, s.w, s.h]; }""", graph)
    path = [(left + 5, top + 5), (left + w * 0.5, top + 5), (left + w * 0.5, top + h - 5), (left + 5, top + h - 5),
            (left + 5, top + 8)]
    page.mouse.move(*path[0])
    page.mouse.down()
    for px, py in path[1:]:
        page.mouse.move(px, py, steps=8)
    page.mouse.up()

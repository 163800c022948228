"""core.base.cache: the one in-memory cache the app's per-click views share."""
from __future__ import annotations

import os
import threading

import pytest

from core.base.cache import LRUCache, file_stamp


def test_least_recently_used_goes_first():
    c = LRUCache(size=2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1          # a is now the most recent
    c.put("c", 3)
    assert "b" not in c and c.get("a") == 1 and c.get("c") == 3 and len(c) == 2


def test_get_or_make_makes_once_per_version():
    c = LRUCache(size=4)
    made = []

    def make(v):
        made.append(v)
        return f"value {v}"

    assert c.get_or_make("k", lambda: make(1), version=1) == "value 1"
    assert c.get_or_make("k", lambda: make(1), version=1) == "value 1"
    assert c.get_or_make("k", lambda: make(2), version=2) == "value 2"   # another version: a miss, replaced
    assert made == [1, 2] and len(c) == 1
    c.clear()
    assert len(c) == 0 and c.get("k", version=2) is None


def test_a_failing_make_stores_nothing():
    c = LRUCache(size=2)
    with pytest.raises(ZeroDivisionError):
        c.get_or_make("k", lambda: 1 / 0)
    assert "k" not in c


def test_threads_share_one_cache():
    c = LRUCache(size=8)
    out, errors = [], []

    def work(i):
        try:
            for j in range(200):
                out.append(c.get_or_make(j % 16, lambda j=j: j % 16))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(out) == 1200 and len(c) <= 8
    assert all(v == j % 16 for v, j in zip(out[:200], range(200)))


def test_file_stamp_changes_when_a_file_is_rewritten(tmp_path):
    f = tmp_path / "t.parquet"
    assert file_stamp(f) == (None,)
    f.write_bytes(b"one")
    first = file_stamp(f)
    f.write_bytes(b"three")
    os.utime(f, ns=(first[0][0] + 10**9, first[0][0] + 10**9))
    assert file_stamp(f) != first and file_stamp(f)[0][1] == 5
    with pytest.raises(ValueError):
        LRUCache(size=0)

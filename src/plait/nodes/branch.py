"""Fan-out branches: the keys their outputs merge by.

A branch (one ``Send``) writes under its own key, so that a branch re-run on resume replaces
its output; ``plait.nodes.kit`` files its usage and any recorded failure under the same key.
"""

from __future__ import annotations

from collections.abc import Iterable


def unique_ids(ids: Iterable[str], *, taken: Iterable[str] = ()) -> list[str]:
    """Make planned ids fit to key branch outputs by: no two alike, none in ``taken``.

    A blank id becomes ``s<n>`` and a repeated one ``<id>-<n>``, ``n`` being its place in
    the plan counting from 1; other ids are kept as written, stripped.
    """
    seen = set(taken)
    unique = []
    for index, raw in enumerate(ids, 1):
        key = raw.strip() or f"s{index}"
        if key in seen:
            key = f"{key}-{index}"
        seen.add(key)
        unique.append(key)
    return unique

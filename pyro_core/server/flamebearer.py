"""The flamebearer: Pyroscope's JSON for ``/render?format=json`` (sans-I/O).

Layout, as Pyroscope (``og``) renders it and its UI reads it:

* ``names[0] == "total"`` is the root; a name appears once and is shared by every node that carries it;
  indices are given in the order nodes are first met (depth-first, left to right).
* ``levels[d]`` is one flat list of ``[x, total, self, name_index]`` quadruples for the nodes at depth
  ``d``, left to right. ``x`` is delta-encoded within a level: the node's absolute offset minus the end
  (offset + total) of the previous node on that level; the first node's delta is its absolute offset.
* A node's children start at its offset **plus its self value** (the self part is drawn on the left, as
  Pyroscope does), ordered by name (byte order), then an ``other`` node if some were collapsed.
* Truncation: the threshold is :meth:`StackTree.min_value` (the ``max_nodes``-th largest node total, the
  root counted, ties all kept); under each parent the children below it become one ``other`` node with
  ``self == total``. ``other`` nodes are not counted against ``max_nodes``.
* ``numTicks`` is the root total; ``maxSelf`` the largest self value among the rendered nodes
  (``other`` nodes included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .tree import OTHER, StackTree, TreeNode, split_children

__all__ = ["DEFAULT_MAX_NODES", "decode_levels", "render", "timeline"]

DEFAULT_MAX_NODES = 8192
#: Pyroscope's timeline resolution, used for the empty timeline when none is given.
DEFAULT_TIMELINE_STEP = 10


def timeline(samples_per_bucket: Sequence[int] | Any, start: int, step: int) -> dict[str, Any]:
    """The ``timeline`` object: ``samples[i]`` is the bucket starting at ``start + i*step`` (seconds)."""
    if step <= 0:
        raise ValueError("timeline step must be positive")
    return {
        "startTime": int(start),
        "samples": [int(v) for v in samples_per_bucket],
        "durationDelta": int(step),
        "watermarks": {},
    }


def _flamebearer(tree: StackTree, max_nodes: int) -> dict[str, Any]:
    threshold = tree.min_value(max_nodes)
    names: list[str] = ["total"]
    name_ids: dict[bytes, int] = {b"total": 0}  # a real frame named "total" shares the root's name
    levels: list[list[int]] = []
    prev_end: list[int] = []
    max_self = 0
    # (node, or None for an "other" node; its total when "other"; absolute x; depth)
    work: list[tuple[TreeNode | None, int, int, int]] = [(tree.root, 0, 0, 0)]
    while work:
        node, other_total, x, depth = work.pop()
        if node is None:
            key, total, self_value = OTHER, other_total, other_total
        else:
            key, total, self_value = node.name, node.total, node.self_value
        idx = name_ids.get(key)
        if idx is None:
            idx = name_ids[key] = len(names)
            names.append(key.decode("utf-8", "replace"))
        if depth == len(levels):
            levels.append([])
            prev_end.append(0)
        levels[depth].extend((x - prev_end[depth], total, self_value, idx))
        prev_end[depth] = x + total
        if self_value > max_self:
            max_self = self_value
        if node is None or not node.children:
            continue
        kept, other = split_children(node, threshold)
        cx = x + self_value
        pending: list[tuple[TreeNode | None, int, int, int]] = []
        for c in kept:
            pending.append((c, 0, cx, depth + 1))
            cx += c.total
        if other:
            pending.append((None, other, cx, depth + 1))
        pending.reverse()
        work.extend(pending)
    return {"names": names, "levels": levels, "numTicks": tree.total, "maxSelf": max_self}


def render(
    tree: StackTree,
    *,
    max_nodes: int = DEFAULT_MAX_NODES,
    name: str,
    spy_name: str,
    sample_rate: int,
    units: str,
    start_time: int,
    end_time: int,
    query: str,
    timeline: dict[str, Any] | None = None,
    app_name: str | None = None,
) -> dict[str, Any]:
    """The full ``/render?format=json`` document for ``tree``. ``max_nodes <= 0`` disables truncation.
    ``app_name`` defaults to ``name``; without a ``timeline`` an empty one starting at ``start_time``
    is emitted (Pyroscope always sends the object)."""
    if timeline is None:
        timeline = _timeline([], start_time, DEFAULT_TIMELINE_STEP)
    return {
        "version": 1,
        "flamebearer": _flamebearer(tree, max_nodes),
        "metadata": {
            "format": "single",
            "spyName": spy_name,
            "sampleRate": sample_rate,
            "units": units,
            "name": name,
            "appName": name if app_name is None else app_name,
            "startTime": start_time,
            "endTime": end_time,
            "query": query,
            "maxNodes": max_nodes,
        },
        "timeline": timeline,
        "groups": {},
        "heatmap": None,
        "annotations": [],
    }


_timeline = timeline  # `render` has a parameter of the same name


def decode_levels(levels: Sequence[Sequence[int]]) -> list[list[tuple[int, int, int, int]]]:
    """Undo the delta encoding: per depth, ``(absolute_x, total, self, name_index)`` tuples."""
    out: list[list[tuple[int, int, int, int]]] = []
    for level in levels:
        if len(level) % 4:
            raise ValueError("a flamebearer level is not a list of quadruples")
        row: list[tuple[int, int, int, int]] = []
        end = 0
        for i in range(0, len(level), 4):
            x = end + level[i]
            total = level[i + 1]
            row.append((x, total, level[i + 2], level[i + 3]))
            end = x + total
        out.append(row)
    return out

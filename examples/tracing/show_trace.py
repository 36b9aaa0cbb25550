"""Print the spans of one trace, as a tree, from files of console-exporter JSON lines.

Usage: python show_trace.py TRACE_ID FILE...  (other lines in the files are skipped)
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from typing import Any


def _spans(trace_id: str, paths: list[str]) -> list[dict[str, Any]]:
    spans = []
    for path in paths:
        with open(path) as lines:
            for line in lines:
                try:
                    span = json.loads(line)
                except ValueError:
                    continue
                if isinstance(span, dict) and span.get("context", {}).get("trace_id") == f"0x{trace_id}":
                    spans.append(span)
    return sorted(spans, key=lambda span: str(span["start_time"]))


def main(trace_id: str, *paths: str) -> None:
    spans = _spans(trace_id, list(paths))
    ids = {span["context"]["span_id"] for span in spans}
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        children[span["parent_id"] if span["parent_id"] in ids else None].append(span)

    def show(parent: str | None, depth: int) -> None:
        for span in children[parent]:
            service = span["resource"]["attributes"].get("service.name", "?")
            outcome = span["attributes"].get("mission.outcome", "")
            print(f"{'  ' * depth}{span['name']}  [{service}] {span['kind']} {outcome}".rstrip())
            show(span["context"]["span_id"], depth + 1)

    print(f"trace {trace_id}: {len(spans)} spans")
    show(None, 1)


if __name__ == "__main__":
    main(*sys.argv[1:])

"""YAML that remembers where each value was written.

A job spec's errors must name their line. PyYAML's composer keeps the
position of every node; :func:`load` builds the plain Python value and, next
to it, a map from each key path to the line it is on.

A spec is small and written by hand, so what only a hostile file needs is
refused, cheaply and with its line: aliases (``*name``; a few hundred bytes
of nested aliases expand to billions of values) and tags of types other
than YAML's plain ones (``!!python/...``).
"""

from __future__ import annotations

from typing import Any

import yaml

Path = tuple[str | int, ...]


class SpecError(ValueError):
    """A problem in a spec, at ``line`` (1-based; None: not in the file)."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


def load(text: str) -> tuple[Any, dict[Path, int]]:
    """The value of a one-document YAML text and the line of every path.

    Examples
    --------
    >>> value, lines = load("a: 1\\nb:\\n  - x\\n  - {c: true}\\n")
    >>> value
    {'a': 1, 'b': ['x', {'c': True}]}
    >>> lines[("b", 1, "c")]
    4
    """
    loader = _NoAliasLoader(text)
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                return None, {}
            lines: dict[Path, int] = {(): node.start_mark.line + 1}
            return _build(loader, node, (), lines), lines
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            what = exc.problem or exc.context or "not valid YAML"
            raise SpecError(f"not valid YAML: {what}",
                            mark.line + 1 if mark else None) from None
        except yaml.YAMLError as exc:
            raise SpecError(f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases as it composes, before any expansion."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise SpecError("aliases (*name) are not allowed in a job spec; write the value "
                            "out", mark.line + 1)
        return super().compose_node(parent, index)


_PLAIN_COLLECTIONS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: Path, lines: dict[Path, int]) -> Any:
    if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_COLLECTIONS:
        raise SpecError(f"the tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not "
                        "allowed in a job spec", node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise SpecError("merge keys (<<) are not allowed in a job spec", line)
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise SpecError(f"keys must be text, got {key!r}", line)
            if key in out:
                raise SpecError(f"{_dotted((*path, key))} is given twice", line)
            lines[(*path, key)] = line
            out[key] = _build(loader, value_node, (*path, key), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            items.append(_build(loader, item, (*path, i), lines))
        return items
    return loader.construct_object(node, deep=True)


def _dotted(path: Path) -> str:
    """``("steps", 2, "k")`` -> ``"steps[2].k"``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text

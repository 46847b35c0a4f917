"""Reading a spec file's YAML with `yaml.safe_load`'s safety, and refusing what it lets through.

`yaml.safe_load` constructs no arbitrary objects, but it keeps the last of two equal keys
silently, reads `on:` as the key `True`, recurses once per nesting level (10,000 levels is a
RecursionError) and expands aliases into a structure that every later walk sees whole (a
"billion laughs"). `SpecLoader` refuses all four with the line and field they are at.
"""

from __future__ import annotations

import os
import re
import stat
from collections import deque
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from orchestrator.errors import SpecError

# A real spec is a few KB; a megabyte is a mistake (or a log file) long before it is a spec.
MAX_SPEC_BYTES = 1 << 20
# The deepest a real spec goes is 5 levels (space.lr.when.unfreeze: [list]); the limit leaves
# room, and stops nesting long before the composer's recursion could reach Python's limit.
MAX_DEPTH = 20
# Values in the document once aliases are expanded (every key, value and list item counts):
# a spec has a few hundred; anchors that multiply one another are refused before anything walks them.
MAX_NODES = 100_000

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class SpecLoader(yaml.SafeLoader):
    """yaml.SafeLoader that also refuses duplicate keys, keys that are not names, deep nesting
    and documents that aliases blow up, and reads `1e-4` as the number it is."""

    def __init__(self, stream: str, source: str):
        super().__init__(stream)
        self.source = source
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values under it, aliases expanded

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        try:
            event = self.peek_event()
            if self._depth > MAX_DEPTH:
                raise SpecError(
                    self.source, None, f"line {event.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep"
                )
            target = self.anchors.get(event.anchor) if isinstance(event, AliasEvent) else None
            if target is not None and id(target) not in self._sizes:  # its anchor is still open
                raise SpecError(
                    self.source, None, f"line {event.start_mark.line + 1}: an alias refers to a node that contains it"
                )
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._count(node)
        return node

    def _count(self, node: Node) -> None:
        if id(node) in self._sizes:
            return  # an alias: its anchor was counted, and its parent adds it again
        size = 1 + sum(self._sizes[id(child)] for child in _children(node))
        if size > MAX_NODES:
            raise SpecError(
                self.source,
                None,
                f"line {node.start_mark.line + 1}: the document expands to more than {MAX_NODES:,} values "
                "(anchors and aliases that repeat one another?)",
            )
        self._sizes[id(node)] = size

    def check_keys(self, root: Node) -> None:
        """Every mapping key is a name, and none appears twice in one mapping (YAML would keep the last)."""
        pending, seen = deque([(root, "")]), set()
        while pending:  # breadth first, so the problem nearest the top is reported
            node, path = pending.popleft()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, SequenceNode):
                pending += [(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
            elif isinstance(node, MappingNode):
                pending += self._check_mapping(node, path)

    def _check_mapping(self, node: MappingNode, path: str) -> list[tuple[Node, str]]:
        first_line: dict[str, int] = {}
        children = []
        for key, value in node.value:
            if key.tag == _MERGE_TAG:
                children.append((value, path))  # `<<: *base`: its keys may be overridden here, as YAML intends
                continue
            line = key.start_mark.line + 1
            if not isinstance(key, ScalarNode):
                raise SpecError(self.source, path or None, f"line {line}: a list or mapping as a key is not a name")
            if key.tag != _STR_TAG:
                kind = key.tag.rsplit(":", 1)[-1]
                raise SpecError(
                    self.source,
                    path or None,
                    f"line {line}: key {key.value!r} is not a name (YAML reads it as {kind}); quote it",
                )
            field = f"{path}.{key.value}" if path else key.value
            if key.value in first_line:
                first = first_line[key.value]
                where = f"twice on line {line}" if first == line else f"on lines {first} and {line}"
                raise SpecError(
                    self.source, field, f"duplicate key, {where}; YAML would silently keep only the last, so remove one"
                )
            first_line[key.value] = line
            children.append((value, field))
        return children


# YAML 1.1 (PyYAML) reads 1e-4 and 1.0e9 as strings: floats need a dot and a signed exponent.
# Everyone writes them as numbers, and a strict spec would refuse the string, so read YAML 1.2's floats.
SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value) if isinstance(node, SequenceNode) else []


def read_spec_yaml(path: Path, source: str) -> dict:
    """The spec file's top-level mapping, or SpecError saying what is wrong with the file."""
    text = _read_text(path, source)
    loader = None
    try:
        loader = SpecLoader(text, source)  # the reader refuses control characters right here
        root = loader.get_single_node()
        if root is None:
            raise SpecError(source, None, "holds no settings (only comments?); expected a mapping with `experiment`")
        loader.check_keys(root)
        raw = loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise SpecError(source, None, _yaml_problem(exc)) from None
    except RecursionError:  # a last resort: MAX_DEPTH stops nesting long before this
        raise SpecError(source, None, "nested too deeply to read") from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(raw, dict):
        raise SpecError(source, None, f"expected a YAML mapping at the top level, got {type(raw).__name__}")
    return raw


def spec_text_for_logging(path: str | Path) -> str:
    """The spec as logged to MLflow: re-serialised from its parsed YAML (key order kept), so a
    comment, which may hold anything (a token pasted there), never leaves the machine."""
    raw = read_spec_yaml(Path(path), str(path))
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _read_text(path: Path, source: str) -> str:
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise SpecError(source, None, "is a directory; expected a YAML file")
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(source, None, "is not a regular file (a pipe or a device?); expected a YAML file")
        with open(path, "rb") as stream:
            data = stream.read(MAX_SPEC_BYTES + 1)  # bounded even if the file grows meanwhile
    except FileNotFoundError:
        raise SpecError(source, None, "no such file") from None
    except OSError as exc:
        raise SpecError(source, None, f"cannot read: {exc.strerror or type(exc).__name__}") from None
    except ValueError as exc:  # a NUL in the path
        raise SpecError(source, None, f"cannot read: {exc}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(source, None, f"is larger than {MAX_SPEC_BYTES // 1024} KiB; a spec is a few KB of YAML")
    if not data.strip():
        raise SpecError(source, None, "the file is empty; expected a YAML mapping with `experiment` and `space`")
    try:
        return data.decode("utf-8-sig")  # a byte-order mark from a Windows editor is fine
    except UnicodeDecodeError:
        raise SpecError(source, None, "not a text file (is it binary?); expected UTF-8 YAML") from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    if isinstance(exc, ConstructorError):  # a tag safe_load does not construct (!!python/object...)
        return f"YAML tag{where}: tags other than plain mappings, lists, strings, numbers and true/false are refused"
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    return f"YAML syntax error{where}: {problem}"

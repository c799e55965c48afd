"""Safe YAML loading for untrusted templates.

A template comes from anyone who can call the API, so loading it must be bounded in size,
depth, alias expansion and CPU, and must never build anything but plain data. PyYAML's
composer and constructor are recursive and expand aliases into shared objects that later
code walks as if they were copies, so we first scan the *event* stream (no objects built) and
only hand the text to the C safe loader once it is known to be small and shallow.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from stratoflow.errors import Issue, TemplateError

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 100_000

# Only the YAML core schema tags; anything else (!!python/..., !foo) is refused outright.
_CORE = "tag:yaml.org,2002:"
ALLOWED_TAGS = frozenset(
    {"!"} | {_CORE + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")}
)

_Parser = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


class _Loader(_Parser):  # type: ignore[misc, valid-type]
    """The safe loader, plus an error on duplicate mapping keys (YAML 1.2 forbids them)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _value in node.value:
            if key_node.tag == _CORE + "merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be scalars", key_node.start_mark
                ) from None
            if key in seen:
                first = seen[key].start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {first})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


# Timestamps stay strings: the Topology must be plain JSON data, and TOSCA checks the format.
_Loader.add_constructor(_CORE + "timestamp", _Loader.construct_yaml_str)


def _mark(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _prescan(text: str, where: str) -> None:
    """Walk YAML events, enforcing depth, expanded size, tag and single-document limits."""
    depth = 0
    total = 0  # nodes counted with every alias expanded
    open_anchors: list[tuple[str | None, int]] = []  # per open collection: (anchor, total at start)
    anchor_size: dict[str, int] = {}
    documents = 0
    loader = _Parser(text)
    try:
        while True:
            event = loader.get_event()
            if event is None:
                break
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise _fail(where, "only one YAML document is allowed", event.start_mark)
                continue
            if isinstance(event, yaml.AliasEvent):
                if event.anchor not in anchor_size:
                    # Either undefined (the parser reports it) or still open: a recursive alias.
                    if any(a == event.anchor for a, _ in open_anchors):
                        raise _fail(where, f"recursive alias *{event.anchor}", event.start_mark)
                    raise _fail(where, f"undefined alias *{event.anchor}", event.start_mark)
                total += anchor_size[event.anchor]
            elif isinstance(event, yaml.NodeEvent):
                tag = getattr(event, "tag", None)
                if tag is not None and tag not in ALLOWED_TAGS:
                    raise _fail(where, f"YAML tag {tag!r} is not allowed", event.start_mark)
                total += 1
                if isinstance(event, yaml.CollectionStartEvent):
                    depth += 1
                    if depth > MAX_DEPTH:
                        raise _fail(where, f"nesting deeper than {MAX_DEPTH}", event.start_mark)
                    open_anchors.append((event.anchor, total - 1))
                elif event.anchor is not None:
                    anchor_size[event.anchor] = 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
                anchor, start = open_anchors.pop()
                if anchor is not None:
                    anchor_size[anchor] = total - start
            if total > MAX_NODES:
                raise _fail(
                    where,
                    f"more than {MAX_NODES} YAML nodes once aliases are expanded",
                    event.start_mark,
                )
    except yaml.YAMLError as exc:
        raise _yaml_error(where, exc) from None
    finally:
        loader.dispose()


def _fail(where: str, message: str, mark: Any) -> TemplateError:
    at = _mark(mark)
    return TemplateError([Issue(where, f"{message} ({at})" if at else message)])


def _yaml_error(where: str, exc: yaml.YAMLError) -> TemplateError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"invalid YAML: {context + ', ' if context else ''}{problem}"
    return _fail(where, message, mark)


def load_yaml_text(text: str, where: str = "") -> Any:
    """Parse untrusted YAML text into plain data, or raise TemplateError naming ``where``."""
    if len(text) > MAX_FILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise TemplateError([Issue(where, f"larger than {MAX_FILE_BYTES} bytes")])
    if "\x00" in text:
        raise TemplateError([Issue(where, "contains NUL characters")])
    _prescan(text, where)
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise _yaml_error(where, exc) from None
    except (ValueError, OverflowError, RecursionError) as exc:
        # e.g. an integer with more digits than Python converts, or a bad timestamp.
        raise TemplateError([Issue(where, f"invalid YAML value: {exc}")]) from None
    finally:
        loader.dispose()


def read_bytes(path: Path, where: str = "", limit: int = MAX_FILE_BYTES) -> bytes:
    """Read a regular file after checking its size with stat(), so huge files cost nothing."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise TemplateError([Issue(where, f"cannot read {path.name}: {exc.strerror}")]) from None
    if not stat.S_ISREG(st.st_mode):
        raise TemplateError([Issue(where, f"{path.name} is not a regular file")])
    if st.st_size > limit:
        raise TemplateError([Issue(where, f"{path.name} is {st.st_size} bytes, over {limit}")])
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise TemplateError([Issue(where, f"cannot read {path.name}: {exc.strerror}")]) from None
    if len(data) > limit:  # the file grew after stat()
        raise TemplateError([Issue(where, f"{path.name} is over {limit} bytes")])
    return data


def decode(data: bytes, where: str, name: str = "the template") -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TemplateError(
            [Issue(where, f"{name} is not UTF-8 text (bad byte at offset {exc.start})")]
        ) from None


def read_text(path: Path, where: str = "") -> str:
    return decode(read_bytes(path, where), where, path.name)


def load_yaml_file(path: Path, where: str = "") -> Any:
    return load_yaml_text(read_text(path, where), where)

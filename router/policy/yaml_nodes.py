"""Line-tracking YAML reader: safe YAML nodes become plain values that remember their lines, within limits."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from .env_refs import EnvRefs
from .problems import Findings, Problem, Unset

MAX_BYTES = 1 << 20
MAX_NODES = 10_000
MAX_DEPTH = 50
_MAX_NUMBER_CHARS = 100
_TAG = "tag:yaml.org,2002:"


@dataclass(frozen=True, slots=True)
class Scalar:
    value: str | int | float | bool | None
    line: int
    raw: str  # as written (${...} kept); may be a literal secret, so only echo it for non-secret keys
    refs: tuple[str, ...] = ()  # environment variables that supplied (part of) the value
    env_only: bool = False  # the whole value came from environment variables
    bad: bool = False  # a problem here is already reported: checks skip it without another message

    @property
    def templated(self) -> bool:
        """Written with ${...} references (which always make a string)."""
        return "${" in self.raw


@dataclass(frozen=True, slots=True)
class Seq:
    items: tuple[Node, ...]
    line: int
    bad: bool = False  # holds a node with a problem already reported


@dataclass(frozen=True, slots=True)
class Map:
    items: Mapping[str, tuple[int, Node]]  # key -> (line of the key, value)
    line: int
    bad: bool = False  # holds a node (or a key) with a problem already reported


Node = Scalar | Seq | Map


def describe(node: Node) -> str:
    """What a node is, for messages ("a list", "a string", ...), never its value."""
    if isinstance(node, Map):
        return "a mapping"
    if isinstance(node, Seq):
        return "a list"
    value = node.value
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string"


def to_plain(node: Node) -> Any:
    if isinstance(node, Map):
        return {name: to_plain(value) for name, (_, value) in node.items.items()}
    if isinstance(node, Seq):
        return [to_plain(item) for item in node.items]
    return node.value


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer refuses too deep or too many nodes before Python's recursion limit."""

    def __init__(self, text: str):
        super().__init__(text)
        self.depth = 0
        self.composed = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self.depth += 1
        self.composed += 1
        try:
            if self.depth > MAX_DEPTH or self.composed > MAX_NODES:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                line = mark.line + 1 if mark is not None else None
                if self.depth > MAX_DEPTH:
                    raise Problem(f"nested deeper than {MAX_DEPTH} levels", line)
                raise Problem(f"more than {MAX_NODES} YAML nodes; a policy is never this big", line)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _unclosed(e: yaml.MarkedYAMLError) -> bool:
    """A quote or a flow [ ] / { } that is never closed: PyYAML notices only where the text stops making
    sense (often the end of the file), so the line to blame is the one where it opens."""
    problem = e.problem or ""
    if e.context == "while scanning a quoted scalar":
        return problem.startswith("found unexpected end of stream")
    return e.context in ("while parsing a flow sequence", "while parsing a flow mapping") and (
        problem.startswith("expected ',' or")
    )


def _locate(e: yaml.MarkedYAMLError) -> tuple[int | None, str]:
    """The line to report and the message for a YAML syntax error."""
    problem_line = e.problem_mark.line + 1 if e.problem_mark else None
    context_line = e.context_mark.line + 1 if e.context_mark else None
    message = e.problem or e.context or "unreadable"
    if e.context and e.problem and context_line is not None and _unclosed(e):
        opened = {"while scanning a quoted scalar": "a quoted string", "while parsing a flow sequence": "a [",
                  "while parsing a flow mapping": "a {"}[e.context]
        return context_line, f"{opened} opened on this line is never closed ({message} at line {problem_line})"
    if e.context and e.problem:
        message += f" ({e.context})"
    return problem_line or context_line, message


def read(text: str, env: Mapping[str, str], found: Findings) -> Node | None:
    """The document as Scalar/Seq/Map with ${VAR} substituted, or None when it is empty.

    A syntax error or a bomb raises its Problem; a problem in one value (an unset variable, a duplicate key,
    a tag) goes to `found`, and the node is marked bad so that the checks say nothing more about it."""
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise Problem(f"the policy is larger than {MAX_BYTES // 1024} KiB", None)
    refs = EnvRefs(text)
    loader: _Loader | None = None
    # Problems are raised after the except blocks: PyYAML's errors quote the offending line, which may
    # hold a literal key, and must not ride along as the PolicyError's (even hidden) __context__.
    problem: Problem | None = None
    try:
        loader = _Loader(refs.text)
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        line, message = _locate(e)
        problem = Problem(f"invalid YAML: {refs.raw(message)}", line)
    except yaml.reader.ReaderError as e:
        line = refs.text[: int(e.position)].count("\n") + 1
        problem = Problem(f"invalid character {int(e.character):#x} (binary data?)", line)
    except yaml.YAMLError as e:
        problem = Problem(f"invalid YAML: {type(e).__name__}", None)
    finally:
        if loader is not None:
            loader.dispose()
    if problem is not None or loader is None:
        raise problem or Problem("invalid YAML", None)
    if root is None:
        return None
    return _Walker(loader, refs, env, found).walk(root, "", 0)


class _Walker:
    def __init__(self, loader: _Loader, refs: EnvRefs, env: Mapping[str, str], found: Findings):
        self.refs = refs
        self.env = env
        self.found = found
        self.unset: set[str] = set()  # an unset variable is reported where it is first used, not everywhere
        self.visits = 0
        self.constructors: dict[str, Callable[[ScalarNode], Any]] = {
            _TAG + "int": loader.construct_yaml_int,
            _TAG + "float": loader.construct_yaml_float,
            _TAG + "bool": loader.construct_yaml_bool,
            _TAG + "null": loader.construct_yaml_null,
        }

    def walk(self, node: yaml.Node, path: str, depth: int) -> Node:
        # Aliases share nodes, so an alias bomb is small as a graph but huge as a tree: count visits.
        self.visits += 1
        line = node.start_mark.line + 1
        if self.visits > MAX_NODES:
            raise Problem(f"more than {MAX_NODES} YAML nodes after expanding aliases", line, path or None)
        if depth > MAX_DEPTH:
            raise Problem(f"nested deeper than {MAX_DEPTH} levels (recursive alias?)", line, path or None)
        if isinstance(node, ScalarNode):
            try:
                return self.scalar(node, path, line)
            except Unset as p:
                if p.name in self.unset:
                    return Scalar(None, line, "", bad=True)
                self.unset.add(p.name)
                return self.bad(p, line)
            except Problem as p:
                return self.bad(p, line)
        if isinstance(node, SequenceNode) and node.tag == _TAG + "seq":
            items = tuple(self.walk(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(node.value))
            return Seq(items, line, any(item.bad for item in items))
        if isinstance(node, MappingNode) and node.tag == _TAG + "map":
            return self.mapping(node, path, depth, line)
        return self.bad(Problem(f"unsupported YAML tag {_short(node.tag)}", line, path or None), line)

    def bad(self, problem: Problem, line: int) -> Scalar:
        """Report a value's problem and stand in for the value."""
        self.found.add(problem)
        return Scalar(None, line, "", bad=True)

    def mapping(self, node: MappingNode, path: str, depth: int, line: int) -> Map:
        items: dict[str, tuple[int, Node]] = {}
        merges: list[yaml.Node] = []
        bad = False
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if isinstance(key_node, ScalarNode) and key_node.tag == _TAG + "merge":
                merges.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode):
                self.found.add(Problem("a key must be a plain name, not a list or mapping", key_line, path or None))
                bad = True
                continue
            name = self.refs.raw(key_node.value)
            if name in items:  # the first one is read; the duplicate is reported
                first = items[name][0]
                self.found.add(Problem(f"duplicate key '{name}' (first at line {first})", key_line, join(path, name)))
                bad = True
                continue
            value = self.walk(value_node, join(path, name), depth + 1)
            items[name] = (key_line, value)
            bad = bad or value.bad
        # YAML merge keys (<<: *anchor): explicit keys win, then earlier merged mappings win.
        for merge in merges:
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for source in sources:
                merged = self.walk(source, path, depth + 1)
                if not isinstance(merged, Map):
                    if not merged.bad:
                        message = "'<<' must merge a mapping or a list of mappings"
                        self.found.add(Problem(message, merged.line, path or None))
                    bad = True
                    continue
                bad = bad or merged.bad
                for name, entry in merged.items.items():
                    items.setdefault(name, entry)
        return Map(items, line, bad)

    def scalar(self, node: ScalarNode, path: str, line: int) -> Scalar:
        text: str = node.value
        tag: str = node.tag
        if tag in (_TAG + "str", _TAG + "timestamp"):
            sub = self.refs.substitute(text, self.env, line, path)
            return Scalar(sub.value, line, sub.raw, sub.refs, sub.env_only)
        construct = self.constructors.get(tag)
        if construct is None:
            raise Problem(f"unsupported YAML tag {_short(tag)}", line, path or None)
        if len(text) > _MAX_NUMBER_CHARS:
            raise Problem("number is too long", line, path or None)
        try:
            value = construct(node)
        except Exception:  # whatever SafeConstructor raises on text that does not fit its tag
            raise Problem(f"not a valid {_short(tag)} value", line, path or None) from None
        return Scalar(value, line, self.refs.raw(text))


def _short(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag

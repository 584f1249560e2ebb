"""``v2fly``: the domain-list DSL of v2fly/domain-list-community (``data/<list>`` files).

==========================  =====================================================================
``name``, ``domain:name``   block ``name`` and everything below it
``full:name``               block exactly ``name``
``regexp:...``, ``keyword:``  skipped and counted (DNS has no such rules)
``include:list``            every entry of the file ``list`` beside this one (same base URL)
``include:list @a @-b``     only the included entries that carry attribute ``a`` and not ``b``
``... @attr``, ``&tag``     attributes (kept for ``include:`` filters), affiliations (ignored)
==========================  =====================================================================

``#`` starts a comment anywhere on a line. Include names are plain file names (letters, digits, ``!``,
``_``, ``.``, ``-``), so an include can never leave the feed's directory. :class:`ListTree` collects the root
file and every file it includes (the update step fetches them, conditionally) and resolves the tree,
refusing cycles.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from blockdns.feeds.formats.base import Collector, ParseOptions, ParseResult, split_lines

INCLUDE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9!_.-]*")
ATTRIBUTE = re.compile(r"[A-Za-z0-9!_.-]+")
MAX_FILES = 200  # files one feed may include, all levels together
MAX_DEPTH = 16


@dataclass(frozen=True, slots=True)
class Rule:
    name: str  # normalised
    suffix: bool
    attributes: frozenset[str]


@dataclass(frozen=True, slots=True)
class Include:
    target: str
    required: frozenset[str]
    excluded: frozenset[str]
    where: str
    text: str

    def admits(self, rule: Rule) -> bool:
        return self.required <= rule.attributes and not (self.excluded & rule.attributes)


@dataclass(slots=True)
class ListFile:
    name: str
    rules: list[Rule] = field(default_factory=list)
    includes: list[Include] = field(default_factory=list)


def _where(list_name: str, root: str, number: int) -> str:
    return str(number) if list_name == root else f"{list_name}:{number}"


def parse_file(text: str, list_name: str, root: str, collector: Collector) -> ListFile:
    """One list file; names are normalised here so that rejected lines carry their file and line."""
    result = ListFile(list_name)
    for number, line in enumerate(split_lines(text), 1):
        tokens = line.split("#", 1)[0].split()
        if not tokens:
            continue
        collector.line()
        where = _where(list_name, root, number)
        rule, extras = tokens[0], tokens[1:]
        attributes = [token[1:] for token in extras if token.startswith("@")]
        if any(not (token.startswith(("@", "&")) and len(token) > 1) for token in extras):
            collector.reject(where, "unexpected text after the rule", line)
            continue
        kind, sep, value = rule.partition(":")
        if not sep:
            kind, value = "domain", rule
        if kind == "include":
            required = frozenset(a for a in attributes if not a.startswith("-"))
            excluded = frozenset(a[1:] for a in attributes if a.startswith("-"))
            if not INCLUDE_NAME.fullmatch(value) or not all(map(ATTRIBUTE.fullmatch, required | excluded)):
                collector.reject(where, "malformed include", line)
                continue
            result.includes.append(Include(value, required, excluded, where, line))
        elif kind in ("domain", "full"):
            name = collector.name(value, where, line)
            if name is not None:
                result.rules.append(Rule(name, kind == "domain", frozenset(attributes)))
        elif kind in ("regexp", "keyword"):
            collector.skip(f"{kind}: rule")
        else:
            collector.reject(where, f"unknown rule type {kind!r}", line)
    return result


class ListTree:
    """A root list and the files it includes; :meth:`result` resolves includes and attribute filters."""

    def __init__(self, options: ParseOptions, root: str) -> None:
        self.collector = Collector(options)
        self.root = root
        self.files: dict[str, ListFile] = {}

    def add(self, list_name: str, text: str) -> None:
        self.files[list_name] = parse_file(text, list_name, self.root, self.collector)

    def missing(self) -> list[str]:
        """Included files not added yet (in order of first mention)."""
        wanted: dict[str, None] = {}
        for file in self.files.values():
            for include in file.includes:
                if include.target not in self.files:
                    wanted.setdefault(include.target)
        return list(wanted)

    def result(self, *, follow_includes: bool = True) -> ParseResult:
        resolved: dict[str, list[Rule]] = {}
        for rule in self._rules(self.root, (), resolved, follow_includes):
            target = self.collector.data.block_suffix if rule.suffix else self.collector.data.block_exact
            target.add(rule.name)
        return self.collector.result()

    def _rules(
        self, list_name: str, stack: tuple[str, ...], resolved: dict[str, list[Rule]], follow: bool
    ) -> list[Rule]:
        if list_name in resolved:
            return resolved[list_name]
        file = self.files.get(list_name)
        if file is None:
            return []
        rules = list(file.rules)
        for include in file.includes:
            if not follow or include.target not in self.files:
                self.collector.skip("include: not followed")
            elif include.target in stack or include.target == list_name:
                self.collector.reject(include.where, "include cycle", include.text)
            elif len(stack) >= MAX_DEPTH:
                self.collector.reject(include.where, f"includes nested deeper than {MAX_DEPTH}", include.text)
            else:
                included = self._rules(include.target, (*stack, list_name), resolved, follow)
                rules.extend(rule for rule in included if include.admits(rule))
        resolved[list_name] = rules
        return rules


def parse(text: str, options: ParseOptions, includes: Mapping[str, str] | None = None) -> ParseResult:
    """Parse one list file; ``includes`` maps list names to their text (others are skipped, not followed)."""
    tree = ListTree(options, root="")
    tree.add("", text)
    pending = tree.missing()
    while includes is not None and pending and len(tree.files) < MAX_FILES:
        available = [name for name in pending if name in includes]
        if not available:
            break
        for name in available:
            tree.add(name, includes[name])
        pending = tree.missing()
    return tree.result()

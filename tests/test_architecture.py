"""The package's shape, checked on its source: no module imports another that imports it back (at the top
or lazily inside a function), and each layer imports only the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "blockdns"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source (``from pkg import mod`` included)."""
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = here
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                module = (
                    (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
                )
                targets.add(module)
                targets.update(f"{module}.{alias.name}" for alias in node.names)
        graph[name] = {target for target in targets if target in paths and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_another_that_imports_it_back() -> None:
    assert cycles(import_graph()) == []


# A layer may import only what is below it. (server and cli sit on top and may import anything.)
FORBIDDEN = [
    (
        "blockdns.wire",
        ("blockdns.resolve", "blockdns.server", "blockdns.ops", "blockdns.feeds", "blockdns.policy"),
    ),
    ("blockdns.policy", ("blockdns.feeds", "blockdns.resolve", "blockdns.server", "blockdns.ops")),
    (
        "blockdns.localdata",
        ("blockdns.config", "blockdns.policy", "blockdns.resolve", "blockdns.server", "blockdns.ops"),
    ),
    ("blockdns.resolve", ("blockdns.server", "blockdns.ops", "blockdns.cli", "blockdns.feeds")),
    ("blockdns.ops", ("blockdns.server", "blockdns.cli")),
    ("blockdns.feeds", ("blockdns.server", "blockdns.resolve", "blockdns.ops", "blockdns.cli")),
]


@pytest.mark.parametrize(("layer", "above"), FORBIDDEN, ids=[layer for layer, _ in FORBIDDEN])
def test_a_layer_imports_nothing_above_it(layer: str, above: tuple[str, ...]) -> None:
    graph = import_graph()
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if module == layer or module.startswith(layer + ".")
        for target in targets
        if any(target == upper or target.startswith(upper + ".") for upper in above)
    )
    assert wrong == []


def test_a_plain_server_does_not_load_the_encrypted_dns_libraries() -> None:
    # h2, cryptography's X.509 and dnspython's async resolver (anyio, httpcore) weigh about 16 MB of a
    # Raspberry Pi's memory: they are loaded only with an encrypted listener, upstream or DNSSEC.
    import subprocess
    import sys

    heavy = ("h2", "h11", "cryptography.x509", "dns.asyncresolver", "anyio", "httpcore")
    probe = (
        "import sys, blockdns.server.app, blockdns.server.generation, blockdns.resolve.forward; "
        f"print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=PACKAGE.parent, capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []

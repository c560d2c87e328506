"""The layer rule, checked: ``python -m botster.dev.layers`` prints the layers and every import
that points the wrong way (exit 1 if any). ``tests/test_layers.py`` runs it in ``make test``.

    base         errors, paths, the loop guard, config, identity, wire format, net, vault
    lua          the Lua runtime           (base)
    sessions     PTY session processes     (base)
    transports   carriers of the client protocol (base, sessions) — never the Lua runtime:
                 terminal bytes never cross into Lua
    remote       relay and E2E machinery of the hub (base, sessions, transports)
    primitives   one module per Lua global (everything above)
    clients      tui, mcp: base, transports and the terminal model only
    relay        the self-hostable relay server (base only)
    root         the hub object, cli, demo, docgen, dev: may import anything

Every import counts, those under ``if TYPE_CHECKING:`` and inside functions included: a type
that must point up is a Protocol declared below.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

__all__ = ["LAYERS", "layer_of", "violations"]

PACKAGE = Path(__file__).resolve().parents[1]

# layer -> (module prefixes, layers it may import besides itself)
LAYERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "base": (("botster.base",), ()),
    "lua": (("botster.lua",), ("base",)),
    "sessions": (("botster.sessions",), ("base",)),
    "transports": (("botster.transports",), ("base", "sessions")),
    "remote": (("botster.remote",), ("base", "sessions", "transports")),
    "primitives": (("botster.primitives",), ("base", "lua", "sessions", "transports", "remote")),
    "clients": (("botster.tui", "botster.mcp"), ("base", "transports", "terminal-model")),
    "relay": (("botster.relay",), ("base",)),
    "root": (
        ("botster.hub", "botster.cli", "botster.demo", "botster.docgen", "botster.dev"),
        ("base", "lua", "sessions", "transports", "remote", "primitives", "clients", "relay"),
    ),
}
# The one module of a layer that clients may use: the terminal model they render.
TERMINAL_MODEL = "botster.sessions.terminal"


def layer_of(module: str) -> str | None:
    if module == TERMINAL_MODEL or module.startswith(TERMINAL_MODEL + "."):
        return "terminal-model"
    best: tuple[int, str] | None = None
    for layer, (prefixes, _) in LAYERS.items():
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[0]):
                best = (len(p), layer)
    return best[1] if best else None


def _module_name(path: Path, package: Path) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str, package: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: -node.level or None]
                if path.name == "__init__.py":
                    base = module.split(".")[: len(module.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            # `from botster.x import y` may name a submodule y
            for a in node.names:
                sub = package.parent / (f"{target}.{a.name}".replace(".", "/"))
                if sub.with_suffix(".py").exists() or sub.is_dir():
                    out.append((node.lineno, f"{target}.{a.name}"))
    return [(line, name) for line, name in out if name.startswith("botster")]


def violations(package: Path = PACKAGE) -> list[str]:
    """Every import in the botster package (at `package`) that its layer may not make."""
    found: list[str] = []
    for path in sorted(package.rglob("*.py")):
        module = _module_name(path, package)
        own = layer_of(module)
        if own is None:
            if module != "botster":
                found.append(f"{path.relative_to(package.parent)}: module {module} has no layer")
            continue
        may = {own, *LAYERS[own][1]} if own in LAYERS else {own}
        for line, target in _imports(path, module, package):
            to = layer_of(target)
            if to is None or to in may:
                continue
            if to == "terminal-model" and "sessions" in may:
                continue
            where = f"{path.relative_to(package.parent)}:{line}"
            found.append(f"{where}: {own} imports {target} ({to})")
    return sorted(set(found))


def main() -> int:
    for layer, (prefixes, may) in LAYERS.items():
        print(f"{layer:<11} {', '.join(prefixes):<52} may import: {', '.join(may) or '-'}")
    found = violations()
    print(f"\n{len(found)} violations")
    for v in found:
        print("  " + v)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

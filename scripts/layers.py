#!/usr/bin/env python3
"""Checks that the service's modules import only downward.

Each top-level module of src/ sits in one layer (LAYERS, lowest first) and may use
`crate::` paths of its own layer's modules or lower ones only; app and routes share a layer,
the router and the state it serves. Test code (`#[cfg(test)]` items and modules, tests.rs)
may reach further and is not read. Prints each upward import with the file it is in, and
exits 1 if there is any. ARCHITECTURE.md, "Layers", explains the order.
"""

import re
import sys
from pathlib import Path

LAYERS = [
    ["domain"],
    ["metrics", "egress", "request_id"],
    ["policy"],
    ["auth"],
    ["credentials"],
    ["audit"],
    ["rate_limit"],
    ["kill_switch"],
    ["config"],
    ["error"],
    ["issuance"],
    ["app", "routes"],
    ["cli", "telemetry"],
]
LAYER_OF = {module: i for i, layer in enumerate(LAYERS) for module in layer}
SRC = Path(__file__).resolve().parent.parent / "src"


def test_only_children(text: str) -> set[str]:
    """The names of child modules declared `#[cfg(test)] mod NAME;`."""
    return set(re.findall(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text))


def production_text(text: str) -> str:
    """`text` without comments, `#[cfg(test)]` items, and the test module at its end."""
    text = re.sub(r"(?m)^\s*//.*$", "", text)
    match = re.search(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text)
    if match:
        text = text[: match.start()]
    # A single `#[cfg(test)]` item: the attribute and the statement after it.
    return re.sub(r"#\[cfg\(test\)\][^;{]*;", "", text)


def used_modules(text: str) -> set[str]:
    used = set(re.findall(r"\bcrate::(\w+)", text))
    for group in re.findall(r"crate::\{([^;]*?)\}\s*;", text, re.S):
        used.update(re.findall(r"(?:^|[,{\s])(\w+)(?=::|\s*[,}]|\s*$)", group))
    return used - {"self", "super"}


def main() -> int:
    skip: set[Path] = set()
    problems = []
    files = sorted(SRC.rglob("*.rs"))
    for path in files:
        text = path.read_text()
        base = path.with_suffix("") if path.name not in ("mod.rs", "lib.rs", "main.rs") else path.parent
        for child in test_only_children(text):
            skip.update({base / f"{child}.rs", base / child})
    for path in files:
        rel = path.relative_to(SRC)
        if path.name == "tests.rs" or any(path == s or s in path.parents for s in skip):
            continue
        top = rel.parts[0].removesuffix(".rs")
        if top in ("lib", "main"):
            continue
        if top not in LAYER_OF:
            problems.append(f"{rel}: module {top} is in no layer of scripts/layers.py")
            continue
        for used in sorted(used_modules(production_text(path.read_text()))):
            if used in LAYER_OF and LAYER_OF[used] > LAYER_OF[top]:
                problems.append(f"{rel}: {top} imports {used}, a higher layer")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

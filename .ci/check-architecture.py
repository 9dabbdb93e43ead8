#!/usr/bin/env python3
"""Fails when the service's layout breaks the rules docs/architecture.md states.

1. Layers: a module of the service library may import (`crate::x`) only modules of a lower layer
   (LAYERS below, lowest first). This forbids both cycles and imports from a lower layer back up.
2. Crates: the libraries that tie a module to a transport or a driver are named only where
   EXTERNAL allows them (axum, hyper and tower-http only in `http`, sqlx only in `store`, ...).
3. Function length: no function of the product code (src/, crates/*/src/) over MAX_FN_LINES
   lines, unless a comment starting with `// Long:` in the lines just above it says why.

Comments and string literals are stripped before looking, so a doc link or a SQL string that
mentions a module does not count. Run from the repository root: python3 .ci/check-architecture.py
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Lowest first. Modules in one layer may not import each other.
LAYERS = [
    ["error_code", "retry", "telemetry", "auth"],
    ["verify"],
    ["event"],
    ["config"],
    ["store"],
    ["voltage_api"],
    ["handlers"],
    ["outbox"],
    ["ingest", "reconcile", "retention"],
    ["http"],
    ["app"],
]
RANK = {module: rank for rank, layer in enumerate(LAYERS) for module in layer}

# Crate → the top-level modules that may name it. The binary (main.rs, cli/) may name anything.
EXTERNAL = {
    "axum": {"http"},
    "hyper": {"http"},
    "hyper_util": {"http"},
    "tower_http": {"http"},
    "http_body_util": {"http"},
    "sqlx": {"store"},
    "reqwest": {"handlers", "voltage_api"},
    "async_nats": {"handlers"},
    "figment": {"config"},
    "metrics_exporter_prometheus": {"telemetry", "http"},
    # Derives only: the store's row types are the query API's response bodies.
    "utoipa": {"http", "error_code", "store"},
    # The `http` handler signs outbound calls with Standard Webhooks; Voltage's scheme is the
    # `voltage-signature` crate's, so `verify` names neither hmac nor subtle.
    "hmac": {"handlers"},
    "subtle": set(),
}
MAX_FN_LINES = 50


def strip(source: str) -> str:
    """Replaces comments and the contents of string and char literals with spaces, keeping
    newlines, so line numbers and braces of code stay where they were."""
    out = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if source.startswith("//", i):
            j = source.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif source.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if source.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif source.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", source[i:j]))
            i = j
        elif (m := re.match(r'b?r(#*)"', source[i:])) and (i == 0 or not (source[i - 1].isalnum() or source[i - 1] == "_")):
            end = source.find('"' + m.group(1), i + m.end())
            end = n if end < 0 else end + 1 + len(m.group(1))
            out.append(m.group(0)[0] + re.sub(r"[^\n]", " ", source[i + 1:end]))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and source[j] != '"':
                j += 2 if source[j] == "\\" else 1
            out.append('"' + re.sub(r"[^\n]", " ", source[i + 1:j]) + '"')
            i = j + 1
        elif c == "'" and (re.match(r"'\\.+?'", source[i:i + 12]) or (i + 2 < n and source[i + 2] == "'")):
            j = source.find("'", i + 2 if source[i + 1] != "\\" else i + 3)
            out.append("'" + " " * (j - i - 1) + "'")
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_of(root: pathlib.Path, path: pathlib.Path) -> str | None:
    rel = path.relative_to(root / "src")
    top = rel.parts[0]
    if top in ("main.rs", "cli"):
        return None  # the binary
    if top == "lib.rs":
        return "lib"
    return top[:-3] if top.endswith(".rs") else top


def check_imports(root: pathlib.Path, path: pathlib.Path, code: str, errors: list[str]) -> None:
    module = module_of(root, path)
    for number, line in enumerate(code.splitlines(), 1):
        where = f"{path.relative_to(root)}:{number}"
        for target in re.findall(r"\bcrate::([a-z_]+)", line):
            if module in (None, "lib") or target == module:
                continue
            if target not in RANK:
                errors.append(f"{where}: `crate::{target}` is not in a layer of .ci/check-architecture.py")
            elif module not in RANK:
                errors.append(f"{where}: module `{module}` is not in a layer of .ci/check-architecture.py")
            elif RANK[target] >= RANK[module]:
                errors.append(
                    f"{where}: `{module}` (layer {RANK[module]}) imports `crate::{target}` "
                    f"(layer {RANK[target]}): only lower layers may be imported"
                )
        if module is None:
            continue
        for name, allowed in EXTERNAL.items():
            if re.search(rf"(?<![\w:]){name}::", line) or re.search(rf"\buse {name}\b", line):
                if module not in allowed:
                    places = ", ".join(sorted(allowed)) or "nowhere in the service (a crate owns it)"
                    errors.append(f"{where}: `{name}` used in `{module}`; allowed in: {places}")


def function_lengths(root: pathlib.Path, path: pathlib.Path, source: str, code: str, errors: list[str]) -> None:
    lines, code_lines = source.splitlines(), code.splitlines()
    starts = [
        (i, m.group(1))
        for i, line in enumerate(code_lines)
        if (m := re.match(r"\s*(?:pub(?:\([a-z:]+\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)", line))
    ]
    for start, name in starts:
        depth, opened, end = 0, False, None
        for j in range(start, len(code_lines)):
            for ch in code_lines[j]:
                if ch == "{":
                    depth, opened = depth + 1, True
                elif ch == "}":
                    depth -= 1
                elif ch == ";" and not opened and depth == 0:
                    end = j  # a declaration without a body
                    break
            if end is not None or (opened and depth == 0):
                end = j if end is None else end
                break
        if end is None:
            continue
        length = end - start + 1
        if length <= MAX_FN_LINES:
            continue
        above = lines[max(0, start - 8):start]
        if any(line.strip().startswith("// Long:") for line in above):
            continue
        errors.append(
            f"{path.relative_to(root)}:{start + 1}: fn {name} is {length} lines (over {MAX_FN_LINES}); "
            "split it, or say why above it in a `// Long: ...` comment"
        )


def check(root: pathlib.Path) -> list[str]:
    errors: list[str] = []
    for path in sorted((root / "src").rglob("*.rs")):
        source = path.read_text()
        code = strip(source)
        check_imports(root, path, code, errors)
        function_lengths(root, path, source, code, errors)
    for path in sorted(root.glob("crates/*/src/**/*.rs")):
        source = path.read_text()
        function_lengths(root, path, source, strip(source), errors)
    return errors


def self_test() -> None:
    """The checker itself: each rule, broken once in a scratch tree, must be reported."""
    import tempfile

    cases = {
        "src/store/a.rs": ("use axum::Router;\n", "`axum` used in `store`"),
        "src/config/b.rs": ("use crate::store::Store;\n", "`config` (layer 3) imports `crate::store`"),
        "src/ingest/c.rs": ("use crate::reconcile::Sweep;\n", "imports `crate::reconcile`"),
        "src/event/d.rs": (
            "fn long() {\n" + "    let x = \"{\";\n" * 55 + "}\n",
            "fn long is 57 lines",
        ),
        "src/event/e.rs": (
            "// Long: one table, read top to bottom.\nfn fine() {\n" + "    ();\n" * 55 + "}\n",
            None,
        ),
        "src/verify/f.rs": ("/// See [`crate::http::Router`].\nconst S: &str = \"crate::app\";\n", None),
    }
    with tempfile.TemporaryDirectory() as scratch:
        root = pathlib.Path(scratch)
        for name, (text, _) in cases.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        errors = check(root)
    for name, (_, expected) in cases.items():
        found = [e for e in errors if e.startswith(name)]
        if expected is None:
            assert not found, f"self-test: {name} should pass, got {found}"
        else:
            assert any(expected in e for e in found), f"self-test: {name}: {expected!r} not in {found}"
    print(f"check-architecture: self-test passed ({len(cases)} cases)")


def main() -> int:
    self_test()
    errors = check(ROOT)
    for error in errors:
        print(error)
    if errors:
        print(f"check-architecture: {len(errors)} problem(s); the rules are in docs/architecture.md")
        return 1
    print("check-architecture: layers, crates and function lengths as docs/architecture.md states")
    return 0


if __name__ == "__main__":
    sys.exit(main())

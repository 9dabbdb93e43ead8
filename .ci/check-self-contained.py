#!/usr/bin/env python3
"""Fails when a tracked file refers to a path outside the repository.

A fresh clone must build and test on its own: no file may reach into a sibling checkout (the
steering repository's shared folder), an absolute path of the machine it was written on, or a path
that climbs above the repository root. Checked in every tracked text file except lockfiles:

  * the patterns below, anywhere;
  * relative paths that the build resolves, each resolved and required to stay inside the
    repository: `path = "..."` in Cargo.toml files, include_str!/include_bytes!/#[path] in Rust
    files, and concat!(env!("CARGO_MANIFEST_DIR"), "/<path>") relative to the crate's directory.

The patterns are written so that this file does not match them itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PATTERNS = [
    (re.compile(r"\.\./shared\b"), "refers to the shared folder beside the repository"),
    (re.compile(r"(?<![\w.])/wor[k]/"), "an absolute path of a development machine"),
    (re.compile(r"CARGO_MANIFEST_DIR\"\)\s*,\s*\"/\.\."), "a path above the crate's directory"),
]
LOCKFILES = re.compile(r"(^|/)([^/]+\.lock|package-lock\.json|npm-shrinkwrap\.json)$")

RUST_RELATIVE = re.compile(r"(?:include_str|include_bytes)!\(\s*\"([^\"]+)\"|#\[path\s*=\s*\"([^\"]+)\"\]")
MANIFEST_RELATIVE = re.compile(r"CARGO_MANIFEST_DIR\"\)\s*,\s*\"([^\"]+)\"")
CARGO_PATH = re.compile(r"^\s*(?:path\s*=\s*\"([^\"]+)\"|.*\{[^}]*\bpath\s*=\s*\"([^\"]+)\")", re.M)


def crate_dir(file: Path, root: Path) -> Path:
    for parent in file.parents:
        if (parent / "Cargo.toml").is_file():
            return parent
        if parent == root:
            break
    return root


def main() -> int:
    root = Path(subprocess.check_output(["git", "rev-parse", "--show-toplevel"], text=True).strip())
    files = subprocess.check_output(["git", "ls-files", "-z"], cwd=root, text=True).split("\0")
    problems: list[str] = []

    def inside(base: Path, relative: str, where: str, line: int) -> None:
        if relative.startswith("/"):
            problems.append(f"{where}:{line}: absolute path {relative!r}")
            return
        resolved = Path(os.path.normpath(base / relative))
        if resolved != root and root not in resolved.parents:
            problems.append(f"{where}:{line}: {relative!r} resolves outside the repository")

    checked = 0
    for name in files:
        if not name or LOCKFILES.search(name):
            continue
        path = root / name
        if not path.is_file() or path.is_symlink():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary
        checked += 1
        line_of = lambda offset: text.count("\n", 0, offset) + 1  # noqa: E731
        for regex, why in PATTERNS:
            for m in regex.finditer(text):
                problems.append(f"{name}:{line_of(m.start())}: {m.group(0)!r}: {why}")
        if name.endswith(".rs"):
            for m in RUST_RELATIVE.finditer(text):
                inside(path.parent, m.group(1) or m.group(2), name, line_of(m.start()))
            for m in MANIFEST_RELATIVE.finditer(text):
                inside(crate_dir(path, root), m.group(1).lstrip("/"), name, line_of(m.start()))
        if path.name == "Cargo.toml":
            for m in CARGO_PATH.finditer(text):
                inside(path.parent, m.group(1) or m.group(2), name, line_of(m.start()))

    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"self-contained: FAILED: {len(problems)} references outside the repository", file=sys.stderr)
        return 1
    print(f"self-contained: ok ({checked} tracked text files, lockfiles excluded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

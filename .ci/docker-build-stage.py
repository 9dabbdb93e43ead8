#!/usr/bin/env python3
"""Runs a Dockerfile's build stage without a Docker engine, on exactly the files its COPY lines bring in.

The machines this project is built on have the Docker client but no engine, so `docker build` cannot
run. This script interprets the Dockerfile instead, as far as a build stage needs:

  * FROM: every base image must be pinned to a version (a tag starting with MAJOR.MINOR, or a digest);
    `latest`, a missing tag or a floating tag such as `rust:1-slim` fails. The base image itself is
    not pulled: this machine's toolchain (Rust on Debian bookworm) stands in for it.
  * WORKDIR, ENV, ARG (defaults): applied. Container paths live under a temporary root directory.
  * COPY from the build context: performed file by file, honouring .dockerignore (Docker's rules:
    patterns relative to the context root, `*`, `?`, `[...]`, `**`, `!` exceptions, last match wins,
    a pattern that matches a directory excludes everything under it). A source that does not exist,
    or is entirely excluded, fails as it does in `docker build`.
  * RUN: executed with /bin/sh -c in the stage's WORKDIR, with the stage's ENV plus the machine's
    PATH/HOME (for the toolchain and its cargo cache), and two things injected so that the check
    costs a recompile of this crate (about a minute or two on 2 cores) instead of a second full build:
      - CARGO_NET_OFFLINE=true: dependencies come from the local cargo cache, never the network;
      - CARGO_TARGET_DIR=<--target-dir>: the repository's own target/ directory, whose dependencies
        the test run has already compiled;
    and `--release` is removed from the command (dev profile): the test run compiled the
    dependencies in the dev profile, so only this crate, and the few dependencies whose features
    differ without dev-dependencies, are compiled again. What is being checked is that the build
    stage's files and commands make a buildable, `--locked` crate, not the optimiser.
    A RUN line that names an absolute path is refused: it would act on this machine, not an image.
    Cargo's copies of the binaries in <--target-dir>/debug/ (which the test run's CARGO_BIN_EXE_*
    point to) are put back as they were afterwards; the build stage's go to
    <--target-dir>/docker-build-stage/built/.
  * COPY --from=<stage> in the final stage: each source must exist. Paths under `target/release/`
    map to the build stage's binaries; files the stage did not create are taken to come from its
    base image and are looked up on this machine (Debian bookworm, like the rust:*-bookworm images).
  * The final stage's USER must be a numeric, non-root uid (so that Kubernetes' runAsNonRoot can
    verify it).

With --run ARGS, the final stage's ENTRYPOINT is then run with ARGS instead of CMD, with the final
stage's ENV (paths that the stage copied in mapped to their copies) and the variables given with
--env: e.g. `--run check-config` checks the configuration the image ships as the image would load it.

Unsupported instructions (ADD, heredocs, SHELL, ONBUILD, RUN --mount, ...) in a stage that is
interpreted fail the check rather than being silently skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


class Failure(Exception):
    pass


# ---------------------------------------------------------------------------------------------------
# Dockerfile parsing


@dataclass
class Instruction:
    line: int
    keyword: str
    args: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.keyword} {self.args}"


@dataclass
class Stage:
    index: int
    image: str
    name: str | None
    from_line: int
    instructions: list[Instruction] = field(default_factory=list)
    workdir: str = "/"
    user: str | None = None


def parse_dockerfile(text: str) -> tuple[list[Instruction], list[Stage]]:
    lines = text.splitlines()
    # Parser directives (# syntax=, # escape=) are comments here; only the default escape is supported.
    for raw in lines:
        m = re.match(r"^#\s*([a-zA-Z]+)\s*=\s*(.*)$", raw)
        if not m:
            break
        if m.group(1).lower() == "escape" and m.group(2).strip() != "\\":
            raise Failure("only the default escape character is supported")
    instructions: list[Instruction] = []
    buffer = ""
    start = 0
    for number, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            continue  # comments, also inside continued instructions
        if not buffer and not stripped:
            continue
        if not buffer:
            start = number
        if raw.rstrip().endswith("\\"):
            buffer += raw.rstrip()[:-1] + " "
            continue
        buffer += raw
        keyword, _, args = buffer.strip().partition(" ")
        instructions.append(Instruction(start, keyword.upper(), args.strip()))
        buffer = ""
    if buffer:
        raise Failure("the Dockerfile ends inside a continued line")

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = ins.args.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = None
            if len(words) == 3 and words[1].upper() == "AS":
                name = words[2].lower()
            elif len(words) != 1:
                raise Failure(f"{ins}: cannot parse")
            stages.append(Stage(len(stages), expand(words[0], global_args), name, ins.line))
        elif not stages:
            if ins.keyword != "ARG":
                raise Failure(f"{ins}: only ARG may come before the first FROM")
            key, _, value = ins.args.partition("=")
            global_args[key.strip()] = value.strip().strip('"')
        else:
            stages[-1].instructions.append(ins)
    if not stages:
        raise Failure("the Dockerfile has no FROM")
    return instructions, stages


def expand(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        default = m.group(2)
        if name in env and env[name] != "":
            return env[name]
        return default if default is not None else ""

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)", sub, value)


def parse_env(args: str) -> list[tuple[str, str]]:
    words = shlex.split(args)
    if len(words) >= 2 and "=" not in words[0]:
        return [(words[0], " ".join(words[1:]))]  # legacy `ENV KEY value`
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise Failure(f"cannot parse ENV {args}")
        pairs.append((key, value))
    return pairs


def split_flags(args: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        key, _, value = word[2:].partition("=")
        flags[key] = value
        rest = rest.lstrip()
    return flags, rest


def copy_operands(args: str) -> tuple[dict[str, str], list[str], str]:
    flags, rest = split_flags(args)
    if "<<" in rest:
        raise Failure(f"COPY {args}: heredocs are not supported")
    if rest.startswith("["):
        words = json.loads(rest)
    else:
        words = shlex.split(rest)
    if len(words) < 2:
        raise Failure(f"COPY {args}: needs a source and a destination")
    return flags, words[:-1], words[-1]


PINNED_TAG = re.compile(r"^\d+\.\d+")


def check_pinned(stage: Stage, stage_names: set[str]) -> None:
    image = stage.image
    if image.lower() in stage_names or image == "scratch":
        return
    if "@sha256:" in image:
        return
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:  # no tag at all (a registry port is not a tag)
        raise Failure(f"line {stage.from_line}: FROM {image}: base image has no tag; pin a version")
    if tag == "latest" or not PINNED_TAG.match(tag):
        raise Failure(
            f"line {stage.from_line}: FROM {image}: tag `{tag}` is not a pinned version "
            "(use MAJOR.MINOR[.PATCH]..., e.g. rust:1.95.0-slim-bookworm, or a digest)"
        )


# ---------------------------------------------------------------------------------------------------
# .dockerignore


def ignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                raise Failure(f".dockerignore: unterminated [ in {pattern!r}")
            body = pattern[i + 1 : end]
            if body.startswith("^") or body.startswith("!"):
                body = "^" + body[1:]
            out += "[" + body.replace("\\", "\\\\") + "]"
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile("^" + out + "$")


def load_dockerignore(context: Path) -> list[tuple[bool, re.Pattern[str], str]]:
    path = context / ".dockerignore"
    rules = []
    if not path.is_file():
        return rules
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:].strip()
        line = os.path.normpath(line).lstrip("/")
        if line in ("", "."):
            continue
        rules.append((negate, ignore_regex(line), raw.strip()))
    return rules


def is_ignored(rel: str, rules: list[tuple[bool, re.Pattern[str], str]]) -> bool:
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negate, regex, _ in rules:
        if any(regex.match(p) for p in prefixes):
            ignored = not negate
    return ignored


def context_files(context: Path, rules) -> set[str]:
    """Every file (and symlink) of the context that survives .dockerignore, relative to the context."""
    files: set[str] = set()
    for root, dirs, names in os.walk(context):
        rel_root = os.path.relpath(root, context)
        rel_root = "" if rel_root == "." else rel_root + "/"
        # Prune directories that are ignored and that no `!` rule could re-include.
        if not any(negate for negate, _, _ in rules):
            dirs[:] = [d for d in dirs if not is_ignored(rel_root + d, rules)]
        for name in names:
            rel = rel_root + name
            if not is_ignored(rel, rules):
                files.add(rel)
    return files


# ---------------------------------------------------------------------------------------------------
# The interpreter


class Runner:
    def __init__(self, args: argparse.Namespace, stages: list[Stage]) -> None:
        self.context = Path(args.context).resolve()
        self.target_dir = Path(args.target_dir).resolve()
        self.work = Path(args.work_dir)
        self.stages = stages
        self.names = {s.name: s for s in stages if s.name}
        self.rules = load_dockerignore(self.context)
        self.files = context_files(self.context, self.rules)
        self.roots: dict[int, Path] = {}
        self.created: dict[int, set[str]] = {}
        self.env: dict[int, dict[str, str]] = {}
        self.verbose = args.verbose

    def root(self, stage: Stage) -> Path:
        return self.roots[stage.index]

    def host(self, stage: Stage, container_path: str) -> Path:
        return self.root(stage) / container_path.lstrip("/")

    def run_stage(self, stage: Stage, execute: bool) -> None:
        root = self.work / f"stage{stage.index}"
        root.mkdir(parents=True)
        self.roots[stage.index] = root
        self.created[stage.index] = set()
        env: dict[str, str] = {}
        self.env[stage.index] = env
        workdir = "/"
        user = None
        for ins in stage.instructions:
            kw = ins.keyword
            if kw == "WORKDIR":
                new = expand(ins.args, env)
                workdir = new if new.startswith("/") else os.path.join(workdir, new)
                self.host(stage, workdir).mkdir(parents=True, exist_ok=True)
            elif kw == "ENV":
                for key, value in parse_env(ins.args):
                    env[key] = expand(value, env)
            elif kw == "ARG":
                key, sep, value = ins.args.partition("=")
                if sep:
                    env.setdefault(key.strip(), value.strip().strip('"'))
            elif kw == "COPY":
                self.copy(stage, ins, workdir, env)
            elif kw == "RUN":
                if execute:
                    self.run(stage, ins, workdir, env)
                else:
                    print(f"   (not run here, it sets up the base image) {ins}", flush=True)
            elif kw == "USER":
                user = ins.args.strip()
            elif kw in ("EXPOSE", "LABEL", "HEALTHCHECK", "ENTRYPOINT", "CMD", "STOPSIGNAL", "VOLUME"):
                pass
            else:
                raise Failure(f"{ins}: not supported by this interpreter")
        stage.workdir = workdir
        stage.user = user

    def copy(self, stage: Stage, ins: Instruction, workdir: str, env: dict[str, str]) -> None:
        flags, sources, dest = copy_operands(ins.args)
        dest = expand(dest, env)
        unknown = set(flags) - {"from", "chown", "chmod", "link"}
        if unknown:
            raise Failure(f"{ins}: unsupported flags {sorted(unknown)}")
        dest_abs = dest if dest.startswith("/") else os.path.join(workdir, dest)
        to_dir = dest.endswith("/") or len(sources) > 1
        if "from" in flags:
            self.copy_from_stage(stage, ins, flags["from"], sources, dest_abs, to_dir)
            return
        copied = 0
        for source in sources:
            source = os.path.normpath(expand(source, env)).lstrip("/")
            if source in ("", "."):
                matches = sorted(self.files)
                base = ""
            elif any(ch in source for ch in "*?["):
                # Each match (a file, or a directory whose contents are copied) goes into dest.
                regex = ignore_regex(source)
                prefixes = {"/".join(f.split("/")[: i + 1]) for f in self.files for i in range(f.count("/") + 1)}
                tops = sorted(p for p in prefixes if regex.match(p))
                if not tops:
                    raise Failure(f"{ins}: no source files were specified (nothing matches {source!r})")
                for top in tops:
                    copied += self.copy_one(stage, ins, top, dest_abs, True)
                continue
            else:
                matches = [f for f in self.files if f == source or f.startswith(source + "/")]
                base = source
            if not matches:
                why = "excluded by .dockerignore" if (self.context / source).exists() else "not found"
                raise Failure(f"{ins}: {source}: {why} in the build context")
            copied += self.copy_one(stage, ins, base, dest_abs, to_dir, matches)
        print(f"   {ins}  ({copied} files)", flush=True)

    def copy_one(self, stage, ins, source, dest_abs, to_dir, matches=None) -> int:
        if matches is None:
            matches = [f for f in self.files if f == source or f.startswith(source + "/")]
        count = 0
        for rel in sorted(matches):
            if rel == source:  # a file
                target = os.path.join(dest_abs, os.path.basename(rel)) if to_dir else dest_abs
            else:  # inside a directory: its contents go into the destination
                target = os.path.join(dest_abs, rel[len(source) + 1 :] if source else rel)
            host_target = self.host(stage, target)
            host_target.parent.mkdir(parents=True, exist_ok=True)
            src = self.context / rel
            if src.is_symlink():
                os.symlink(os.readlink(src), host_target)
            else:
                shutil.copy2(src, host_target)
            self.created[stage.index].add(target)
            count += 1
        return count

    def copy_from_stage(self, stage, ins, name, sources, dest_abs, to_dir) -> None:
        source_stage = self.names.get(name.lower())
        if source_stage is None and name.isdigit():
            source_stage = self.stages[int(name)]
        if source_stage is None or source_stage.index not in self.roots:
            raise Failure(f"{ins}: stage {name!r} was not run")
        for source in sources:
            host_source, origin = self.stage_path(source_stage, source)
            if not host_source.exists():
                raise Failure(f"{ins}: {source} does not exist in stage {name!r} ({origin}: {host_source})")
            target = os.path.join(dest_abs, os.path.basename(source)) if to_dir else dest_abs
            host_target = self.host(stage, target)
            host_target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(host_source.resolve(), host_target)  # may be large: link, do not copy
            self.created[stage.index].add(target)
            print(f"   {ins}  ({origin}: {host_source})", flush=True)

    def stage_path(self, stage: Stage, container_path: str) -> tuple[Path, str]:
        m = re.match(r"^.*/target/(release|debug)/(.*)$", container_path)
        if m:
            built = self.target_dir / "docker-build-stage" / "built" / m.group(2)
            if built.exists():
                return built, "built, dev profile"
            return self.target_dir / "debug" / m.group(2), "built, dev profile"
        in_stage = self.host(stage, container_path)
        if in_stage.exists() or container_path in self.created[stage.index]:
            return in_stage, "created by the stage"
        return Path(container_path), "from the base image, looked up on this machine"

    def run(self, stage: Stage, ins: Instruction, workdir: str, env: dict[str, str]) -> None:
        flags, command = split_flags(ins.args)
        if flags:
            raise Failure(f"{ins}: RUN flags {sorted(flags)} are not supported")
        if command.startswith("["):
            command = " ".join(shlex.quote(w) for w in json.loads(command))
        if "<<" in command:
            raise Failure(f"{ins}: heredocs are not supported")
        # An absolute path would name a file of this machine, not of the image.
        absolute = re.search(r"(?:^|[\s=;&|(<>'\"])(/[A-Za-z0-9_.][^\s;&|)'\"]*)", command)
        if absolute and absolute.group(1) != "/dev/null":
            raise Failure(f"{ins}: absolute path {absolute.group(1)} (use paths relative to WORKDIR)")
        rewritten = re.sub(r"(?<!\S)--release(?!\S)", "", command)
        rewritten = re.sub(r"[ \t]{2,}", " ", rewritten)
        run_env = dict(os.environ)
        run_env.update(env)
        run_env["CARGO_TARGET_DIR"] = str(self.target_dir)
        run_env["CARGO_NET_OFFLINE"] = "true"
        print(f"   {ins}", flush=True)
        if rewritten != command:
            print("     (run with --release removed: dev profile, reusing the test build)", flush=True)
        started = time.monotonic()
        result = subprocess.run(
            ["/bin/sh", "-c", rewritten],
            cwd=self.host(stage, workdir),
            env=run_env,
            stdout=None if self.verbose else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if result.returncode != 0:
            if result.stdout:
                sys.stdout.write(result.stdout[-20000:])
            raise Failure(f"{ins}: exited with {result.returncode}")
        print(f"     ok in {time.monotonic() - started:.1f}s", flush=True)


class Uplifted:
    """Keeps the test build's binaries in <target>/debug as they were.

    Cargo copies (hard-links) each binary it builds to <target>/debug/<name>, the path the test run's
    CARGO_BIN_EXE_* point to. The build stage's binaries are moved to <target>/docker-build-stage/built
    instead, and what was there before is put back (unless another build replaced it meanwhile).
    """

    def __init__(self, debug: Path, stash: Path) -> None:
        self.debug = debug
        self.before = stash / "before"
        self.built = stash / "built"
        shutil.rmtree(stash, ignore_errors=True)
        self.before.mkdir(parents=True)
        self.built.mkdir(parents=True)
        self.inodes: dict[str, int] = {}
        if debug.is_dir():
            for entry in os.scandir(debug):
                if entry.is_file(follow_symlinks=False):
                    self.inodes[entry.name] = entry.inode()
                    os.link(entry.path, self.before / entry.name)

    def restore(self) -> None:
        if not self.debug.is_dir():
            return
        for entry in os.scandir(self.debug):
            if not entry.is_file(follow_symlinks=False) or self.inodes.get(entry.name) == entry.inode():
                continue
            os.link(entry.path, self.built / entry.name)
            current = entry.inode()
            try:
                if os.stat(entry.path).st_ino != current:
                    continue  # replaced by another build meanwhile: leave it
                if entry.name in self.inodes:
                    os.replace(self.before / entry.name, entry.path)
                else:
                    os.unlink(entry.path)
            except FileNotFoundError:
                pass
        shutil.rmtree(self.before, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", default="Dockerfile", help="the Dockerfile (default: ./Dockerfile)")
    parser.add_argument("--context", default=".", help="the build context (default: .)")
    parser.add_argument("--target-dir", default="target", help="CARGO_TARGET_DIR for RUN lines (default: target)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary root directories")
    parser.add_argument("--verbose", action="store_true", help="show the output of RUN lines")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for --run (as `docker run -e`)")
    parser.add_argument("--run", nargs=argparse.REMAINDER,
                        help="then run the final stage's ENTRYPOINT with these arguments")
    args = parser.parse_args()

    started = time.monotonic()
    # A fixed directory per checkout, outside it (Cargo must not take a workspace above it for this
    # crate's): the crate's compiled artifacts in the shared target directory are keyed by its path,
    # so a fixed path reuses them from run to run instead of piling up a new copy each time.
    checkout = str(Path(args.context).resolve())
    work = Path(tempfile.gettempdir()) / f"docker-build-stage-{hashlib.sha256(checkout.encode()).hexdigest()[:12]}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    args.work_dir = str(work)
    try:
        _, stages = parse_dockerfile(Path(args.file).read_text())
        names = {s.name for s in stages if s.name}
        for stage in stages:
            check_pinned(stage, names)
        final = stages[-1]

        # The stages the final stage copies from are built; the final stage itself only copies.
        needed: list[Stage] = []
        for ins in final.instructions:
            if ins.keyword == "COPY":
                flags, _, _ = copy_operands(ins.args)
                if "from" in flags:
                    ref = flags["from"].lower()
                    src = next((s for s in stages if s.name == ref or str(s.index) == ref), None)
                    if src is None:
                        raise Failure(f"{ins}: unknown stage {flags['from']!r}")
                    if src not in needed:
                        needed.append(src)
        runner = Runner(args, stages)
        print(f"build context: {len(runner.files)} files after .dockerignore", flush=True)
        uplifted = Uplifted(runner.target_dir / "debug", runner.target_dir / "docker-build-stage")
        try:
            for stage in needed:
                print(f"== stage {stage.name or stage.index}: FROM {stage.image} (run here, on this machine's toolchain)", flush=True)
                runner.run_stage(stage, execute=True)
        finally:
            uplifted.restore()
        print(f"== final stage: FROM {final.image} (its COPY lines are checked, its RUN lines are not run)", flush=True)
        runner.run_stage(final, execute=False)

        user = final.user
        uid = (user or "").split(":")[0]
        if not uid.isdigit() or int(uid) == 0:
            raise Failure(f"the final stage must end with USER <numeric uid other than 0>; it has {user!r}")
        print(f"final stage runs as uid {uid}", flush=True)

        if args.run is not None:
            run_final(runner, final, args)
        print(f"docker build stage: ok ({time.monotonic() - started:.0f}s)")
        return 0
    except Failure as e:
        print(f"docker build stage: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def run_final(runner: Runner, final: Stage, args: argparse.Namespace) -> None:
    entrypoint = None
    for ins in final.instructions:
        if ins.keyword == "ENTRYPOINT":
            entrypoint = json.loads(ins.args) if ins.args.startswith("[") else ["/bin/sh", "-c", ins.args]
    if not entrypoint:
        raise Failure("the final stage has no ENTRYPOINT")

    def mapped(value: str) -> str:
        if value.startswith("/") and value in runner.created[final.index]:
            return str(runner.host(final, value))
        return value

    program = mapped(entrypoint[0])
    if program == entrypoint[0]:
        raise Failure(f"ENTRYPOINT {entrypoint[0]} was not copied into the final stage")
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    env.update({k: mapped(v) for k, v in runner.env[final.index].items()})
    for pair in args.env:
        key, _, value = pair.partition("=")
        env[key] = value
    command = [program, *entrypoint[1:], *args.run]
    shown = " ".join([entrypoint[0], *entrypoint[1:], *args.run])
    print(f"== final stage: {shown}", flush=True)
    result = subprocess.run(command, env=env, cwd=runner.root(final), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sys.stdout.write(result.stdout)
    if result.returncode != 0:
        raise Failure(f"{shown}: exited with {result.returncode}")


if __name__ == "__main__":
    sys.exit(main())

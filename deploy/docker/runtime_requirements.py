"""Prints the part of requirements.lock a running AVCaption needs (no test or lint tools).

`uv export` writes every dependency group into requirements.lock, each package followed by the
packages that pull it in (`# via …`). A package is needed at run time when one of those is a
workspace member or another needed package; packages with no `# via` are direct members of a
dependency group and are left out unless named with `--with` (the image adds `dumb-init`).
The blocks are printed unchanged, hashes included, so `pip install --require-hashes` checks
every file against the same lock the developers use. Standard library only: it runs in the
image's build stage before anything is installed.

    python runtime_requirements.py requirements.lock --with dumb-init > runtime.lock
    python runtime_requirements.py requirements.lock --only hatchling --only editables
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

WORKSPACE = frozenset(
    {"avcaption", "avc-common", "avc-gateway", "avc-upload", "avc-media", "avc-stats",
     "avc-webhooks"}
)  # fmt: skip
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Block:
    name: str
    lines: list[str] = field(default_factory=list)
    via: set[str] = field(default_factory=set)


def parse(text: str) -> dict[str, Block]:
    """Returns the lock's package blocks by normalized name."""
    blocks: dict[str, Block] = {}
    current: Block | None = None
    in_via = False
    for line in text.splitlines():
        match = _NAME.match(line)
        if match:
            current = Block(normalize(match.group(1)))
            blocks[current.name] = current
            in_via = False
        if current is None:
            continue
        current.lines.append(line)
        stripped = line.strip()
        if stripped == "# via":
            in_via = True
        elif stripped.startswith("# via "):
            current.via.add(normalize(stripped.removeprefix("# via ").split()[0]))
            in_via = False
        elif in_via and stripped.startswith("#   "):
            current.via.add(normalize(stripped.removeprefix("#   ").split()[0]))
    return blocks


def closure(blocks: dict[str, Block], roots: set[str]) -> list[str]:
    """Returns the packages reachable from `roots` (names, in lock order)."""
    needed = set(roots)
    changed = True
    while changed:
        changed = False
        for block in blocks.values():
            if block.name not in needed and block.via & needed:
                needed.add(block.name)
                changed = True
    return [name for name in blocks if name in needed]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path)
    parser.add_argument("--with", dest="extra", action="append", default=[],
                        help="also this group package (and what it needs)")  # fmt: skip
    parser.add_argument("--only", action="append", default=[],
                        help="only these packages and what they need (no workspace)")  # fmt: skip
    args = parser.parse_args(argv)
    blocks = parse(args.lock.read_text(encoding="utf-8"))
    roots = {normalize(n) for n in args.only} or WORKSPACE | {normalize(n) for n in args.extra}
    missing = sorted(n for n in roots - WORKSPACE if n not in blocks)
    if missing:
        print(f"not in {args.lock}: {', '.join(missing)}", file=sys.stderr)
        return 1
    for name in closure(blocks, roots):
        if name in blocks:
            sys.stdout.write("\n".join(blocks[name].lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

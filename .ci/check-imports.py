#!/usr/bin/env python3
"""Fails when a module imports upward (README "Code map and request flow").

Each top-level module of src/ has a floor; a file may import `crate::X` (or
`par_sidecar::X`) only from a lower floor or from its own module. Modules on
one floor do not import each other. Run: python3 .ci/check-imports.py
"""
import pathlib
import re
import sys

FLOORS = {
    # ground vocabulary
    "protocol": 1, "bounded": 1, "metrics": 1,
    "errors": 2, "handoff": 2, "config": 2,
    # planes
    "as_client": 3, "conn": 3,
    "front": 4,
    "sidecar": 5,  # the composition root
    "egress": 6, "ops": 6, "proxy": 6,
    # wiring
    "server": 7,
    "main": 8, "lib": 8,
}

USE = re.compile(r"\b(?:crate|par_sidecar)::([a-z_]+)")


def module_of(path: pathlib.Path, src: pathlib.Path) -> str:
    return path.relative_to(src).parts[0].removesuffix(".rs")


def main() -> int:
    src = pathlib.Path(__file__).resolve().parent.parent / "src"
    bad = []
    for f in sorted(src.rglob("*.rs")):
        me = module_of(f, src)
        if me not in FLOORS:
            bad.append(f"{f.relative_to(src.parent)}: module `{me}` has no floor in .ci/check-imports.py")
            continue
        for n, line in enumerate(f.read_text().splitlines(), 1):
            code = line.split("//", 1)[0]
            for target in USE.findall(code):
                if target == me or target not in FLOORS:
                    continue
                if FLOORS[target] >= FLOORS[me]:
                    bad.append(
                        f"{f.relative_to(src.parent)}:{n}: `{me}` (floor {FLOORS[me]}) imports "
                        f"`{target}` (floor {FLOORS[target]})"
                    )
    for b in bad:
        print(b)
    if bad:
        print(f"{len(bad)} import(s) run upward or sideways; move the shared item down a floor")
        return 1
    print(f"imports run downhill ({len(FLOORS)} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Refresh the vendored classification data from the package registries.

    python3 crates/classify/data/update.py [--uap-builtins VERSION] [--isbot VERSION]

Without arguments it takes the newest releases. It needs `pip` and `npm` (the ordinary
clients; nothing else is downloaded) and writes, next to this script:

- `uap-core.json`: uap-core's `regexes.yaml` as JSON, same keys and order. It comes from the
  PyPI package `ua-parser-builtins` (released monthly by the ua-parser project from uap-core's
  default branch; its `REVISION` file names the uap-core commit). The wheel holds the rules as
  Python source (`ua_parser_builtins/matchers.py`); this script reads that file with `ast`
  (literals only, nothing is imported or run) and maps the positional arguments back to
  regexes.yaml's field names.
- `isbot.json`: the pattern list of the npm package `isbot` (omrilotan/isbot), as the array
  its `index.js` bundles (`src/patterns.json` upstream), plus `isbot-LICENSE` (Unlicense).
- `SOURCES.json`: versions, the uap-core commit, and the sha256 of each downloaded artifact.

Review the diff (`git diff --stat crates/classify/data`), run `cargo test -p gitrev-classify`,
and update the versions quoted in crates/classify/README.md.
"""

import argparse
import ast
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# matchers.py's constructors take positional arguments in this order (ua_parser.matchers);
# the names are regexes.yaml's.
FIELDS = {
    "UserAgentMatcher": ["regex", "family_replacement", "v1_replacement", "v2_replacement",
                         "v3_replacement", "v4_replacement"],
    "OSMatcher": ["regex", "os_replacement", "os_v1_replacement", "os_v2_replacement",
                  "os_v3_replacement", "os_v4_replacement"],
    "DeviceMatcher": ["regex", "regex_flag", "device_replacement", "brand_replacement",
                      "model_replacement"],
}
SECTIONS = {"UserAgentMatcher": "user_agent_parsers", "OSMatcher": "os_parsers",
            "DeviceMatcher": "device_parsers"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def uap_from_wheel(wheel: Path) -> tuple[dict, str]:
    with zipfile.ZipFile(wheel) as z:
        source = z.read("ua_parser_builtins/matchers.py").decode("utf-8")
        revision = z.read("REVISION").decode("ascii").strip()
    out = {"user_agent_parsers": [], "os_parsers": [], "device_parsers": []}
    seen = 0
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in FIELDS):
            continue
        if node.keywords:
            sys.exit(f"update.py: unexpected keyword arguments at line {node.lineno}")
        names = FIELDS[node.func.id]
        args = [ast.literal_eval(a) for a in node.args]
        if not 1 <= len(args) <= len(names):
            sys.exit(f"update.py: {len(args)} arguments at line {node.lineno}")
        entry = {k: v for k, v in zip(names, args) if v is not None}
        out[SECTIONS[node.func.id]].append((node.lineno, entry))
        seen += 1
    for key in out:  # ast.walk is breadth-first: restore the file's order
        out[key] = [e for _, e in sorted(out[key], key=lambda t: t[0])]
    if seen < 1000 or not all(out.values()):
        sys.exit(f"update.py: only {seen} rules found; has matchers.py changed shape?")
    return out, revision


def isbot_from_tarball(tgz: Path) -> tuple[list, bytes, str]:
    with tarfile.open(tgz) as t:
        index = t.extractfile("package/index.js").read().decode("utf-8")
        licence = t.extractfile("package/LICENSE").read()
        version = json.loads(t.extractfile("package/package.json").read())["version"]
    start = index.index("var patterns_default = [")
    end = index.index("\n];", start)
    patterns = json.loads(index[index.index("[", start):end + 2])
    if len(patterns) < 100 or not all(isinstance(p, str) and p for p in patterns):
        sys.exit("update.py: the isbot pattern list looks wrong; has index.js changed shape?")
    return patterns, licence, version


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--uap-builtins", default=None, help="ua-parser-builtins version (default: newest)")
    ap.add_argument("--isbot", default=None, help="isbot version (default: newest)")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = "ua-parser-builtins" + (f"=={opts.uap_builtins}" if opts.uap_builtins else "")
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--only-binary=:all:", "-d", str(tmp), spec], check=True)
        wheel = next(tmp.glob("ua_parser_builtins-*.whl"))
        spec = "isbot" + (f"@{opts.isbot}" if opts.isbot else "")
        subprocess.run(["npm", "pack", "--silent", "--pack-destination", str(tmp), spec],
                       check=True, stdout=subprocess.DEVNULL)
        tgz = next(tmp.glob("isbot-*.tgz"))

        uap, revision = uap_from_wheel(wheel)
        patterns, licence, isbot_version = isbot_from_tarball(tgz)
        uap_version = wheel.name.split("-")[1]
        (HERE / "uap-core.json").write_text(json.dumps(uap, indent=1, ensure_ascii=False) + "\n")
        (HERE / "isbot.json").write_text(json.dumps(patterns, indent=1, ensure_ascii=False) + "\n")
        (HERE / "isbot-LICENSE").write_bytes(licence)
        sources = {
            "uap-core.json": {"registry": "PyPI", "package": "ua-parser-builtins",
                              "version": uap_version, "file": wheel.name,
                              "sha256": sha256(wheel), "uap_core_commit": revision,
                              "rules": {k: len(v) for k, v in uap.items()}},
            "isbot.json": {"registry": "npm", "package": "isbot", "version": isbot_version,
                           "file": tgz.name, "sha256": sha256(tgz), "patterns": len(patterns)},
        }
        (HERE / "SOURCES.json").write_text(json.dumps(sources, indent=2) + "\n")
        print(json.dumps(sources, indent=2))


if __name__ == "__main__":
    main()

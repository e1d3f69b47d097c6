#!/usr/bin/env python3
"""Rebuild tests/agents.json, the check that the vendored data is read as its authors read it.

    python3 crates/classify/data/fixture.py

It takes uap-core's test suites (user agents and the families uap-core's rules must give them)
from the `ua-parser` crate that Cargo.lock names (the crate ships uap-core with its tests;
`cargo fetch` puts it in Cargo's registry cache), downloads (npm) the `isbot` version named in
data/SOURCES.json, samples user agents from uap-core's suites, and records for each the
families uap-core's tests expect and isbot's own verdict, computed by isbot itself under
`node`. Needs cargo, pip (for PyYAML, if missing), npm and node.
The unit test `agents_match_the_upstream_verdicts` reads the file.
"""

import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "tests" / "agents.json"

NODE = r"""
const path = process.argv[1];
const { isbot, list } = require(path + '/package/index.js');
const uas = JSON.parse(require('fs').readFileSync(0, 'utf8'));
// The look-around patterns without their look-arounds: user agents these match exercise the
// classifier's second stage, so the sample keeps them all.
const hints = list.filter(p => /\(\?<?[=!]/.test(p))
  .map(p => new RegExp(p.replace(/\(\?<?[=!](?:[^()]|\([^()]*\))*\)/g, ''), 'i'));
process.stdout.write(JSON.stringify(uas.map(u => [isbot(u), hints.some(h => h.test(u))])));
"""


def main() -> None:
    try:
        import yaml
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "pyyaml"], check=True)
        import yaml
    isbot_version = json.loads((HERE / "SOURCES.json").read_text())["isbot.json"]["version"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = HERE.parents[2]
        lock = (root / "Cargo.lock").read_text()
        uap_version = re.search(r'name = "ua-parser"\nversion = "([^"]+)"', lock).group(1)
        subprocess.run(["cargo", "fetch", "--locked"], cwd=root, check=True)
        home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
        crate = next(home.glob(f"registry/cache/*/ua-parser-{uap_version}.crate"))
        with tarfile.open(crate) as t:
            t.extractall(tmp / "crate", filter="data")
        subprocess.run(["npm", "pack", "--silent", "--pack-destination", str(tmp),
                        f"isbot@{isbot_version}"], check=True, stdout=subprocess.DEVNULL)
        with tarfile.open(next(tmp.glob("isbot-*.tgz"))) as t:
            t.extractall(tmp / "isbot", filter="data")
        tests = tmp / "crate" / f"ua-parser-{uap_version}" / "uap-core" / "tests"
        load = lambda name: yaml.load((tests / name).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["test_cases"]
        # Every n-th case of each suite, and every 5th one whose user agent reaches the
        # look-around stage.
        suites = {"browser": (load("test_ua.yaml"), 4), "os": (load("test_os.yaml"), 3),
                  "device_family": (load("test_device.yaml"), 200)}
        everything = sorted({c["user_agent_string"] for cases, _ in suites.values() for c in cases})
        run = subprocess.run(["node", "-e", NODE, str(tmp / "isbot")], input=json.dumps(everything),
                             capture_output=True, text=True, check=True)
        verdicts = dict(zip(everything, json.loads(run.stdout)))
        rows, hinted = {}, 0
        for key, (cases, step) in suites.items():
            for i, case in enumerate(cases):
                ua = case["user_agent_string"]
                if verdicts[ua][1]:
                    hinted += 1
                if i % step == 0 or (verdicts[ua][1] and hinted % 5 == 0):
                    rows.setdefault(ua, {"ua": ua, "isbot": verdicts[ua][0]})[key] = case["family"]
        lines = ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows.values())
        OUT.write_text(f"[\n{lines}\n]\n")
        print(f"{OUT}: {len(rows)} user agents, {sum(r['isbot'] for r in rows.values())} bots to isbot")


if __name__ == "__main__":
    main()

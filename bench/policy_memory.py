"""What a large catalogue or feed costs the server at start: wall time of ``runtime.build_policy`` and the
memory the compiled policy keeps, per entry.

Generates, in a temporary directory, a synthetic catalogue (N entries spread over ``--vendors`` vendor TOML
files, each entry with an evidence string as the real ones have) and a stored feed file of N names (the feed
store's line format), each with a config naming it. Every measurement runs in a fresh interpreter: VmRSS
after the imports and before ``build_policy``, then after it with the policy still referenced; bytes per
entry is that growth divided by N. ``peak`` is VmHWM minus the same starting point. The catalogue is
measured twice: the first start (no compiled-catalogue cache) and the second (the cache the first wrote,
when this checkout has one).

    python bench/policy_memory.py [--sizes 100000,1000000] [--vendors 1000] [--checkout DIR]

``--checkout DIR`` measures another checkout's blockdns (started with ``python -P`` so this one cannot
shadow it) on the same generated files. Every child is bounded by ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable

PROBE = """
import gc, json, sys, time
from blockdns import config
from blockdns.runtime import build_policy

def status(key):
    text = open('/proc/self/status').read()
    return int(text.split(key + ':')[1].split()[0]) * 1024

settings = config.load(sys.argv[1])
gc.collect()
before = status('VmRSS')
started = time.perf_counter()
policy = build_policy(settings)
seconds = time.perf_counter() - started
gc.collect()
after = status('VmRSS')
print(json.dumps({'seconds': seconds, 'rss': after - before, 'peak': status('VmHWM') - before,
                  'entries': policy.size}))
"""


def write_catalogue(root: Path, entries: int, vendors: int) -> None:
    vendor_dir = root / "vendors"
    vendor_dir.mkdir(parents=True)
    (root / "guard.toml").write_text(
        '[[guard]]\nname = "shared-cdn.test"\nnote = "a CDN every vendor uses"\n'
    )
    per_vendor, extra = divmod(entries, vendors)
    index = 0
    for number in range(vendors):
        count = per_vendor + (1 if number < extra else 0)
        lines = [
            f'name = "Vendor {number}"',
            f'jurisdiction = "{("US", "CN", "FR", "GB")[number % 4]}"',
            f'categories = ["{("chat", "api", "coding", "media")[number % 4]}"]',
            f'homepage = "https://vendor{number}.test"',
            "reviewed = 2026-11-27",
            "",
        ]
        for _ in range(count):
            exact = 'match = "exact"\n' if index % 10 == 0 else ""
            lines.append(
                f'[[domains]]\nname = "ai{index:07d}.vendor{number}.test"\n'
                f'evidence = "https://vendor{number}.test/docs/network-requirements#host-{index}"\n{exact}'
            )
            index += 1
        (vendor_dir / f"vendor-{number:04d}.toml").write_text("\n".join(lines))


def write_feed(root: Path, entries: int) -> None:
    data = root / "data"
    data.mkdir(parents=True)
    with (data / "big.list").open("w") as handle:
        handle.write("# synthetic feed\n")
        for index in range(entries):
            handle.write(f"+ai{index:07d}.vendor{index % 997}.test\n")
    (root / "feeds.toml").write_text(
        '[[feeds]]\nname = "big"\nurl = "https://feed.test/big.txt"\nformat = "domains"\ncategory = "chat"\n'
    )


def write_config(root: Path, catalogue: Path, feeds: Path | None, block: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    empty = root / "no-feeds.toml"
    empty.write_text("")
    path = root / "blockdns.toml"
    path.write_text(
        f'[policy]\nblock = ["{block}"]\n\n[lists]\ncatalog = "{catalogue / "vendors"}"\n'
        f'guard = "{catalogue / "guard.toml"}"\nfeeds = "{feeds or empty}"\ndata_dir = "{root / "data"}"\n'
    )
    (root / "data").mkdir(exist_ok=True)
    return path


def measure(config_path: Path, source: Path, timeout: float) -> dict[str, float]:
    output = subprocess.run(
        [PYTHON, "-P", "-c", PROBE, str(config_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=source,
        env={"PYTHONPATH": str(source), "PATH": "/usr/bin:/bin"},
    )
    if output.returncode:
        raise RuntimeError(output.stderr[-2000:])
    return json.loads(output.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000", help="entry counts, comma-separated")
    parser.add_argument("--vendors", type=int, default=1000, help="vendor files the catalogue is spread over")
    parser.add_argument(
        "--checkout", type=Path, help="measure another checkout's blockdns (its top directory)"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per measurement")
    args = parser.parse_args()
    source = (args.checkout or HERE.parent).resolve()
    if not (source / "blockdns" / "__main__.py").exists():
        print(f"bench: {source} is not a blockdns checkout", file=sys.stderr)
        return 2
    print(f"blockdns from {source}")
    print(f"{'what':<34} {'entries':>9} {'seconds':>8} {'RSS MB':>8} {'peak MB':>8} {'B/entry':>8}")
    for size in (int(text) for text in args.sizes.split(",")):
        work = Path(tempfile.mkdtemp(prefix="blockdns-policy-memory-"))
        try:
            catalogue = work / "catalogue"
            write_catalogue(catalogue, size, args.vendors)
            runs = [("catalogue, first start", write_config(work / "cat", catalogue, None, "all"))]
            runs.append(("catalogue, second start", runs[0][1]))
            empty_catalogue = work / "empty-catalogue"
            write_catalogue(empty_catalogue, 1, 1)
            write_feed(work / "feed", size)
            runs.append(
                (
                    "feed",
                    write_config(work / "feed", empty_catalogue, work / "feed" / "feeds.toml", "feed:big"),
                )
            )
            # A deployed catalogue's files are older than the cache's racy window (catalog_cache.RACY_NS);
            # without this wait every start would hash the files the generator has just written.
            time.sleep(3.5)
            for label, config_path in runs:
                result = measure(config_path, source, args.timeout)
                per_entry = result["rss"] / size
                print(
                    f"{label:<34} {size:>9,} {result['seconds']:>8.2f} {result['rss'] / 2**20:>8.0f} "
                    f"{result['peak'] / 2**20:>8.0f} {per_entry:>8.0f}",
                    flush=True,
                )
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

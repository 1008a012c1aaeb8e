"""Two versions of semsearch served side by side: this checkout and an earlier git revision, each
`semsearch serve` on its own copy of a store, asked in turn by 1 and 16 client threads (hybrid and
dense searches of 12-word Reuters paragraph openings, as bench_serve.py asks), rounds alternating;
medians of the rounds. The revision is checked out with `git worktree` into a temporary folder and
run with this checkout's virtual environment, so both read the same store format.

    .venv/bin/python scripts/bench_versions.py --store r10k --before a25f043 [--rounds 3] [--seconds 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import compare, free_port, print_comparison, reuters_rows, start_server  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="a store of Reuters paragraphs (10k for the README's figures)")
    parser.add_argument("--before", required=True, help="the git revision to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    queries = [" ".join(r["text"].split()[:12]) for r in reuters_rows(60_000, 400)]
    work = Path(tempfile.mkdtemp(prefix="bench-versions-"))
    old = work / "checkout"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(old), args.before], check=True)
    servers = {}
    cwd = os.getcwd()
    try:
        os.chdir(work)  # `python -m semsearch` imports from the current folder first
        for name, source in ((f"before ({args.before})", old), ("this checkout", REPO)):
            store = work / f"store-{len(servers)}"
            shutil.copytree(args.store, store, ignore=shutil.ignore_patterns("write.lock"))
            os.environ["PYTHONPATH"] = str(source)  # the server process inherits it
            port = free_port()
            servers[name] = (port, start_server(store, port))
        os.environ.pop("PYTHONPATH")
        results = compare({name: port for name, (port, _) in servers.items()}, queries, args.rounds, args.seconds)
    finally:
        os.chdir(cwd)
        for _, process in servers.values():
            process.terminate()
            process.wait()
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    print_comparison(results, "version", args.rounds, args.seconds)


if __name__ == "__main__":
    main()

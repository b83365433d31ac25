"""`make bench`: run every benchmark in bench/ in turn and print their tables.

Each script runs on its own defaults (`--quick` with BENCH_QUICK=1 or
`make bench QUICK=1`); one failing script does not hide the others.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["parse.py", "store.py", "ingest.py", "api.py"]


def main() -> int:
    quick = os.environ.get("BENCH_QUICK") == "1" or "--quick" in sys.argv[1:]
    failed = []
    for name in ORDER:
        script = HERE / name
        if not script.exists():
            continue
        print(f"\n=== bench/{name} {'--quick' if quick else ''}".rstrip(), flush=True)
        args = [sys.executable, str(script)] + (["--quick"] if quick else [])
        if subprocess.run(args, cwd=HERE.parent).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

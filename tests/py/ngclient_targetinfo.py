"""python-tuf's ngclient resolving target names to their listed length, hashes and custom data,
without downloading them (a docker-pull-style tag resolves to a digest this way).

Usage: ngclient_targetinfo.py --metadata-dir D --metadata-url U --root ROOT_JSON NAME ...

D is the client's trusted state, seeded with ROOT_JSON on first use. Prints one JSON object on
stdout: NAME -> {"length", "hashes" (hex), "custom"}, or null when the repository does not list
NAME. Any failure (bad signature, expired metadata, ...) goes to stderr with exit code 1.
"""

import argparse
import json
import os
import sys

from tuf.ngclient import Updater


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--metadata-dir", required=True)
    parser.add_argument("--metadata-url", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("names", nargs="+")
    args = parser.parse_args()

    os.makedirs(args.metadata_dir, exist_ok=True)
    bootstrap = None
    if not os.path.exists(os.path.join(args.metadata_dir, "root.json")):
        with open(args.root, "rb") as f:
            bootstrap = f.read()
    updater = Updater(
        metadata_dir=args.metadata_dir,
        metadata_base_url=args.metadata_url,
        bootstrap=bootstrap,
    )
    updater.refresh()
    found = {}
    for name in args.names:
        info = updater.get_targetinfo(name)
        found[name] = None if info is None else {
            "length": info.length,
            "hashes": info.hashes,
            "custom": info.custom,
        }
    json.dump(found, sys.stdout)
    print()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # every failure is a refusal the caller reports
        print(f"ngclient: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)

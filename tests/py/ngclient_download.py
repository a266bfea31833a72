"""python-tuf's ngclient as a TUF 1.0 client of a repository sigil publishes (tests/tests/tuf_repo.rs).

Usage: ngclient_download.py --metadata-dir D --metadata-url U --targets-url T --download-dir O
                            [--root ROOT_JSON] [TARGET ...]

The metadata dir D is the client's trusted state: on first use it is seeded with ROOT_JSON
(the repository's 1.root.json), later runs start from what earlier runs trusted, so root
rotations are followed as a long-lived client would. Each TARGET is looked up through the
delegation tree and downloaded into O. Prints one JSON object on stdout: the versions of the
metadata the client now trusts and, for each target, its path, length and SHA-256. Any
failure (bad signature, hash mismatch, missing target) goes to stderr with exit code 1.
"""

import argparse
import hashlib
import json
import os
import sys

from tuf.api.metadata import Metadata
from tuf.ngclient import Updater


def trusted_versions(metadata_dir):
    versions = {}
    for name in sorted(os.listdir(metadata_dir)):
        if not name.endswith(".json") or os.path.isdir(os.path.join(metadata_dir, name)):
            continue
        md = Metadata.from_file(os.path.join(metadata_dir, name))
        versions[name[: -len(".json")]] = {
            "version": md.signed.version,
            "keyids": sorted(s for s in md.signatures),
        }
    return versions


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--metadata-dir", required=True)
    parser.add_argument("--metadata-url", required=True)
    parser.add_argument("--targets-url", required=True)
    parser.add_argument("--download-dir", required=True)
    parser.add_argument("--root")
    parser.add_argument("targets", nargs="*")
    args = parser.parse_args()

    os.makedirs(args.metadata_dir, exist_ok=True)
    os.makedirs(args.download_dir, exist_ok=True)
    # First use: trust ROOT_JSON; later runs: the root.json ngclient cached (None).
    bootstrap = None
    if not os.path.exists(os.path.join(args.metadata_dir, "root.json")):
        if not args.root:
            sys.exit("no trusted root.json yet: give --root")
        with open(args.root, "rb") as f:
            bootstrap = f.read()

    updater = Updater(
        metadata_dir=args.metadata_dir,
        metadata_base_url=args.metadata_url,
        target_base_url=args.targets_url,
        target_dir=args.download_dir,
        bootstrap=bootstrap,
    )
    updater.refresh()
    downloaded = {}
    for name in args.targets:
        info = updater.get_targetinfo(name)
        if info is None:
            raise LookupError(f"target {name!r} is not in the repository")
        path = updater.download_target(info)
        with open(path, "rb") as f:
            data = f.read()
        downloaded[name] = {
            "path": path,
            "length": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "custom": info.custom,
        }
    json.dump(
        {"trusted": trusted_versions(args.metadata_dir), "targets": downloaded},
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # every failure is a refusal the test checks for
        print(f"ngclient: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)

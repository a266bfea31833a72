"""The python-tuf side of tuf-publish-bench (tests/src/bin/tuf-publish-bench.rs), and its reader.

Usage: tuf1_publish_bench.py publish REPO MANIFEST
       tuf1_publish_bench.py read METADATA_URL TARGETS_URL ROOT_JSON CLIENT_DIR MANIFEST [TARGET ...]

publish: what a repository tool built on python-tuf 7's Metadata API does to publish the
targets of MANIFEST (lines `SHA256 LENGTH NAME`) into a new repository REPO: four ECDSA
P-256 keys made in memory (securesystemslib's CryptoSigner, pyca/cryptography), root,
targets, snapshot and timestamp v1 signed and written (1.root.json, 1.targets.json,
1.snapshot.json, timestamp.json), then every target of the manifest added to targets, which
is signed as v2, snapshot v2 and timestamp v2 following, written as consistent-snapshot
files. Files are written with Metadata.to_file (compact JSON), which fsyncs each one. Prints
one line of JSON: seconds spent in imports, in the init step and in the add-and-publish step.

read: python-tuf's ngclient bootstraps from ROOT_JSON, refreshes against the repository
served at METADATA_URL, looks each TARGET up and downloads it (checking length and hash);
then the targets metadata ngclient now trusts is loaded with the Metadata API and compared
with MANIFEST entry by entry (every name, length and SHA-256, nothing more). Prints one line
of JSON: {"listed": N, "downloaded": [...]}. Any failure: stderr and exit code 1.
"""

import time

STARTED = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

from securesystemslib.signer import CryptoSigner  # noqa: E402
from tuf.api.metadata import (  # noqa: E402
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer  # noqa: E402

IMPORTED = time.perf_counter()
COMPACT = JSONSerializer(compact=True)


def read_manifest(path):
    entries = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            sha256, length, name = line.split(" ", 2)
            entries.append((name, int(length), sha256))
    return entries


def write(metadata_dir, md, name):
    md.to_file(os.path.join(metadata_dir, name), COMPACT)


def publish(repo, manifest):
    entries = read_manifest(manifest)
    metadata_dir = os.path.join(repo, "metadata")
    os.makedirs(metadata_dir, exist_ok=True)

    t0 = time.perf_counter()
    signers = {
        role: CryptoSigner.generate_ecdsa()
        for role in ("root", "targets", "snapshot", "timestamp")
    }
    now = datetime.now(timezone.utc).replace(microsecond=0)
    root = Root(expires=now + timedelta(days=365), consistent_snapshot=True)
    for role, signer in signers.items():
        root.add_key(signer.public_key, role)
    roles = {
        "root": Metadata(root),
        "targets": Metadata(Targets(expires=now + timedelta(days=90))),
        "snapshot": Metadata(Snapshot(expires=now + timedelta(days=7))),
        "timestamp": Metadata(Timestamp(expires=now + timedelta(days=1))),
    }
    for role in ("root", "targets", "snapshot", "timestamp"):
        roles[role].sign(signers[role])
    write(metadata_dir, roles["root"], "1.root.json")
    write(metadata_dir, roles["targets"], "1.targets.json")
    write(metadata_dir, roles["snapshot"], "1.snapshot.json")
    write(metadata_dir, roles["timestamp"], "timestamp.json")
    t1 = time.perf_counter()

    targets = roles["targets"]
    for name, length, sha256 in entries:
        targets.signed.targets[name] = TargetFile(length, {"sha256": sha256}, name)
    targets.signed.version += 1
    targets.signed.expires = now + timedelta(days=90)
    targets.signatures.clear()
    targets.sign(signers["targets"])
    write(metadata_dir, targets, f"{targets.signed.version}.targets.json")

    snapshot = roles["snapshot"]
    snapshot.signed.meta["targets.json"] = MetaFile(targets.signed.version)
    snapshot.signed.version += 1
    snapshot.signatures.clear()
    snapshot.sign(signers["snapshot"])
    write(metadata_dir, snapshot, f"{snapshot.signed.version}.snapshot.json")

    timestamp = roles["timestamp"]
    timestamp.signed.snapshot_meta = MetaFile(snapshot.signed.version)
    timestamp.signed.version += 1
    timestamp.signatures.clear()
    timestamp.sign(signers["timestamp"])
    write(metadata_dir, timestamp, "timestamp.json")
    t2 = time.perf_counter()

    json.dump(
        {
            "import_s": IMPORTED - STARTED,
            "init_s": t1 - t0,
            "publish_s": t2 - t1,
            "targets": len(entries),
        },
        sys.stdout,
    )
    print()


def read(metadata_url, targets_url, root_json, client_dir, manifest, names):
    from tuf.ngclient import Updater

    metadata_dir = os.path.join(client_dir, "metadata")
    download_dir = os.path.join(client_dir, "downloads")
    os.makedirs(metadata_dir, exist_ok=True)
    os.makedirs(download_dir, exist_ok=True)
    with open(root_json, "rb") as f:
        bootstrap = f.read()
    updater = Updater(
        metadata_dir=metadata_dir,
        metadata_base_url=metadata_url,
        target_base_url=targets_url,
        target_dir=download_dir,
        bootstrap=bootstrap,
    )
    updater.refresh()
    downloaded = []
    for name in names:
        info = updater.get_targetinfo(name)
        if info is None:
            raise LookupError(f"target {name!r} is not in the repository")
        updater.download_target(info)
        downloaded.append(name)

    # The targets role ngclient verified and cached: every manifest entry, exactly.
    trusted = Metadata.from_file(os.path.join(metadata_dir, "targets.json")).signed.targets
    expected = {name: (length, sha256) for name, length, sha256 in read_manifest(manifest)}
    listed = {name: (t.length, t.hashes.get("sha256")) for name, t in trusted.items()}
    if listed != expected:
        missing = sorted(set(expected) - set(listed))[:5]
        extra = sorted(set(listed) - set(expected))[:5]
        differ = sorted(n for n in set(listed) & set(expected) if listed[n] != expected[n])[:5]
        raise ValueError(
            f"targets listed differ from the manifest: missing {missing}, extra {extra}, "
            f"different {differ}"
        )
    json.dump({"listed": len(listed), "downloaded": downloaded}, sys.stdout)
    print()


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "publish":
        publish(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 7 and sys.argv[1] == "read":
        read(*sys.argv[2:7], sys.argv[7:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # every failure is reported, none is hidden
        print(f"tuf1_publish_bench: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)

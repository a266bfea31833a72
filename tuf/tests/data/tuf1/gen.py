"""Builds the small TUF 1.0 repository in this directory with python-tuf's Metadata API.

Regenerate (from the repository root):
    python3 -m venv /tmp/tuf1-venv
    /tmp/tuf1-venv/bin/pip install "tuf>=6,<8" "securesystemslib[crypto]" cryptography
    /tmp/tuf1-venv/bin/python tuf/tests/data/tuf1/gen.py tuf/tests/data/tuf1

Keys are fresh on every run, so every file changes; tuf/tests/tuf1.rs reads whatever is here.
"""

import hashlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import CanonicalJSONSerializer, JSONSerializer

out = Path(sys.argv[1])
expires = datetime(2036, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

root_ecdsa = CryptoSigner.generate_ecdsa()
root_rsa = CryptoSigner.generate_rsa(size=2048)
targets_ed25519 = CryptoSigner.generate_ed25519()
snapshot_rsa = CryptoSigner.generate_rsa(size=2048)
timestamp_ecdsa = CryptoSigner.generate_ecdsa()
releases_ed25519 = CryptoSigner.generate_ed25519()
bins_ecdsa = CryptoSigner.generate_ecdsa()

root = Metadata(Root(expires=expires, consistent_snapshot=True))
for signer, role in [
    (root_ecdsa, "root"),
    (root_rsa, "root"),
    (targets_ed25519, "targets"),
    (snapshot_rsa, "snapshot"),
    (timestamp_ecdsa, "timestamp"),
]:
    root.signed.add_key(signer.public_key, role)
root.signed.roles["root"].threshold = 2
root.signed.unrecognized_fields["x-sigil-test"] = {"nested": [1, "two", None, True]}

targets = Metadata(Targets(expires=expires))
hello = TargetFile.from_data("files/hello.txt", b"hello\n", ["sha256", "sha512"])
hello.unrecognized_fields["custom"] = {"app": {"arch": "amd64", "build": 42}}
targets.signed.targets[hello.path] = hello
odd = TargetFile.from_data('files/ünï "quoted" \\ back\tslash.txt', b"odd", ["sha256"])
targets.signed.targets[odd.path] = odd
targets.signed.delegations = Delegations(
    keys={
        releases_ed25519.public_key.keyid: releases_ed25519.public_key,
        bins_ecdsa.public_key.keyid: bins_ecdsa.public_key,
    },
    roles={
        "releases": DelegatedRole(
            "releases", [releases_ed25519.public_key.keyid], 1, True, paths=["releases/*"]
        ),
        "bins": DelegatedRole(
            "bins", [bins_ecdsa.public_key.keyid], 1, False, path_hash_prefixes=["00", "8f", "e3"]
        ),
    },
)

releases = Metadata(Targets(expires=expires))
v1 = TargetFile.from_data("releases/v1.tar", b"v1 contents", ["sha256"])
releases.signed.targets[v1.path] = v1
bins = Metadata(Targets(version=3, expires=expires))

def sign_and_write(md, signers, name):
    for s in signers:
        md.sign(s, append=True)
    md.to_file(str(out / name), JSONSerializer(compact=False))
    return (out / name).read_bytes()

sign_and_write(root, [root_ecdsa, root_rsa], "1.root.json")
targets_bytes = sign_and_write(targets, [targets_ed25519], "1.targets.json")
sign_and_write(releases, [releases_ed25519], "1.releases.json")
sign_and_write(bins, [bins_ecdsa], "3.bins.json")

snapshot = Metadata(Snapshot(expires=expires))
snapshot.signed.meta["targets.json"] = MetaFile(
    version=1,
    length=len(targets_bytes),
    hashes={"sha256": hashlib.sha256(targets_bytes).hexdigest()},
)
snapshot.signed.meta["releases.json"] = MetaFile(version=1)
snapshot.signed.meta["bins.json"] = MetaFile(version=3)
snapshot_bytes = sign_and_write(snapshot, [snapshot_rsa], "1.snapshot.json")

timestamp = Metadata(Timestamp(expires=expires))
timestamp.signed.snapshot_meta = MetaFile(
    version=1,
    length=len(snapshot_bytes),
    hashes={"sha256": hashlib.sha256(snapshot_bytes).hexdigest()},
)
sign_and_write(timestamp, [timestamp_ecdsa], "timestamp.json")

# What python-tuf signs: the SHA-256 of each file's canonical `signed` bytes.
digests = {}
for path in sorted(out.glob("*.json")):
    if path.name == "signed-sha256.json":
        continue
    md = Metadata.from_file(str(path))
    digests[path.name] = hashlib.sha256(CanonicalJSONSerializer().serialize(md.signed)).hexdigest()
(out / "signed-sha256.json").write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")

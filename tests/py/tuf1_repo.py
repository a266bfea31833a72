"""Builds a static TUF 1.0 repository with python-tuf's Metadata API, for sigil's client.

Usage: python tuf1_repo.py OUT_DIR

Writes OUT_DIR/metadata (1.root.json, 2.root.json with a rotated timestamp key signed by the
old and the new root key, N.ROLE.json, timestamp.json) and OUT_DIR/targets (consistent
snapshot names: <sha256>.<name>), with a delegation by paths ("releases", `releases/*`) and
one by path_hash_prefixes ("bins", the prefix of the hex SHA-256 of `bins/tool.bin`, and a
second role "other-bins" whose prefix does not match it, listed first). Prints one line of
JSON: {"targets": {path: hex of content}}.

Keys are in-memory securesystemslib CryptoSigners: ECDSA P-256 for root and the "releases"
delegation, Ed25519 for the rest, so sigil checks both schemes.
"""

import hashlib
import json
import os
import sys
from datetime import datetime, timedelta, timezone

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
from tuf.api.serialization.json import JSONSerializer

def main(out):
    meta_dir = os.path.join(out, "metadata")
    target_dir = os.path.join(out, "targets")
    os.makedirs(meta_dir)
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=7)
    keys = {role: CryptoSigner.generate_ed25519() for role in ["targets", "snapshot", "timestamp"]}
    keys["root"] = CryptoSigner.generate_ecdsa()
    delegated = {role: CryptoSigner.generate_ed25519() for role in ["bins", "other-bins"]}
    delegated["releases"] = CryptoSigner.generate_ecdsa()

    def write(md, name, signers):
        for signer in signers:
            md.sign(signer, append=True)
        with open(os.path.join(meta_dir, name), "wb") as f:
            f.write(md.to_bytes(JSONSerializer()))

    # Root v1, then v2 with a new timestamp key, signed by the root key (old and new root).
    root = Root(expires=expires)
    for role, signer in keys.items():
        root.add_key(signer.public_key, role)
    write(Metadata(root), "1.root.json", [keys["root"]])
    root.revoke_key(keys["timestamp"].public_key.keyid, "timestamp")
    keys["timestamp"] = CryptoSigner.generate_ed25519()
    root.add_key(keys["timestamp"].public_key, "timestamp")
    root.version = 2
    write(Metadata(root), "2.root.json", [keys["root"]])

    contents = {
        "file.txt": b"top-level target\n",
        "releases/app-1.0.tar": b"release archive bytes\n",
        "bins/tool.bin": b"\x00\x01binary tool\xff",
    }
    files = {path: TargetFile.from_data(path, data, ["sha256"]) for path, data in contents.items()}
    for path, data in contents.items():
        directory, _, name = path.rpartition("/")
        digest = hashlib.sha256(data).hexdigest()
        os.makedirs(os.path.join(target_dir, directory), exist_ok=True)
        with open(os.path.join(target_dir, directory, f"{digest}.{name}"), "wb") as f:
            f.write(data)

    prefix = hashlib.sha256(b"bins/tool.bin").hexdigest()[:2]
    other = format((int(prefix[0], 16) + 1) % 16, "x")
    roles = {
        "releases": DelegatedRole("releases", [], 1, False, paths=["releases/*"]),
        "other-bins": DelegatedRole("other-bins", [], 1, False, path_hash_prefixes=[other]),
        "bins": DelegatedRole("bins", [], 1, True, path_hash_prefixes=[prefix]),
    }
    delegations = Delegations(keys={}, roles=roles)
    for name, signer in delegated.items():
        delegations.keys[signer.public_key.keyid] = signer.public_key
        roles[name].keyids.append(signer.public_key.keyid)
    targets = Targets(expires=expires, targets={"file.txt": files["file.txt"]})
    targets.delegations = delegations
    write(Metadata(targets), "1.targets.json", [keys["targets"]])

    listing = [("releases", ["releases/app-1.0.tar"]), ("bins", ["bins/tool.bin"]), ("other-bins", [])]
    for name, paths in listing:
        role = Targets(expires=expires, targets={p: files[p] for p in paths})
        write(Metadata(role), f"1.{name}.json", [delegated[name]])

    snapshot = Snapshot(expires=expires)
    for name in ["releases", "bins", "other-bins"]:
        snapshot.meta[f"{name}.json"] = MetaFile(1)
    write(Metadata(snapshot), "1.snapshot.json", [keys["snapshot"]])
    timestamp = Timestamp(expires=expires)
    write(Metadata(timestamp), "timestamp.json", [keys["timestamp"]])

    print(json.dumps({"targets": {p: d.hex() for p, d in contents.items()}}))


if __name__ == "__main__":
    main(sys.argv[1])

"""Checks metadata sigil wrote with python-tuf's Metadata API: every file parses, root is
signed by its own threshold, and targets, snapshot and timestamp by the keys root names; the
snapshot and timestamp listings match the files' bytes.

    SIGIL_TUF1_EMIT_DIR=/tmp/out cargo test -p sigil-tuf --test tuf1 sigil_signs
    /tmp/tuf1-venv/bin/python tuf/tests/data/tuf1/verify.py /tmp/out
"""

import sys
from pathlib import Path

from securesystemslib.signer._utils import compute_default_keyid
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

d = Path(sys.argv[1])
root = Metadata[Root].from_file(str(d / "1.root.json"))
root.verify_delegate("root", root)
for keyid, key in root.signed.keys.items():
    assert keyid == compute_default_keyid(key.keytype, key.scheme, key.keyval), keyid
print(f"root: {len(root.signed.keys)} key ids as securesystemslib computes them")
for name, cls in [("1.targets.json", Targets), ("1.snapshot.json", Snapshot), ("timestamp.json", Timestamp)]:
    md = Metadata[cls].from_file(str(d / name))
    root.verify_delegate(md.signed.type, md)
    print(f"{name}: {md.signed.type} v{md.signed.version} verified by root")
    if name == "1.targets.json":
        for path, target in md.signed.targets.items():
            print(f"  target {path}: {target.length} bytes {target.hashes} custom={target.custom}")
        for role in md.signed.delegations.roles.values():
            print(f"  delegation {role.name!r} terminating={role.terminating} paths={role.paths}")
snapshot = Metadata[Snapshot].from_file(str(d / "1.snapshot.json"))
snapshot.signed.meta["targets.json"].verify_length_and_hashes((d / "1.targets.json").read_bytes())
timestamp = Metadata[Timestamp].from_file(str(d / "timestamp.json"))
timestamp.signed.snapshot_meta.verify_length_and_hashes((d / "1.snapshot.json").read_bytes())
print("snapshot and timestamp listings match; all signatures verify")

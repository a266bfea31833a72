"""Builds a static TUF 1.0 repository with python-tuf's Metadata API, for sigil's client.

Usage: python tuf1_repo.py OUT_DIR

Writes OUT_DIR/metadata (1.root.json, 2.root.json with a rotated timestamp key signed by the
old and the new root key, N.ROLE.json, timestamp.json) and OUT_DIR/targets (consistent
snapshot names: <sha256>.<name>), with a delegation by paths ("releases", `releases/*`) and
one by path_hash_prefixes ("bins", the prefix of the hex SHA-256 of `bins/tool.bin`, and a
second role "other-bins" whose prefix does not match it, listed first). Prints one line of
JSON: {"targets": {path: hex of content}}.

The venv holds only `tuf==7.0.0` (no pyca/cryptography), so the keys are Ed25519 keys signed
with the small RFC 8032 implementation below (a securesystemslib Signer); sigil verifies them.
"""

import hashlib
import json
import os
import sys
from datetime import datetime, timedelta, timezone

from securesystemslib.signer import Signature, Signer, SSlibKey
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

# --- Ed25519 (RFC 8032, section 5.1), integer arithmetic in extended coordinates ---
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _add(a, b):
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    e1 = (y1 - x1) * (y2 - x2) % P
    e2 = (y1 + x1) * (y2 + x2) % P
    c = t1 * 2 * D * t2 % P
    z = z1 * 2 * z2 % P
    e, f, g, h = e2 - e1, z - c, z + c, e2 + e1
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(scalar, point):
    acc = (0, 1, 1, 0)
    while scalar:
        if scalar & 1:
            acc = _add(acc, point)
        point = _add(point, point)
        scalar >>= 1
    return acc


def _x_from_y(y):
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    return P - x if x & 1 else x


_GY = 4 * pow(5, P - 2, P) % P
_GX = _x_from_y(_GY)
BASE = (_GX, _GY, 1, _GX * _GY % P)


def _encode(point):
    x, y, z, _ = point
    zi = pow(z, P - 2, P)
    x, y = x * zi % P, y * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _h(data):
    return int.from_bytes(hashlib.sha512(data).digest(), "little")


class Ed25519Signer(Signer):
    """An in-memory Ed25519 key."""

    def __init__(self):
        digest = hashlib.sha512(os.urandom(32)).digest()
        self._a = (int.from_bytes(digest[:32], "little") & ((1 << 254) - 8)) | (1 << 254)
        self._prefix = digest[32:]
        self._public = _encode(_mul(self._a, BASE))
        keyval = {"public": self._public.hex()}
        body = {"keytype": "ed25519", "scheme": "ed25519", "keyval": keyval}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        keyid = hashlib.sha256(canonical).hexdigest()
        self._key = SSlibKey(keyid, "ed25519", "ed25519", keyval)

    @classmethod
    def from_priv_key_uri(cls, priv_key_uri, public_key, secrets_handler=None):
        raise NotImplementedError

    @property
    def public_key(self):
        return self._key

    def sign(self, payload):
        r = _h(self._prefix + payload) % L
        big_r = _encode(_mul(r, BASE))
        k = _h(big_r + self._public + payload) % L
        s = (r + k * self._a) % L
        return Signature(self._key.keyid, (big_r + s.to_bytes(32, "little")).hex())


def main(out):
    meta_dir = os.path.join(out, "metadata")
    target_dir = os.path.join(out, "targets")
    os.makedirs(meta_dir)
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=7)
    keys = {role: Ed25519Signer() for role in ["root", "targets", "snapshot", "timestamp"]}
    delegated = {role: Ed25519Signer() for role in ["releases", "bins", "other-bins"]}

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
    keys["timestamp"] = Ed25519Signer()
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

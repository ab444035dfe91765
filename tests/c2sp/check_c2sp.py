#!/usr/bin/env python3
"""An independent checker of Lineage checkpoints, written from the C2SP texts
(signed-note, tlog-checkpoint, tlog-cosignature, tlog-witness) and RFC 6962 / RFC 9162,
not from Lineage's code. Needs `pip install cryptography`.

  check_c2sp.py selftest
      RFC 6962 reference tree roots, and consistency proofs between all its sizes.
  check_c2sp.py checkpoint NOTE --log-key HEX [--witness VKEY]... [--require-cosignatures]
      Parses the signed note, checks the log's Ed25519 signature (key name = origin) and
      every given witness's timestamped cosignature; prints a JSON summary.
  check_c2sp.py add-checkpoint REQUEST --log-key HEX [--old NOTE]
      Parses a tlog-witness add-checkpoint body (old size line, proof lines, empty line,
      checkpoint), checks the checkpoint signature and, with --old (the checkpoint of the old
      size), the RFC 6962 consistency proof from it.

Exit status 0 when everything checks, 1 when something does not, 2 on usage errors.
"""

import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EM_DASH = "\u2014"


class Bad(Exception):
    pass


def sha256(b):
    return hashlib.sha256(b).digest()


# --- RFC 6962 section 2.1 -------------------------------------------------------------

def leaf_hash(data):
    return sha256(b"\x00" + data)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def mth(leaves):
    """MTH over already leaf-hashed inputs."""
    n = len(leaves)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def subproof(m, leaves, b):
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return subproof(m, leaves[:k], b) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


def verify_consistency(first, second, first_hash, second_hash, proof):
    """RFC 9162 section 2.1.4.2."""
    if first > second:
        return False
    if first == second:
        return len(proof) == 0 and first_hash == second_hash
    if first == 0:
        return len(proof) == 0
    if len(proof) == 0:
        return False
    path = list(proof)
    if first & (first - 1) == 0:
        path = [first_hash] + path
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


# --- C2SP signed-note ------------------------------------------------------------------

def parse_note(raw):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Bad("note is not UTF-8")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise Bad("note holds a control character")
    cut = text.rfind("\n\n")
    if cut < 0:
        raise Bad("no blank line before the signatures")
    body, sig_block = text[: cut + 1], text[cut + 2:]
    if not sig_block.endswith("\n") or sig_block == "\n":
        raise Bad("no signature lines")
    sigs = []
    for line in sig_block[:-1].split("\n"):
        if not line.startswith(EM_DASH + " "):
            raise Bad("signature line does not start with an em dash: %r" % line)
        name, sep, b64 = line[2:].partition(" ")
        if not sep or not name or "+" in name or any(c.isspace() for c in name):
            raise Bad("bad key name in %r" % line)
        raw_sig = base64.b64decode(b64, validate=True)
        if len(raw_sig) < 4:
            raise Bad("signature shorter than a key ID")
        sigs.append((name, raw_sig[:4], raw_sig[4:]))
    return body, sigs


def key_id(name, sig_type, public_key):
    return sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key)[:4]


def ed25519_ok(public_key, sig, msg):
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(sig, msg)
        return True
    except InvalidSignature:
        return False


def parse_vkey(vkey):
    # Names and key IDs hold no "+"; the base64 key may.
    name, kid, b64 = vkey.strip().split("+", 2)
    raw = base64.b64decode(b64, validate=True)
    sig_type, key = raw[0], raw[1:]
    if len(key) != 32 or key_id(name, sig_type, key).hex() != kid:
        raise Bad("verifier key %r does not match its key ID" % vkey)
    return name, sig_type, key


# --- C2SP tlog-checkpoint --------------------------------------------------------------

def parse_checkpoint_body(body):
    lines = body[:-1].split("\n")
    if len(lines) < 3 or any(line == "" for line in lines):
        raise Bad("a checkpoint body has at least three non-empty lines")
    origin, size, root = lines[0], lines[1], lines[2]
    if not size.isdigit() or (len(size) > 1 and size[0] == "0"):
        raise Bad("tree size %r is not decimal without leading zeroes" % size)
    root_hash = base64.b64decode(root, validate=True)
    if len(root_hash) != 32:
        raise Bad("root hash is not 32 bytes")
    return origin, int(size), root_hash, lines[3:]


def check_checkpoint(raw, log_key, witnesses):
    body, sigs = parse_note(raw)
    origin, size, root, ext = parse_checkpoint_body(body)
    # The log signs as its origin with a plain Ed25519 (type 0x01) note signature.
    want = key_id(origin, 0x01, log_key)
    log_sigs = [s for (n, kid, s) in sigs if n == origin and kid == want]
    if not log_sigs:
        raise Bad("no signature by the log key under the origin name")
    for s in log_sigs:
        if len(s) != 64 or not ed25519_ok(log_key, s, body.encode()):
            raise Bad("the log's signature does not verify")
    cosigs = []
    for vkey in witnesses:
        name, sig_type, key = parse_vkey(vkey)
        if sig_type != 0x04:
            raise Bad("witness key %s is not a cosignature/v1 key" % name)
        want = key_id(name, 0x04, key)
        mine = [s for (n, kid, s) in sigs if n == name and kid == want]
        if not mine:
            raise Bad("no cosignature by witness %s" % name)
        for s in mine:
            if len(s) != 72:
                raise Bad("cosignature of %s is not timestamp + Ed25519" % name)
            ts = int.from_bytes(s[:8], "big")
            if ts > 2**63 - 1:
                raise Bad("cosignature timestamp out of range")
            msg = b"cosignature/v1\ntime %d\n" % ts + body.encode()
            if not ed25519_ok(key, s[8:], msg):
                raise Bad("cosignature of %s does not verify" % name)
            cosigs.append({"witness": name, "time": ts})
    return {
        "origin": origin,
        "size": size,
        "root": root.hex(),
        "extension_lines": len(ext),
        "signatures": len(sigs),
        "cosignatures": cosigs,
    }


# --- C2SP tlog-witness add-checkpoint body ---------------------------------------------

def parse_add_checkpoint(raw):
    text = raw.decode("utf-8")
    head, sep, checkpoint = text.partition("\n\n")
    if not sep:
        raise Bad("no empty line before the checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        raise Bad("first line is not the old size")
    old = lines[0][4:]
    if not old.isdigit() or (len(old) > 1 and old[0] == "0"):
        raise Bad("old size is not decimal without leading zeroes")
    proof = [base64.b64decode(line, validate=True) for line in lines[1:]]
    if len(proof) > 63 or any(len(p) != 32 for p in proof):
        raise Bad("bad consistency proof lines")
    if int(old) == 0 and proof:
        raise Bad("the proof must be empty when the old size is zero")
    return int(old), proof, checkpoint.encode()


def selftest():
    data = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
            bytes(range(0x50, 0x58)), bytes(range(0x60, 0x70))]
    leaves = [leaf_hash(d) for d in data]
    # Roots published with the RFC 6962 reference implementations.
    assert mth(leaves[:1]).hex().startswith("6e340b9c")
    assert mth(leaves).hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    for n in range(1, 9):
        for m in range(1, n + 1):
            p = subproof(m, leaves[:n], True)
            assert verify_consistency(m, n, mth(leaves[:m]), mth(leaves[:n]), p), (m, n)
            if p:
                bad = [bytes([p[0][0] ^ 1]) + p[0][1:]] + p[1:]
                assert not verify_consistency(m, n, mth(leaves[:m]), mth(leaves[:n]), bad)
    return {"selftest": "ok"}


def main(argv):
    args = argv[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2

    def opt(name, many=False):
        vals = []
        while name in args:
            i = args.index(name)
            vals.append(args[i + 1])
            del args[i:i + 2]
        return vals if many else (vals[0] if vals else None)

    try:
        cmd = args.pop(0)
        if cmd == "selftest":
            out = selftest()
        elif cmd == "checkpoint":
            log_key = bytes.fromhex(opt("--log-key"))
            out = check_checkpoint(open(args[0], "rb").read(), log_key, opt("--witness", True))
        elif cmd == "add-checkpoint":
            log_key = bytes.fromhex(opt("--log-key"))
            old_path = opt("--old")
            old, proof, note = parse_add_checkpoint(open(args[0], "rb").read())
            new = check_checkpoint(note, log_key, [])
            out = {"old": old, "proof_len": len(proof), "new": new}
            if old_path:
                o = check_checkpoint(open(old_path, "rb").read(), log_key, [])
                if o["origin"] != new["origin"] or o["size"] != old:
                    raise Bad("--old is not the checkpoint of the old size of this origin")
                if not verify_consistency(old, new["size"], bytes.fromhex(o["root"]),
                                          bytes.fromhex(new["root"]), proof):
                    raise Bad("the consistency proof does not verify")
                out["consistent"] = True
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (Bad, ValueError, IndexError, AssertionError) as e:
        print("FAIL: %s" % (e or type(e).__name__), file=sys.stderr)
        return 1
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

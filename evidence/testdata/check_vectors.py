#!/usr/bin/env python3
"""Independent check of the Lineage test vectors, written from docs/FORMAT.md only.

Recomputes every hash, link, Merkle root, header digest, key id and signature of
evidence/testdata/v1 and compares them with the files and with expected.json; checks the key
rotation, the continuity rules and the proof. Then checks evidence/testdata/v1-retention, a log
whose oldest segments were deleted under a RETENTION entry (FORMAT.md §4.7, §9.2), with DROPPED
entries (§4.8). Then checks evidence/testdata/ed25519-strict, the strict Ed25519 rules of §2.1
(with its own point arithmetic, because the cryptography package accepts the small-order
forgery A = R = identity, S = 0), and evidence/testdata/v2, a forward-secure (format version 2)
log anchored at an identity key through an ENROLMENT entry. Exits non-zero on the first
mismatch.

Needs: pip install blake3 cryptography
"""
import json
import os
import struct
import sys

from blake3 import blake3
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey, Ed25519PrivateKey
from cryptography.exceptions import InvalidSignature

V1 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "v1")
V1R = os.path.join(os.path.dirname(os.path.abspath(__file__)), "v1-retention")
V2 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "v2")
STRICT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ed25519-strict")


def H(tag, *parts):
    h = blake3(bytes([tag]))
    for p in parts:
        h.update(p)
    return h.digest()


def leaf(e):
    return H(0x00, e)


def node(l, r):
    return H(0x01, l, r)


def link(prev, index, lf):
    return H(0x02, prev, struct.pack("<Q", index), lf)


def header_digest(hb):
    return H(0x03, hb)


def genesis(host):
    return H(0x04, b"lineage/genesis/v1", host)


def key_id(pk):
    return H(0x05, pk)[:16]


def mth(leaves):
    n = len(leaves)
    if n == 0:
        return blake3(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(lf, m, n, path, root):
    if m >= n or len(path) > 64:
        return False
    fn, sn, r = m, n - 1, lf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 == 1 or fn == sn:
            r = node(p, r)
            if fn & 1 == 0:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# Strict Ed25519 checks (FORMAT.md §2.1), independent of any Ed25519 library: point decoding
# per RFC 8032 §5.1.3 and small-order detection by multiplying by the cofactor 8.
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def decode_point(b):
    """RFC 8032 §5.1.3; None for a non-canonical or invalid encoding."""
    y = int.from_bytes(b, "little") & ((1 << 255) - 1)
    sign = b[31] >> 7
    if y >= P:
        return None
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = (u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P)) % P
    if (v * x * x - u) % P != 0:
        x = x * SQRT_M1 % P
        if (v * x * x - u) % P != 0:
            return None
    if x == 0 and sign == 1:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y)


def add(p, q):
    (x1, y1), (x2, y2) = p, q
    t = D * x1 * x2 * y1 * y2 % P
    return ((x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P,
            (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P)


def small_order(pt):
    for _ in range(3):
        pt = add(pt, pt)
    return pt == (0, 1)


def strict_ok(pk, sig):
    """The checks FORMAT.md adds to RFC 8032 verification."""
    a, r = decode_point(pk), decode_point(sig[:32])
    return (a is not None and r is not None and not small_order(a) and not small_order(r)
            and int.from_bytes(sig[32:], "little") < L)


def ed_verify(pk, msg, sig):
    """RFC 8032 verification (by the cryptography package) plus the strict checks above: the
    package alone accepts the small-order forgery A = R = identity, S = 0."""
    if len(pk) != 32 or len(sig) != 64 or not strict_ok(pk, sig):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(pk).verify(sig, msg)
        return True
    except (InvalidSignature, ValueError):
        return False


def check_strict_vectors():
    cases = json.load(open(os.path.join(STRICT, "cases.json")))["cases"]
    lax_accepted = 0
    for c in cases:
        pk, msg, sig = (bytes.fromhex(c[k]) for k in ("public_hex", "message_hex", "signature_hex"))
        check(ed_verify(pk, msg, sig) == c["valid"], "strict verdict: " + c["name"])
        try:
            Ed25519PublicKey.from_public_bytes(pk).verify(sig, msg)
            lax_accepted += not c["valid"]
        except (InvalidSignature, ValueError):
            pass
    check(any(c["valid"] for c in cases) and not all(c["valid"] for c in cases), "strict cases")
    print(f"OK: {len(cases)} strict Ed25519 cases; the plain library would have accepted "
          f"{lax_accepted} of the invalid ones")


def check(cond, what):
    if not cond:
        print("MISMATCH:", what)
        sys.exit(1)


HEADER = struct.Struct("<8sHHI16sQQQQ32s32s32s32sQ16s32s")
assert HEADER.size == 248


def parse_header(b):
    f = HEADER.unpack(b[:248])
    names = ["magic", "version", "header_len", "flags", "host_id", "segment_number", "first_index",
             "entry_count", "entries_len", "prev_header_digest", "start_link", "chain_head",
             "merkle_root", "seal_time_ns", "key_id", "public_key"]
    h = dict(zip(names, f))
    check(h["magic"] == b"LNGSEG\r\n" and h["version"] == 1 and h["header_len"] == 248 and h["flags"] == 0,
          "header constants")
    return h


def parse_segment(data):
    h = parse_header(data)
    sig = data[248:312]
    body = data[312:]
    check(h["entries_len"] == len(body), "entries_len")
    entries, pos = [], 0
    for _ in range(h["entry_count"]):
        (n,) = struct.unpack_from("<I", body, pos)
        check(4 <= n <= 1 << 20, "entry length")
        entries.append(body[pos + 4:pos + 4 + n])
        pos += 4 + n
    check(pos == len(body), "framing")
    return h, data[:248], sig, entries


HEADER_V2_TAIL = struct.Struct("<32s32s")


def parse_segment_v2(data):
    """Format version 2 (FORMAT.md §5): 312-byte header, signature context v2."""
    f = HEADER.unpack(data[:248])
    names = ["magic", "version", "header_len", "flags", "host_id", "segment_number", "first_index",
             "entry_count", "entries_len", "prev_header_digest", "start_link", "chain_head",
             "merkle_root", "seal_time_ns", "key_id", "public_key"]
    h = dict(zip(names, f))
    h["next_public_key"], h["policy_digest"] = HEADER_V2_TAIL.unpack(data[248:312])
    check(h["magic"] == b"LNGSEG\r\n" and h["version"] == 2 and h["header_len"] == 312 and h["flags"] == 0,
          "v2 header constants")
    sig, body = data[312:376], data[376:]
    check(h["entries_len"] == len(body), "v2 entries_len")
    entries, pos = [], 0
    for _ in range(h["entry_count"]):
        (n,) = struct.unpack_from("<I", body, pos)
        check(4 <= n <= 1 << 20, "v2 entry length")
        entries.append(body[pos + 4:pos + 4 + n])
        pos += 4 + n
    check(pos == len(body), "v2 framing")
    return h, data[:312], sig, entries


def check_v2_vectors():
    """Forward-secure sealing (FORMAT.md §4.11, §8.1, §9.2): the identity certifies the first
    sealing key in an ENROLMENT entry; each header commits to the next key; a key signs once;
    each header states the newest FILTER POLICY digest (zero before any)."""
    exp = json.load(open(os.path.join(V2, "expected.json")))
    host = bytes.fromhex(exp["host_id"])
    idk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(exp["identity"]["seed_hex"]))
    identity = idk.public_key().public_bytes_raw()
    check(identity.hex() == exp["identity"]["public_hex"], "identity key")
    line = open(os.path.join(V2, "identity.pub")).read().split()
    check(line[:2] == ["lineage-ed25519-public-v1", identity.hex()], "identity.pub")
    in_effect, used, policy, prev = None, set(), bytes(32), None
    for s in exp["segments"]:
        h, hb, sig, entries = parse_segment_v2(open(os.path.join(V2, s["file"]), "rb").read())
        n = h["segment_number"]
        check(hb.hex() == s["header_hex"] and header_digest(hb).hex() == s["header_digest"], f"v2 {n} header")
        check(key_id(h["public_key"]) == h["key_id"], f"v2 {n} key id")
        check(ed_verify(h["public_key"], b"lineage/segment-header/v2" + hb, sig), f"v2 {n} signature")
        check(h["host_id"] == host, f"v2 {n} host")
        if prev is None:
            check(n == 0 and h["first_index"] == 0 and h["prev_header_digest"] == bytes(32)
                  and h["start_link"] == genesis(host), "v2 genesis")
        else:
            ph, phb = prev
            check(n == ph["segment_number"] + 1 and h["prev_header_digest"] == header_digest(phb)
                  and h["first_index"] == ph["first_index"] + ph["entry_count"]
                  and h["start_link"] == ph["chain_head"], f"v2 {n} continuity")
        lk, leaves, enrolled = h["start_link"], [], False
        for i, e in enumerate(entries):
            idx = h["first_index"] + i
            ee = s["entries"][i]
            lf = leaf(e)
            lk = link(lk, idx, lf)
            check(ee["entry_hex"] == e.hex() and ee["link"] == lk.hex(), f"v2 entry {idx}")
            leaves.append(lf)
            kind, ver = struct.unpack_from("<HH", e)
            if kind == 10:  # ENROLMENT, 132 bytes, 100-byte message
                check(len(e) == 132, "ENROLMENT length")
                ident, sealing, esig = e[4:36], e[36:68], e[68:132]
                msg = b"lineage/enrolment/v1" + host + ident + sealing
                check(len(msg) == 100, "enrolment message length")
                enrolled |= (ident == identity and sealing == h["public_key"]
                             and ed_verify(ident, msg, esig))
            if kind == 7:  # FILTER: form 1 = POLICY, text at offset 44
                form, zero = struct.unpack_from("<HH", e, 4)
                digest, (tlen,) = e[8:40], struct.unpack_from("<I", e, 40)
                if form == 1:
                    check(len(e) == 44 + tlen and blake3(e[44:]).digest() == digest, "FILTER POLICY")
                    policy = digest
        check(lk == h["chain_head"] and mth(leaves) == h["merkle_root"], f"v2 {n} head and root")
        check(h["public_key"] not in used, f"v2 {n}: a sealing key signs one segment")
        check(h["public_key"] == in_effect or enrolled, f"v2 {n} key chain")
        check(h["policy_digest"] == policy, f"v2 {n} policy digest")
        used.add(h["public_key"])
        in_effect = h["next_public_key"]
        prev = (h, hb)
    check(policy.hex() == exp["policy_digest"], "v2 policy digest value")
    print(f"OK: format version 2 vectors: {len(exp['segments'])} segments, the enrolment, the key "
          f"chain and the policy digests match docs/FORMAT.md")


def parse_dropped(e):
    """DROPPED v1 (FORMAT.md §4.8): 28-byte body; raises on a malformed body."""
    check(len(e) == 4 + 28, "DROPPED length")
    reason, zero, count, first, last = struct.unpack_from("<HHQQQ", e, 4)
    check(reason in (1, 2) and zero == 0 and count >= 1 and last >= first, "DROPPED body")
    return {"reason": {1: "storage_unavailable", 2: "queue_full"}[reason], "count": count,
            "first_time_ns": first, "last_time_ns": last}


def parse_retention(e):
    """RETENTION v1 (FORMAT.md §4.7): 68-byte body."""
    check(len(e) == 4 + 68, "RETENTION length")
    reason, zero, k, end, nbytes, nsegs = struct.unpack_from("<HHQQQQ", e, 4)
    check(reason in (1, 2) and zero == 0 and nsegs <= k + 1, "RETENTION body")
    return {"reason": {1: "budget", 2: "hard_cap"}[reason], "last_deleted_segment": k,
            "end_index": end, "deleted_bytes": nbytes, "deleted_segments": nsegs,
            "last_deleted_header_digest": e[40:72]}


def check_retention_vectors():
    exp = json.load(open(os.path.join(V1R, "expected.json")))
    host = bytes.fromhex(exp["host_id"])
    k = exp["keys"]["key0"]
    pk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(k["seed_hex"])).public_key().public_bytes_raw()
    check(pk.hex() == k["public_hex"] and key_id(pk).hex() == k["key_id"], "retention key0")
    names = sorted(os.listdir(os.path.join(V1R, "log", "segments")))
    check(names == [os.path.basename(s["file"]) for s in exp["segments"]], "retention segment files")

    prev, findings, retentions, first = None, [], [], None
    for s in exp["segments"]:
        h, hb, sig, entries = parse_segment(open(os.path.join(V1R, s["file"]), "rb").read())
        n = h["segment_number"]
        check(hb.hex() == s["header_hex"] and header_digest(hb).hex() == s["header_digest"], f"r{n} header")
        check(h["public_key"] == pk and key_id(pk) == h["key_id"], f"r{n} key")
        check(ed_verify(pk, b"lineage/segment-header/v1" + hb, sig), f"r{n} signature")
        check(h["host_id"] == host, f"r{n} host")
        if prev is None:
            first = h
        else:
            ph, phb = prev
            check(n == ph["segment_number"] + 1 and h["prev_header_digest"] == header_digest(phb)
                  and h["first_index"] == ph["first_index"] + ph["entry_count"]
                  and h["start_link"] == ph["chain_head"], f"r{n} continuity")
        lk, leaves = h["start_link"], []
        for i, e in enumerate(entries):
            idx = h["first_index"] + i
            ee = s["entries"][i]
            lf = leaf(e)
            lk = link(lk, idx, lf)
            check(ee["index"] == idx and ee["entry_hex"] == e.hex() and ee["leaf_hash"] == lf.hex()
                  and ee["link"] == lk.hex(), f"r entry {idx}")
            leaves.append(lf)
            kind, ver = struct.unpack_from("<HH", e)
            check(kind != 0 and ver == 1, f"r entry {idx} kind/version")
            if kind == 9:  # DROPPED: always DECLARED_LOSS
                d = parse_dropped(e)
                findings.append({"kind": "DECLARED_LOSS", "segment": n, "entry": idx,
                                 "reason": d["reason"], "count": d["count"]})
            if kind == 8:  # RETENTION: must declare only segments and entries before its own
                r = parse_retention(e)
                check(r["last_deleted_segment"] < n and r["end_index"] <= h["first_index"],
                      f"RETENTION at {idx} precedes its segment")
                retentions.append((idx, n, r))
        check(lk == h["chain_head"] and mth(leaves) == h["merkle_root"], f"r{n} head and root")
        prev = (h, hb)

    # §9.2 Retention: the absent prefix 0..L-1 is excused by a RETENTION with
    # last_deleted_segment >= L-1; one with == L-1 must match segment L exactly.
    L = first["segment_number"]
    check(L > 0, "the retention vectors start after a pruned prefix")
    covering = [x for x in retentions if x[2]["last_deleted_segment"] >= L - 1]
    check(covering, "a RETENTION entry covers the pruned prefix")
    for idx, n, r in covering:
        if r["last_deleted_segment"] == L - 1:
            check(r["last_deleted_header_digest"] == first["prev_header_digest"]
                  and r["end_index"] == first["first_index"], f"RETENTION at {idx} matches segment {L}")
    for d in exp["deleted"]:
        if d["segment_number"] == L - 1:
            check(d["header_digest"] == first["prev_header_digest"].hex()
                  and d["end_index"] == first["first_index"], "deleted segment digest")
    idx, n, r = max(covering, key=lambda x: (x[2]["last_deleted_segment"], x[0]))
    ev = exp["verify"]
    want = ev["retention"]
    check((idx, n, r["reason"], r["last_deleted_segment"], r["end_index"], r["deleted_bytes"],
           r["deleted_segments"]) == (want["declared_at"], want["declared_in_segment"], want["reason"],
                                      want["last_deleted_segment"], want["end_index"],
                                      want["deleted_bytes"], want["deleted_segments"]),
          "retention summary")
    check(list(range(0, L)) == want["absent_segments"], "absent segments")
    check(findings == ev["findings"], "retention findings")
    check(ev["outcome"] == ("declared_loss_only" if findings else "ok"), "retention outcome")
    print(f"OK: retention vectors: segments 0..={L - 1} pruned under the RETENTION entry at {idx}, "
          f"{len(exp['segments'])} segments and {len(findings)} DROPPED entries match docs/FORMAT.md")


def main():
    exp = json.load(open(os.path.join(V1, "expected.json")))
    host = bytes.fromhex(exp["host_id"])
    check(genesis(host).hex() == exp["genesis_link"], "genesis link")
    check(blake3(b"").digest().hex() == exp["empty_tree_hash"], "empty tree hash")
    keys = {}
    for name, k in exp["keys"].items():
        sk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(k["seed_hex"]))
        pk = sk.public_key().public_bytes_raw()
        check(pk.hex() == k["public_hex"], name + " public key from seed")
        check(key_id(pk).hex() == k["key_id"], name + " key id")
        line = open(os.path.join(V1, name + ".pub")).read().split()
        check(line[0] == "lineage-ed25519-public-v1" and line[1] == pk.hex(), name + ".pub")
        keys[name] = pk

    key_in_effect = keys[exp["verify"]["trusted_keys"][0]]
    retired = set()
    prev = None
    findings = []
    for s in exp["segments"]:
        data = open(os.path.join(V1, s["file"]), "rb").read()
        h, hb, sig, entries = parse_segment(data)
        n = h["segment_number"]
        check(hb.hex() == s["header_hex"], f"segment {n} header bytes")
        check(header_digest(hb).hex() == s["header_digest"], f"segment {n} header digest")
        check(key_id(h["public_key"]) == h["key_id"], f"segment {n} key id")
        check(ed_verify(h["public_key"], b"lineage/segment-header/v1" + hb, sig), f"segment {n} signature")
        check(h["public_key"] == key_in_effect and h["public_key"] not in retired,
              f"segment {n} signed by the key in effect")
        if prev is None:
            check(n == 0 and h["first_index"] == 0 and h["prev_header_digest"] == bytes(32)
                  and h["start_link"] == genesis(host), "segment 0 starts at genesis")
        else:
            ph, phb = prev
            check(n == ph["segment_number"] + 1, f"segment {n} number")
            check(h["prev_header_digest"] == header_digest(phb), f"segment {n} prev digest")
            check(h["first_index"] == ph["first_index"] + ph["entry_count"], f"segment {n} first index")
            check(h["start_link"] == ph["chain_head"], f"segment {n} start link")
        lk, leaves, next_key = h["start_link"], [], None
        for i, e in enumerate(entries):
            idx = h["first_index"] + i
            ee = s["entries"][i]
            check(ee["index"] == idx and ee["entry_hex"] == e.hex(), f"entry {idx} bytes")
            lf = leaf(e)
            lk = link(lk, idx, lf)
            check(lf.hex() == ee["leaf_hash"], f"entry {idx} leaf hash")
            check(lk.hex() == ee["link"], f"entry {idx} link")
            leaves.append(lf)
            kind, ver = struct.unpack_from("<HH", e)
            check(kind != 0 and ver == 1, f"entry {idx} kind/version")
            if kind == 1:  # EVENT: at least kind, version and schema (6 bytes)
                check(len(e) >= 6, f"EVENT {idx} length")
            if kind == 2:  # LOSS
                check(len(e) == 44, "LOSS length")
                cpu, flags, first, last, delta, total = struct.unpack_from("<IIQQQQ", e, 4)
                explained = flags & 1 == 0 and delta >= last - first + 1
                findings.append({"kind": "DECLARED_LOSS" if explained else "UNEXPLAINED_GAP",
                                 "segment": n, "entry": idx, "cpu": cpu, "sequences": [first, last]})
            if kind == 6:  # KEY_ROTATION (111-byte message; one per segment; retires the old key)
                check(len(e) == 132, "KEY_ROTATION length")
                old, new, rsig = e[4:36], e[36:68], e[68:132]
                msg = b"lineage/key-rotation/v1" + host + struct.pack("<Q", idx) + old + new
                check(len(msg) == 111, "rotation message length")
                check(old == h["public_key"] and ed_verify(old, msg, rsig), f"rotation at {idx}")
                check(next_key is None and new not in retired, f"rotation at {idx} is the segment's first")
                next_key = new
        check(lk == h["chain_head"] and lk.hex() == s["chain_head"], f"segment {n} chain head")
        check(mth(leaves) == h["merkle_root"] and h["merkle_root"].hex() == s["merkle_root"],
              f"segment {n} Merkle root")
        if next_key is not None:
            retired.add(key_in_effect)
            key_in_effect = next_key
        prev = (h, hb)
    check(findings == exp["verify"]["findings"], "findings")

    # The proof.
    p = exp["proof"]
    b = open(os.path.join(V1, p["file"]), "rb").read()
    check(b[:8] == b"LNGPRF\r\n" and struct.unpack_from("<HH", b, 8) == (1, 0), "proof magic")
    h = parse_header(b[12:260])
    sig = b[260:324]
    (index, elen) = struct.unpack_from("<QI", b, 324)
    entry = b[336:336 + elen]
    (plen,) = struct.unpack_from("<B", b, 336 + elen)
    path = [b[337 + elen + 32 * i:337 + elen + 32 * (i + 1)] for i in range(plen)]
    check(len(b) == 337 + elen + 32 * plen, "proof length")
    check(index == p["index"] and [x.hex() for x in path] == p["path"], "proof fields")
    check(h["public_key"] == keys["key1"], "proof signed by key1")
    check(ed_verify(h["public_key"], b"lineage/segment-header/v1" + b[12:260], sig), "proof signature")
    check(h["first_index"] <= index < h["first_index"] + h["entry_count"], "proof index in range")
    check(verify_inclusion(leaf(entry), index - h["first_index"], h["entry_count"], path, h["merkle_root"]),
          "proof path")
    check(not verify_inclusion(leaf(entry + b"x"), index - h["first_index"], h["entry_count"], path,
                               h["merkle_root"]), "proof rejects a modified entry")
    print(f"OK: {len(exp['segments'])} segments, all hashes, links, roots, signatures, the rotation "
          f"and the proof match docs/FORMAT.md")
    check_retention_vectors()
    check_strict_vectors()
    check_v2_vectors()


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Short fuzz run of every target: evidence/fuzz/run.sh [seconds per target, default 30]
# Exits non-zero as soon as a target crashes (the crashing input is left in artifacts/<target>/).
# Needs the rustup nightly toolchain and cargo-fuzz (cargo install cargo-fuzz).
set -euo pipefail
secs="${1:-30}"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
# Keep fuzz builds in evidence/fuzz/target whatever the caller's CARGO_TARGET_DIR is.
unset CARGO_TARGET_DIR

# Seed corpora from the committed test vectors so the fuzzer starts from valid inputs.
vectors="$here/../testdata/v1"
retention="$here/../testdata/v1-retention"  # a pruned log with RETENTION and DROPPED entries
seed() { mkdir -p "corpus/$1"; cp -f "$2" "corpus/$1/${3:-}" 2>/dev/null || true; }
for f in "$vectors"/log/segments/*.seg; do seed segment "$f"; done
for f in "$retention"/log/segments/*.seg; do seed segment "$f" "retention-$(basename "$f")"; done
seed proof "$vectors/entry-9.proof"
seed text "$vectors/key0.pub"
mkdir -p corpus/entry corpus/log
python3 - "$vectors/expected.json" "$retention/expected.json" corpus/entry <<'PY' || true
import json, sys, os
for prefix, path in (("vector", sys.argv[1]), ("retention", sys.argv[2])):
    exp = json.load(open(path))
    for s in exp["segments"]:
        for e in s["entries"]:
            name = "%s-%d" % (prefix, e["index"])
            open(os.path.join(sys.argv[3], name), "wb").write(bytes.fromhex(e["entry_hex"]))
PY
# A "directory" of the four vector segments for the log target (slot, u16 length, bytes).
python3 - "$vectors/log/segments" corpus/log/vectors <<'PY' || true
import os, struct, sys
out = bytearray([0x01])
for i, name in enumerate(sorted(os.listdir(sys.argv[1]))):
    b = open(os.path.join(sys.argv[1], name), "rb").read()
    out += bytes([i]) + struct.pack("<H", len(b)) + b
open(sys.argv[2], "wb").write(out)
PY
# The pruned log: its first file is segment 2, accepted only through the RETENTION entry.
python3 - "$retention/log/segments" corpus/log/retention <<'PY' || true
import os, struct, sys
out = bytearray([0x01])
for name in sorted(os.listdir(sys.argv[1])):
    b = open(os.path.join(sys.argv[1], name), "rb").read()
    out += bytes([int(name[:20])]) + struct.pack("<H", len(b)) + b
open(sys.argv[2], "wb").write(out)
PY

targets="$(cargo +nightly fuzz list)"
cargo +nightly fuzz build
for t in $targets; do
    echo "=== fuzzing $t for ${secs}s"
    set +e
    cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
        | grep -E "^(Done|stat::number_of_executed_units|SUMMARY|==[0-9]+==ERROR|thread .* panicked|artifact_prefix|Test unit written)"
    status="${PIPESTATUS[0]}"  # cargo fuzz's status, not grep's
    set -e
    if [ "$status" -ne 0 ]; then
        echo "FUZZ FAILURE in target $t (exit $status; crashing input in $here/artifacts/$t/)" >&2
        exit 1
    fi
done
echo "all fuzz targets ran ${secs}s without a crash"

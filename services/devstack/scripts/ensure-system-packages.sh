#!/usr/bin/env bash
# Debian packages that the local stack and the tests run as real processes. Installs the missing
# ones when running as root; otherwise names them and fails.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v unzip >/dev/null 2>&1 || need+=(unzip)
{ command -v flock && command -v taskset; } >/dev/null 2>&1 || need+=(util-linux) # taskset: the fanout bench pins its server

[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${need[*]}. Install them as root: apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "[system-packages] installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"

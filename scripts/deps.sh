#!/usr/bin/env bash
# deps.sh - install the Debian 12 packages semcache needs to build, test and
# run its demo, skipping what is already there.  Run as root (or via sudo).
set -euo pipefail

# libhiredis-dev and libjansson-dev are linked by the library (the Redis
# tier in backends/); redis-server and python3-redis are for the Redis
# integration tests, which start their own servers and fail without them.
PKGS=(gcc g++ meson ninja-build pkg-config python3
      libmsgpack-dev libssl-dev libjemalloc-dev libcriterion-dev libjansson-dev
      libmicrohttpd-dev libcurl4-openssl-dev nodejs
      libhiredis-dev redis-server python3-redis
)
# semcache-proxy serves HTTP with libmicrohttpd and calls its upstream with
# libcurl; its client test runs the official openai npm package on Node.
# npm comes from Debian's package unless an npm command is already there
# (some nodejs builds bundle it, and Debian's npm would conflict with them).
command -v npm >/dev/null || PKGS+=(npm)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "deps.sh: missing packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
		exit 1
	fi
	echo "deps.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

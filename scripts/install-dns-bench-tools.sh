#!/usr/bin/env bash
# Installs what `zone-bench dns` compares zone-edge's DNS server with: Knot DNS (`knotd`, Debian's
# knot) serving the same zone file, and `dnsperf` (Debian's dnsperf) sending the load. Idempotent:
# installs only what is missing. Where it cannot install (no apt-get, not root) it prints why and
# exits 0: `zone-bench dns` then says what is missing and exits without measuring.
set -euo pipefail

missing=()
command -v knotd >/dev/null 2>&1 || missing+=(knot)
command -v dnsperf >/dev/null 2>&1 || missing+=(dnsperf)
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-dns-bench-tools: knotd and dnsperf already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-dns-bench-tools: apt-get not available; install ${missing[*]} yourself" >&2
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-dns-bench-tools: not root; run \`sudo apt-get install -y ${missing[*]}\` yourself" >&2
    exit 0
fi
echo "install-dns-bench-tools: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet.
if ! apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
    if ! { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
        echo "install-dns-bench-tools: apt-get could not install ${missing[*]}" >&2
        exit 0
    fi
fi
# The knot package enables a system service on port 53; the benchmark starts its own knotd.
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now knot >/dev/null 2>&1 || true
fi
echo "install-dns-bench-tools: installed ${missing[*]}"

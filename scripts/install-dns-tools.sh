#!/usr/bin/env bash
# Installs the DNS clients client/tests/edge_dns.rs checks zone-edge's DNS server with: `dig`
# (bind9-dnsutils) and `kdig` (knot-dnsutils), from Debian's packages. Idempotent: installs only
# what is missing. Where it cannot install (no apt-get, not root) it prints why and exits 0: those
# tests then skip with a printed reason.
set -euo pipefail

missing=()
command -v dig >/dev/null 2>&1 || missing+=(bind9-dnsutils)
command -v kdig >/dev/null 2>&1 || missing+=(knot-dnsutils)
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-dns-tools: dig and kdig already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-dns-tools: apt-get not available; install ${missing[*]} yourself" >&2
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-dns-tools: not root; run \`sudo apt-get install -y ${missing[*]}\` yourself" >&2
    exit 0
fi
echo "install-dns-tools: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet.
if ! apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
    if ! { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
        echo "install-dns-tools: apt-get could not install ${missing[*]}; their tests will skip" >&2
        exit 0
    fi
fi
echo "install-dns-tools: installed ${missing[*]}"

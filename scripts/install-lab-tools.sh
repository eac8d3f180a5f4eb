#!/usr/bin/env bash
# Installs what zone-bench's network labs run besides cargo: `ip` (iproute2: namespaces, veth,
# routes) and `ethtool` (GRO on the 1500-byte veth link, as a NIC driver has it), from Debian's
# packages. Idempotent: installs only what is missing. Where it cannot install (no apt-get, not
# root) it prints why and exits 0: the labs then skip, or run with GRO off, and say so.
set -euo pipefail

missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v ethtool >/dev/null 2>&1 || missing+=(ethtool)
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-lab-tools: ip and ethtool already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-lab-tools: apt-get not available; install ${missing[*]} yourself" >&2
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-lab-tools: not root; run \`sudo apt-get install -y ${missing[*]}\` yourself" >&2
    exit 0
fi
echo "install-lab-tools: installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet.
if ! apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
    if ! { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
        echo "install-lab-tools: apt-get could not install ${missing[*]}; the labs will say so" >&2
        exit 0
    fi
fi
echo "install-lab-tools: installed ${missing[*]}"

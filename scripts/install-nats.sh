#!/usr/bin/env bash
# Installs nats-server (NATS with JetStream) for server/tests/journal_nats.rs and the
# `journal-redb-vs-nats` bench scenario: `apt-get install -y nats-server` (Debian ships 2.9+).
# Idempotent: does nothing when `nats-server` is already on PATH. Where it cannot install (no
# apt-get, not root) it prints why and exits 0: those tests then skip with a printed reason.
set -euo pipefail

if command -v nats-server >/dev/null 2>&1; then
    echo "install-nats: $(nats-server --version 2>/dev/null || echo nats-server) already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-nats: apt-get not available; install nats-server (2.9 or newer) yourself" >&2
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "install-nats: not root; run \`sudo apt-get install -y nats-server\` yourself" >&2
    exit 0
fi

echo "install-nats: installing nats-server with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet.
if ! apt-get install -y -qq nats-server >/dev/null 2>&1; then
    if ! { apt-get update -qq && apt-get install -y -qq nats-server >/dev/null; }; then
        echo "install-nats: apt-get could not install nats-server; its tests will skip" >&2
        exit 0
    fi
fi
# The Debian package enables a system service; the tests start their own servers.
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now nats-server >/dev/null 2>&1 || true
fi
echo "install-nats: installed $(nats-server --version)"

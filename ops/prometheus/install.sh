#!/usr/bin/env bash
#
# ops/prometheus/install.sh - make `prometheus`, `promtool` and `prometheus-alertmanager`
# (with `amtool`) available, idempotently.
#
# Usage: bash ops/prometheus/install.sh
#
# Does nothing (but print the versions) when all are on PATH. Otherwise installs the
# Debian packages `prometheus` (prometheus, promtool) and `prometheus-alertmanager` with apt-get, without recommends, as root
# or through sudo. The tests start their own Prometheus on a free loopback port with a
# temp data dir; on a machine running systemd the package also enables its own service
# on :9090 (and Alertmanager's on :9093), which the tests never use.
set -euo pipefail

say() { printf 'prometheus: %s\n' "$*"; }

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 \
    && command -v prometheus-alertmanager >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1; then
    say "already installed: $(promtool --version 2>&1 | head -n 1); $(prometheus-alertmanager --version 2>&1 | head -n 1)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    say "ERROR: prometheus/promtool missing and apt-get not found; install Prometheus >= 2.37 by hand" >&2
    exit 1
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        say "ERROR: installing the prometheus package needs root (no sudo found)" >&2
        exit 1
    fi
fi

say "installing the Debian packages prometheus and prometheus-alertmanager"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null
for tool in promtool prometheus-alertmanager amtool; do
    command -v "$tool" >/dev/null 2>&1 || { say "ERROR: $tool still missing after install" >&2; exit 1; }
done
say "installed: $(promtool --version 2>&1 | head -n 1); $(prometheus-alertmanager --version 2>&1 | head -n 1)"

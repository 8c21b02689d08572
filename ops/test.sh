#!/usr/bin/env bash
#
# ops/test.sh - the one command that runs every test of oms.
#
# Usage: bash ops/test.sh [EXTRA CARGO TEST ARGS...]
#
# Steps, each announced with a `== step` line, stopping at the first failure:
#   1. bash ops/services.sh build-tools test-tools all
#                                  a C toolchain, python3 + PyYAML, openssl, ip (apt-get
#                                  when missing); Redis and MariaDB up for REDIS_URL /
#                                  DATABASE_URL (DATABASE_URL unset: the URL that
#                                  services.sh keeps for its generated `oms` user, if any)
#      bash ops/prometheus/install.sh  prometheus, promtool, prometheus-alertmanager, amtool
#                                      (the scrape and alert-delivery tests need them)
#      promtool check config / test rules   ops/prometheus/prometheus.yml, alerts_test.yml
#      amtool check-config                  ops/prometheus/alertmanager.yml
#      bash ops/grafana/check-schema.sh     the Grafana dashboard against @grafana/schema (npm)
#      python3 ops/check-manifests.py   syntax and key settings of the deployment files
#      python3 ops/check-module-cycles.py   no module imports one that imports it back (re-exports
#                                           count; --self-test first)
#      python3 ops/check-function-length.py no function over 80 lines without a `// Long on
#                                           purpose:` reason (--self-test first)
#   2. cargo fmt --all -- --check
#   3. cargo clippy --workspace --all-targets -- -D warnings
#   4. cargo build --workspace --bins
#   5. cargo test --workspace "$@"   (OMS_REBUILD_SEEDS=1,2,3: the randomised read-model
#                                     test three times)
#      the API load test alone (a crowd of 200 clients for 20 s; ignored in the step above)
#      bash ops/browser-test.sh     the dashboard in headless Chromium (apt-get chromium,
#                                   npm playwright-core into target/)
#      bash ops/schemathesis.sh     the OpenAPI document against a running `producer serve`,
#                                   with and without the token: 0 failures (PyPI
#                                   schemathesis in a venv under target/)
#   6. cargo deny (supply chain), see dependency_audit below
# Runs from the repository root whatever the current directory is.
set -euo pipefail

cd "$(dirname "$0")/.."
export RUST_BACKTRACE=1

step() {
    local start=$SECONDS
    printf '== %s\n' "$*"
    "$@"
    printf '== %s: done in %ds\n' "$1${2:+ $2}" $((SECONDS - start))
}

# DATABASE_URL not set: the URL ops/services.sh keeps for the MySQL user it created
# (a stock Debian MariaDB lets root in only through its unix socket), if any.
use_kept_database_url() {
    local kept=${OMS_SERVICES_DIR:-/var/lib/oms-services}/database-url
    if [[ -z ${DATABASE_URL:-} && -r $kept ]]; then
        DATABASE_URL=$(<"$kept")
        export DATABASE_URL
        echo "test: DATABASE_URL from $kept"
    fi
}

if ! command -v cargo >/dev/null 2>&1; then
    if [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo ]]; then
        export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    else
        echo "test: cargo not found. Install the Rust toolchain with rustup:" >&2
        echo "test:   curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy" >&2
        echo "test:   . \"\$HOME/.cargo/env\"" >&2
        exit 1
    fi
fi

# Step 6: `cargo deny check bans licenses sources` (deny.toml) must pass: licenses,
# wildcard/duplicate versions, crates.io as the only source; all offline. Installs
# cargo-deny from crates.io when missing. The advisories check needs the RustSec
# database from GitHub: it runs when the database can be fetched and fails on any
# advisory; when it cannot be fetched the step says so and goes on (not checked).
dependency_audit() {
    if ! cargo deny --version >/dev/null 2>&1; then
        echo "test: installing cargo-deny (cargo install --locked cargo-deny)"
        cargo install --locked cargo-deny
    fi
    cargo deny check --hide-inclusion-graph bans licenses sources
    local out rc=0
    out=$(cargo deny check --hide-inclusion-graph advisories 2>&1) || rc=$?
    if [[ $rc -ne 0 ]] && grep -q "failed to fetch advisory database" <<<"$out"; then
        echo "test: advisories NOT CHECKED: the RustSec advisory database could not be fetched"
        grep -m1 -iE "unable to access|could not resolve|failed to fetch" <<<"$out" || true
        return 0
    fi
    printf '%s\n' "$out"
    return "$rc"
}

step bash ops/services.sh build-tools test-tools all
use_kept_database_url
step bash ops/prometheus/install.sh
step promtool check config ops/prometheus/prometheus.yml
step promtool test rules ops/prometheus/alerts_test.yml
step amtool check-config ops/prometheus/alertmanager.yml
step bash ops/grafana/check-schema.sh
step python3 ops/check-manifests.py
step python3 ops/check-module-cycles.py --self-test
step python3 ops/check-module-cycles.py
step python3 ops/check-function-length.py --self-test
step python3 ops/check-function-length.py
step cargo fmt --all -- --check
step cargo clippy --workspace --all-targets -- -D warnings
step cargo build --workspace --bins
# The randomised rebuilds-during-a-live-run test runs once per seed (tests/tests/it/read_models.rs).
export OMS_REBUILD_SEEDS=${OMS_REBUILD_SEEDS:-1,2,3}
step cargo test --workspace "$@"
# The API load test loads the machine on purpose: alone, after the others (bounded: ~40 s).
step cargo test -p oms-tests --test it -- --ignored --exact \
    api::a_cache_busting_crowd_gets_429s_while_others_and_the_consumer_go_on
step bash ops/browser-test.sh
step bash ops/schemathesis.sh
step dependency_audit

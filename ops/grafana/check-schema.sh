#!/usr/bin/env bash
#
# ops/grafana/check-schema.sh - check every dashboard of ops/grafana/dashboards against
# Grafana's own dashboard schema: the `Dashboard` type of the npm package @grafana/schema
# (Apache-2.0, generated from Grafana's CUE schema), with the TypeScript compiler.
#
# Usage: bash ops/grafana/check-schema.sh        (ops/test.sh runs it)
#
# Each dashboard becomes an object literal typed `Dashboard`: a missing required field, a
# value of the wrong type or a field the schema does not know (TypeScript's excess
# property check) is an error naming the line. String enums of the schema accept their
# values as strings (as JSON writes them). A deliberately broken copy must fail too, so a
# check that accepts anything cannot pass. Needs node and npm (the npm registry); the
# packages go to a temp dir, pinned below.
set -euo pipefail

SCHEMA_VERSION=13.2.3
TYPESCRIPT_VERSION=5.9.3

root=$(cd "$(dirname "$0")/../.." && pwd)
say() { printf 'grafana schema: %s\n' "$*"; }

if ! command -v npm >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || { say "ERROR: npm not found and no apt-get" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm install --no-save --no-audit --no-fund --silent \
    "@grafana/schema@$SCHEMA_VERSION" "typescript@$TYPESCRIPT_VERSION" >/dev/null)

# Writes DASHBOARD.json as a typed literal to OUT.ts; with `broken`, adds an unknown field.
to_typescript() {
    python3 - "$1" "$2" "${3:-}" <<'PY'
import json, sys
dashboard = json.load(open(sys.argv[1]))
if sys.argv[3] == "broken":
    dashboard["panels"][0]["not_a_panel_field"] = 1
with open(sys.argv[2], "w") as out:
    out.write("import type { Dashboard } from '@grafana/schema';\n")
    out.write("type Loose<T> = T extends string ? `${T}` : T extends object ? "
              "{ [K in keyof T]: Loose<T[K]> } : T;\n")
    out.write("export const dashboard: Loose<Dashboard> = ")
    out.write(json.dumps(dashboard, indent=1))
    out.write(";\n")
PY
}

tsc() {
    (cd "$work" && node node_modules/typescript/bin/tsc --noEmit --strict --skipLibCheck \
        --module nodenext --moduleResolution nodenext "$@")
}

status=0
for file in "$root"/ops/grafana/dashboards/*.json; do
    name=$(basename "$file" .json)
    to_typescript "$file" "$work/$name.ts"
    if tsc "$name.ts"; then
        say "$name.json matches the Dashboard schema of @grafana/schema $SCHEMA_VERSION"
    else
        say "ERROR: $name.json does not match the Dashboard schema (lines of the typed copy above)" >&2
        status=1
    fi
    to_typescript "$file" "$work/$name-broken.ts" broken
    if tsc "$name-broken.ts" >/dev/null 2>&1; then
        say "ERROR: a copy of $name.json with an unknown panel field passed: the check is blind" >&2
        status=1
    fi
done
exit "$status"

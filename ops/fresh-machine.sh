#!/usr/bin/env bash
#
# ops/fresh-machine.sh - run the README's two commands, exactly as written, on a clean
# Debian 12 that has nothing but rustup's Rust toolchain, and time them.
#
# Usage: bash ops/fresh-machine.sh [a|b]...      (default: a b)
#   a   bare: no C compiler, no python3, no Redis, no MariaDB, no systemd
#   b   the packaged redis-server and mariadb-server installed and started the way their
#       init scripts do (mysqld_safe / mariadbd --user=mysql, redis-server with
#       /etc/redis/redis.conf as user redis), with their stock accounts: MariaDB's
#       root@localhost logs in only through the unix socket, as systemd would leave it
# Needs root (debootstrap, chroot, namespaces), debootstrap and socat on this machine
# (apt-get install debootstrap socat), and the Rust toolchain under ~/.rustup.
#
# What it does, for each case:
#   1. a Debian 12 root, from the archive this machine's apt uses (deb.debian.org,
#      bookworm): `debootstrap --include=ca-certificates bookworm` (default variant;
#      ca-certificates is what rustup itself needs), cached as
#      target/fresh-machine/bookworm-base.tar.gz and unpacked fresh for each case into
#      target/fresh-machine/root-CASE. apt's sources become this machine's
#      /etc/apt/sources.list.d/debian.sources (bookworm, -updates, -security).
#   2. the toolchain copied in: ~/.rustup/settings.toml, the default toolchain, the
#      rustup proxies of ~/.cargo/bin (nothing else: no registry cache, no C compiler,
#      no python). The committed tree of this repository (`git archive HEAD`) goes to
#      /root/oms, /work/shared beside it as /root/shared (as CI has it; nothing reads it).
#   3. the root runs in its own network, mount, PID and UTS namespaces (`unshare`):
#      only loopback, so nothing listens on 6379 or 3306 but what it starts; /proc,
#      /sys, /dev (with a private /dev/shm) and /run are mounted inside the mount
#      namespace only, so they vanish with it; every process left (servers) dies with
#      the PID namespace.
#   4. the relay, the only way out: a small HTTP proxy (python3, below) on this machine
#      listening on a unix socket; inside the namespace socat turns 127.0.0.1:3128 into
#      that socket. apt (Acquire::http::Proxy) and cargo ([http] proxy in
#      /root/.cargo/config.toml) use it. It forwards plain HTTP requests and CONNECTs
#      (port 443) to the package registries only: deb.debian.org, crates.io,
#      index.crates.io, static.crates.io, registry.npmjs.org (the browser test's
#      playwright-core; npm reads /root/.npmrc); anything else gets 403 (so
#      `cargo deny check advisories`, which needs GitHub, reports "NOT CHECKED").
#      Every request is logged to target/fresh-machine/relay-CASE.log. TLS is end to
#      end, so the root trusts this machine's local CAs
#      (/usr/local/share/ca-certificates, e.g. an intercepting egress proxy's).
#   5. `bash ops/demo.sh` then `bash ops/test.sh` in /root/oms, as root, with PATH
#      including ~/.cargo/bin (as `. ~/.cargo/env` leaves it), each timed; output in
#      target/fresh-machine/CASE-demo.log and CASE-test.log.
# Exit status 0 when both commands succeed in every case asked for.
# FRESH_MACHINE_REUSE=1 runs again in the root a previous run left (its packages,
# target/ and /var/lib/oms-services kept; servers are started afresh): a second run.
# FRESH_MACHINE_COMMAND=CMD runs CMD (in /root/oms) instead of the two commands (to
# look around in the root, e.g. FRESH_MACHINE_COMMAND='apt-get update').
#
# Takes long (a release build, a debug build and clippy from scratch, cargo-deny
# compiled, then the whole suite): see README "Fresh machine" for measured times.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
WORK=$REPO/target/fresh-machine
BASE_TAR=$WORK/bookworm-base.tar.gz
MIRROR=http://deb.debian.org/debian
RELAY_PORT=3128
ALLOWED_HOSTS=deb.debian.org,crates.io,index.crates.io,static.crates.io,registry.npmjs.org
RUSTUP_HOME_HOST=${RUSTUP_HOME:-$HOME/.rustup}
CARGO_HOME_HOST=${CARGO_HOME:-$HOME/.cargo}

say() { printf 'fresh-machine: %s\n' "$*"; }
fail() {
    printf 'fresh-machine: ERROR: %s\n' "$*" >&2
    exit 1
}

[[ $EUID -eq 0 ]] || fail "needs root (debootstrap, chroot, namespaces)"
for tool in debootstrap socat unshare chroot python3 git; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool not found (apt-get install debootstrap socat)"
done
[[ -f $RUSTUP_HOME_HOST/settings.toml ]] || fail "no rustup toolchain under $RUSTUP_HOME_HOST"
mkdir -p "$WORK"

# ------------------------------------------------------------------ the relay

RELAY_PY='
import asyncio, sys, time, urllib.parse

sock_path, allowed, log_path = sys.argv[1], set(sys.argv[2].split(",")), sys.argv[3]
log = open(log_path, "a", buffering=1)

def note(*parts):
    log.write(time.strftime("%H:%M:%S ") + " ".join(str(p) for p in parts) + "\n")

async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except Exception:
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass

async def refuse(writer, status, why):
    writer.write(("HTTP/1.1 %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                  % (status, len(why), why)).encode())
    await writer.drain()
    writer.close()

async def handle(client_r, client_w):
    try:
        head = await client_r.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    except Exception:
        client_w.close()
        return
    if method == "CONNECT":
        host, _, port = target.rpartition(":")
        port, first = int(port or 0), b""
        if host not in allowed or port != 443:
            note("DENY", method, target)
            return await refuse(client_w, "403 Forbidden", "relay: only package registries\n")
    else:
        url = urllib.parse.urlsplit(target)
        host, port, first = url.hostname or "", url.port or 80, head
        if url.scheme != "http" or host not in allowed:
            note("DENY", method, target)
            return await refuse(client_w, "403 Forbidden", "relay: only package registries\n")
    try:
        up_r, up_w = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
    except Exception as e:
        note("FAIL", method, target, e)
        return await refuse(client_w, "502 Bad Gateway", "relay: %s\n" % e)
    note("OK", method, target)
    if method == "CONNECT":
        client_w.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    else:
        # An origin server accepts the absolute form (RFC 9112 3.2.2): forward as is;
        # later requests on this connection go to the same host (apt: one per host).
        up_w.write(first)
    await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))

async def main():
    server = await asyncio.start_unix_server(handle, path=sock_path)
    note("listening on", sock_path, "allowed:", ",".join(sorted(allowed)))
    async with server:
        await server.serve_forever()

asyncio.run(main())
'

RELAY_PID=""
start_relay() {
    local case=$1
    RELAY_SOCK=$WORK/relay-$case.sock
    rm -f "$RELAY_SOCK"
    python3 -c "$RELAY_PY" "$RELAY_SOCK" "$ALLOWED_HOSTS" "$WORK/relay-$case.log" &
    RELAY_PID=$!
    local i
    for i in $(seq 50); do
        [[ -S $RELAY_SOCK ]] && return 0
        kill -0 "$RELAY_PID" 2>/dev/null || fail "the relay exited (see $WORK/relay-$case.log)"
        sleep 0.1
    done
    fail "the relay did not create $RELAY_SOCK"
}

stop_relay() {
    if [[ -n $RELAY_PID ]]; then
        kill "$RELAY_PID" 2>/dev/null || true
        wait "$RELAY_PID" 2>/dev/null || true
        RELAY_PID=""
    fi
}
trap stop_relay EXIT

# ------------------------------------------------------------------- the root

build_base() {
    exec 9>"$WORK/base.lock"
    flock 9
    if [[ -s $BASE_TAR ]]; then
        say "base system: cached $BASE_TAR"
        exec 9>&-
        return
    fi
    local dir=$WORK/base-build start=$SECONDS
    rm -rf "$dir"
    say "base system: debootstrap bookworm from $MIRROR (log $WORK/debootstrap.log)"
    if ! debootstrap --include=ca-certificates bookworm "$dir" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
        tail -n 20 "$WORK/debootstrap.log" >&2
        fail "debootstrap failed"
    fi
    tar -C "$dir" -czf "$BASE_TAR.tmp" .
    mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$dir"
    say "base system: built in $((SECONDS - start)) s"
    exec 9>&-
}

prepare_root() {
    local root=$1 toolchain
    rm -rf "$root"
    mkdir -p "$root"
    tar -C "$root" -xzf "$BASE_TAR"

    # apt: this machine's Debian archive, through the relay.
    rm -f "$root/etc/apt/sources.list"
    cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/debian.sources"
    printf 'Acquire::http::Proxy "http://127.0.0.1:%s";\n' "$RELAY_PORT" >"$root/etc/apt/apt.conf.d/90relay"
    printf 'fresh\n' >"$root/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 fresh\n::1 localhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
    : >"$root/etc/resolv.conf"
    # TLS goes end to end through the relay: the root trusts what this machine trusts
    # beyond Debian's CAs (e.g. the CA of an intercepting egress proxy, if any).
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
        chroot "$root" update-ca-certificates >/dev/null 2>&1
    fi

    # The Rust toolchain, as rustup installed it here (and nothing else of ~/.cargo).
    toolchain=$(sed -n 's/^default_toolchain = "\(.*\)"/\1/p' "$RUSTUP_HOME_HOST/settings.toml")
    [[ -n $toolchain && -d $RUSTUP_HOME_HOST/toolchains/$toolchain ]] || fail "no default toolchain in $RUSTUP_HOME_HOST"
    mkdir -p "$root/root/.rustup/toolchains" "$root/root/.cargo"
    cp "$RUSTUP_HOME_HOST/settings.toml" "$root/root/.rustup/"
    cp -a "$RUSTUP_HOME_HOST/toolchains/$toolchain" "$root/root/.rustup/toolchains/"
    cp -a "$CARGO_HOME_HOST/bin" "$root/root/.cargo/"
    rm -f "$root/root/.cargo/bin/cargo-deny"
    [[ -f $CARGO_HOME_HOST/env ]] && cp "$CARGO_HOME_HOST/env" "$root/root/.cargo/env"
    printf '[http]\nproxy = "http://127.0.0.1:%s"\n' "$RELAY_PORT" >"$root/root/.cargo/config.toml"
    printf 'proxy=http://127.0.0.1:%s\nhttps-proxy=http://127.0.0.1:%s\n' "$RELAY_PORT" "$RELAY_PORT" >"$root/root/.npmrc"

    # The committed tree, with /work/shared beside it.
    mkdir -p "$root/root/oms"
    git -C "$REPO" archive HEAD | tar -x -C "$root/root/oms"
    git -C "$REPO" rev-parse HEAD >"$root/root/oms/.fresh-machine-commit"
    cp -a /work/shared "$root/root/shared"
}

# Case b: what a Debian 12 with the two packages looks like after boot (no systemd in
# the root: the packages' own init scripts start them, as their users).
write_packaged_start() {
    cat >"$1/root/start-packaged-servers.sh" <<'SCRIPT'
set -euo pipefail
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server mariadb-server
# invoke-rc.d may already have started them; start is idempotent.
/etc/init.d/redis-server start
/etc/init.d/mariadb start
echo "== servers as left by their packages"
ps -o user=,pid=,args= -C redis-server,mariadbd,mysqld_safe
echo "== MariaDB accounts (stock)"
mariadb -uroot -N -e "SHOW CREATE USER 'root'@'localhost'"
echo "== root over TCP (expected to fail: socket-only)"
mariadb --protocol=TCP -h127.0.0.1 -uroot -e 'SELECT 1' 2>&1 || true
SCRIPT
}

# ------------------------------------------------------- inside the namespaces

# Runs as PID 1 of the new namespaces (unshare --fork): mounts, loopback, socat, then
# the case's commands in the chroot. Arguments: ROOT CASE RELAY_SOCK.
INSIDE='
set -euo pipefail
root=$1 case=$2 relay=$3 port=$4 work=$5
mount --make-rprivate /
ip link set lo up
hostname fresh
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
mount -t tmpfs -o mode=755 run "$root/run"
mkdir -p "$root/run/lock"
socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" "UNIX-CONNECT:$relay" &

in_root() {
    chroot "$root" /usr/bin/env -i HOME=/root USER=root LOGNAME=root TERM=dumb LANG=C.UTF-8 \
        PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        /bin/bash -c "$1"
}

timed() {
    local name=$1 log=$2 start=$SECONDS rc=0
    shift 2
    echo "fresh-machine: [$case] $name ..."
    in_root "$*" >"$log" 2>&1 || rc=$?
    echo "fresh-machine: [$case] $name: exit $rc in $((SECONDS - start)) s (log $log)"
    if ((rc != 0)); then tail -n 40 "$log" | sed "s/^/    /"; fi
    return $rc
}

if [[ $case == b ]]; then
    timed "packaged servers installed and started" "$work/b-packages.log" "bash /root/start-packaged-servers.sh"
    sed -n "/^== /,\$p" "$work/b-packages.log" | sed "s/^/    /"
fi
rc=0
if [[ -n ${FRESH_MACHINE_COMMAND:-} ]]; then
    timed "$FRESH_MACHINE_COMMAND" "$work/$case-command.log" "cd /root/oms && $FRESH_MACHINE_COMMAND" || rc=1
    cat "$work/$case-command.log"
    exit $rc
fi
timed "bash ops/demo.sh" "$work/$case-demo.log" "cd /root/oms && bash ops/demo.sh" || rc=1
timed "bash ops/test.sh" "$work/$case-test.log" "cd /root/oms && bash ops/test.sh" || rc=1
# A clean shutdown of what is left (servers: Redis saves its data, as at a reboot):
# SIGTERM to every process of this PID namespace but this one, then a bounded wait
# (the namespace SIGKILLs whatever is left when this shell exits).
kill -TERM -1 2>/dev/null || true
for _ in $(seq 300); do
    kill -0 -1 2>/dev/null || break
    sleep 0.1
done
exit $rc
'

run_case() {
    local case=$1 root=$WORK/root-$1 start=$SECONDS t
    t=$SECONDS
    if [[ -n ${FRESH_MACHINE_REUSE:-} && -d $root/root/oms ]]; then
        say "[$case] reusing $root as the last run left it (FRESH_MACHINE_REUSE)"
    else
        say "[$case] preparing $root"
        prepare_root "$root"
        if [[ $case == b ]]; then write_packaged_start "$root"; fi
    fi
    say "[$case] root ready in $((SECONDS - t)) s (commit $(cat "$root/root/oms/.fresh-machine-commit"))"
    : >"$WORK/relay-$case.log"
    start_relay "$case"
    local rc=0
    unshare --net --mount --pid --uts --fork bash -c "$INSIDE" inside \
        "$root" "$case" "$RELAY_SOCK" "$RELAY_PORT" "$WORK" || rc=$?
    stop_relay
    local denied
    denied=$(grep -c '^.\{9\}DENY' "$WORK/relay-$case.log" || true)
    say "[$case] relay: $(grep -c '^.\{9\}OK' "$WORK/relay-$case.log" || true) requests forwarded to $(sed -n 's/^.\{9\}OK [A-Z]* \(http:\/\/\)\{0,1\}\([^/:]*\).*/\2/p' "$WORK/relay-$case.log" | sort -u | tr '\n' ' ')and $denied refused$( ((denied)) && printf ' (%s)' "$(sed -n 's/^.\{9\}DENY [A-Z]* \(http:\/\/\)\{0,1\}\([^/:]*\).*/\2/p' "$WORK/relay-$case.log" | sort -u | tr '\n' ' ')")"
    say "[$case] $( ((rc == 0)) && echo PASSED || echo FAILED) in $((SECONDS - start)) s"
    return "$rc"
}

cases=("$@")
((${#cases[@]})) || cases=(a b)
for c in "${cases[@]}"; do
    [[ $c == a || $c == b ]] || fail "unknown case '$c' (a or b)"
done
build_base
status=0
for c in "${cases[@]}"; do
    run_case "$c" || status=1
done
exit "$status"

#!/usr/bin/env bash
#
# ops/services.sh - make what oms needs available, idempotently, and say what was
# done (one `services:` line each): the Redis and MariaDB/MySQL servers, and the
# tools that building and testing need.
#
# Usage:
#   ops/services.sh [TARGET...]   TARGET: all (default: redis and mysql), redis, mysql,
#                                 build-tools (a C compiler and linker: cc, libc headers),
#                                 test-tools (python3 with PyYAML, openssl, ip, and galera),
#                                 galera (the Galera provider, package galera-4, and rsync
#                                 for its state transfers: the MySQL high-availability
#                                 tests and ops/bench-galera.sh start private clusters)
#
# Environment:
#   REDIS_URL         default redis://127.0.0.1:6379   (Redis >= 6.2 is required)
#   DATABASE_URL      default: the URL kept in DIR/database-url if that file exists
#                     (see below), else mysql://root@127.0.0.1:3306/oms
#   OMS_SERVICES_DIR  DIR, default /var/lib/oms-services; private instances live in
#                     DIR/redis-PORT and DIR/mariadb-PORT
#
# What it does, per service:
#   * If the server already answers on the URL's host and port (redis: PING with
#     the URL's credentials; mysql: `SELECT 1` over TCP as the URL's user), it is
#     used as it is (Redis must be >= 6.2).
#   * Hosts that are not loopback (127.x, localhost, ::1) are only checked.
#   * Otherwise missing packages are installed with apt-get (redis-server,
#     redis-tools, mariadb-server, mariadb-client) and the server is started
#     without systemd, as its own system user (redis, mysql): Redis daemonised,
#     bound to loopback, with AOF (appendonly yes, appendfsync everysec: see
#     README "Durability"); a Redis found running without AOF gets one WARNING
#     line; MariaDB either the packaged server
#     (port 3306 with an initialised /var/lib/mysql) or a private instance with its
#     own datadir. A server that does not come up is reported with the last lines
#     of its own log and output.
#   * A MariaDB whose accounts refuse the URL's user over TCP (Debian's stock
#     root@localhost accepts only unix-socket logins, and a TCP login from
#     127.0.0.1 is matched to root@localhost) is fixed through a root login over
#     the unix socket:
#       - DATABASE_URL not set: a dedicated user `oms` (@127.0.0.1, @localhost)
#         with a generated password and ALL PRIVILEGES (the tests create and drop
#         their own databases) is created, and its URL
#         mysql://oms:PASSWORD@HOST:PORT/oms is written to DIR/database-url
#         (mode 0600, owned by the user running this script). ops/demo.sh and
#         ops/test.sh export it as DATABASE_URL when DATABASE_URL is not set;
#       - DATABASE_URL set: its user is created with its password.
# Passwords are never printed. Installing packages, starting servers as their
# users and the socket login need root (sudo -n is used when available).
set -euo pipefail

readonly DEFAULT_REDIS_URL="redis://127.0.0.1:6379"
readonly DEFAULT_DATABASE_URL="mysql://root@127.0.0.1:3306/oms"
readonly WAIT_SECONDS=30
SERVICES_DIR="${OMS_SERVICES_DIR:-/var/lib/oms-services}"
# Where the URL of a generated `oms` MySQL user is kept.
DATABASE_URL_FILE="$SERVICES_DIR/database-url"
APT_UPDATED=0

say() { printf 'services: %s\n' "$*"; }
fail() {
    printf 'services: ERROR: %s\n' "$*" >&2
    exit 1
}

# Replace the password of a URL (scheme://user:password@host) with ***.
mask_url() {
    # shellcheck disable=SC2001 # a regex is needed here
    sed -E 's#^([A-Za-z][A-Za-z0-9+.-]*://[^:@/]*):[^@/]*@#\1:***@#' <<<"$1"
}

# Decode %XX escapes of a URL component.
url_decode() {
    local s=${1//\\/\\\\}
    printf '%b' "${s//%/\\x}"
}

# parse_url URL DEFAULT_PORT: sets U_SCHEME U_USER U_PASS U_HOST U_PORT.
parse_url() {
    local url=$1 default_port=$2 authority auth hostport after
    [[ $url == *://* ]] || fail "not a URL: $(mask_url "$url")"
    U_SCHEME=${url%%://*}
    authority=${url#*://}
    authority=${authority%%[/?#]*}
    if [[ $authority == *@* ]]; then
        auth=${authority%@*}
        hostport=${authority##*@}
    else
        auth=""
        hostport=$authority
    fi
    if [[ $auth == *:* ]]; then
        U_USER=$(url_decode "${auth%%:*}")
        U_PASS=$(url_decode "${auth#*:}")
    else
        U_USER=$(url_decode "$auth")
        U_PASS=""
    fi
    if [[ $hostport == \[* ]]; then
        U_HOST=${hostport#[}
        U_HOST=${U_HOST%%]*}
        after=${hostport#*]}
        U_PORT=${after#:}
    else
        U_HOST=${hostport%%:*}
        U_PORT=${hostport#"$U_HOST"}
        U_PORT=${U_PORT#:}
    fi
    U_HOST=${U_HOST:-127.0.0.1}
    U_PORT=${U_PORT:-$default_port}
    [[ $U_PORT =~ ^[0-9]+$ ]] || fail "bad port '$U_PORT' in $(mask_url "$url")"
}

is_loopback() {
    case $1 in
    127.* | localhost | ::1 | 0:0:0:0:0:0:0:1) return 0 ;;
    *) return 1 ;;
    esac
}

# The address a server we start binds to, for a loopback host.
bind_address() {
    case $1 in
    localhost) echo 127.0.0.1 ;;
    0:0:0:0:0:0:0:1) echo ::1 ;;
    *) echo "$1" ;;
    esac
}

# host:port as printed (IPv6 in brackets).
show_addr() {
    if [[ $1 == *:* ]]; then echo "[$1]:$2"; else echo "$1:$2"; fi
}

port_open() {
    # shellcheck disable=SC2016 # $0 and $1 expand in the inner shell
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        fail "need root to run: $*"
    fi
}

# spawn_as_root LOG COMMAND...: start COMMAND as root in its own session, detached,
# stdin from /dev/null, stdout and stderr appended to LOG (so that a server failing
# before its own log is open still says why). SPAWNED_PID is COMMAND's PID when
# running as root (sudo's otherwise); nothing of this script waits for it.
SPAWNED_PID=""
spawn_as_root() {
    local log=$1
    shift
    if [[ $EUID -eq 0 ]]; then
        setsid "$@" </dev/null >>"$log" 2>&1 &
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        # shellcheck disable=SC2016 # expanded by the inner shell
        sudo -n sh -c 'log=$1; shift; exec setsid "$@" </dev/null >>"$log" 2>&1' sh "$log" "$@" &
    else
        fail "need root to run: $*"
    fi
    SPAWNED_PID=$!
}

# apt_install PACKAGE...: install with apt-get (update once per run).
apt_install() {
    command -v apt-get >/dev/null 2>&1 || fail "apt-get not found; install these packages by hand: $*"
    local log="${TMPDIR:-/tmp}/oms-services-apt.log"
    if [[ $APT_UPDATED -eq 0 ]]; then
        say "running apt-get update"
        if ! as_root apt-get update >"$log" 2>&1; then
            tail -n 20 "$log" >&2
            fail "apt-get update failed (log: $log)"
        fi
        APT_UPDATED=1
    fi
    say "installing packages: $*"
    if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        fail "apt-get install $* failed (log: $log)"
    fi
}

# wait_for DESCRIPTION LOGFILES PID CHECK...: poll CHECK every 0.2 s for up to
# WAIT_SECONDS; on timeout (or if PID, when given, dies) show the logs (LOGFILES:
# space-separated paths) and fail.
wait_for() {
    local what=$1 pid=$3 log=()
    read -ra log <<<"$2"
    shift 3
    local deadline=$((SECONDS + WAIT_SECONDS))
    while ! "$@"; do
        if [[ -n $pid && ! -d /proc/$pid ]]; then
            show_log "${log[@]}"
            fail "$what exited during startup"
        fi
        if ((SECONDS >= deadline)); then
            show_log "${log[@]}"
            fail "$what did not answer within ${WAIT_SECONDS}s"
        fi
        sleep 0.2
    done
}

# show_log FILE...: the last lines of each file (a server's own reasons).
show_log() {
    local f
    for f in "$@"; do
        [[ -n $f ]] || continue
        if [[ -r $f ]] || { [[ -e $f ]] && as_root test -r "$f" 2>/dev/null; }; then
            printf 'services: last lines of %s:\n' "$f" >&2
            as_root tail -n 20 "$f" | sed 's/^/services:   /' >&2
        else
            printf 'services: no log at %s\n' "$f" >&2
        fi
    done
}

# --------------------------------------------------------------------- redis

R_HOST="" R_PORT="" R_USER="" R_PASS="" R_TLS=()
REDIS_REPLY=""

# redis_cli ARGS...: redis-cli against the configured server, with auth.
redis_cli() {
    local cmd=(timeout 5 redis-cli -h "$R_HOST" -p "$R_PORT" "${R_TLS[@]}")
    if [[ -n $R_USER ]]; then cmd+=(--user "$R_USER"); fi
    if [[ -n $R_PASS ]]; then
        REDISCLI_AUTH=$R_PASS "${cmd[@]}" "$@"
    else
        env -u REDISCLI_AUTH "${cmd[@]}" "$@"
    fi
}

# True when PING answers PONG with the configured credentials; the reply (or
# error) is left in REDIS_REPLY.
redis_up() {
    REDIS_REPLY=$(redis_cli ping 2>&1 | tr -s '\r\n' '  ') || true
    REDIS_REPLY=${REDIS_REPLY% }
    [[ $REDIS_REPLY == PONG ]]
}

redis_check_version() {
    local version major minor rest
    version=$(redis_cli info server 2>/dev/null | tr -d '\r' | sed -n 's/^redis_version://p')
    [[ -n $version ]] || fail "redis at $(show_addr "$R_HOST" "$R_PORT") did not report its version"
    say "redis at $(show_addr "$R_HOST" "$R_PORT") is up (version $version)"
    major=${version%%.*}
    rest=${version#*.}
    minor=${rest%%.*}
    if ((major < 6 || (major == 6 && minor < 2))); then
        fail "redis at $(show_addr "$R_HOST" "$R_PORT") is version $version; oms needs Redis >= 6.2"
    fi
}

# Says how the Redis found persists; one WARNING line when it runs without AOF (a
# restart of it then loses what only Redis holds). Silent when CONFIG is not allowed.
redis_check_persistence() {
    local addr appendonly fsync
    addr=$(show_addr "$R_HOST" "$R_PORT")
    appendonly=$(redis_cli config get appendonly 2>/dev/null | tr -d '\r' | sed -n 2p) || true
    case $appendonly in
    yes)
        fsync=$(redis_cli config get appendfsync 2>/dev/null | tr -d '\r' | sed -n 2p) || true
        say "redis at $addr persists with AOF (appendfsync ${fsync:-?})"
        ;;
    no)
        printf 'services: WARNING: redis at %s runs with appendonly no: a restart of it loses every order enqueued and not yet in MySQL, until producer recover (see README "Durability": appendonly yes, appendfsync everysec)\n' "$addr" >&2
        ;;
    esac
}

ensure_redis() {
    local url=${REDIS_URL:-$DEFAULT_REDIS_URL}
    parse_url "$url" 6379
    R_HOST=$U_HOST R_PORT=$U_PORT R_USER=$U_USER R_PASS=$U_PASS
    R_TLS=()
    case $U_SCHEME in
    redis) ;;
    rediss) R_TLS=(--tls) ;;
    *) fail "REDIS_URL must start with redis:// or rediss://, got $(mask_url "$url")" ;;
    esac
    local addr
    addr=$(show_addr "$R_HOST" "$R_PORT")
    say "redis: REDIS_URL=$(mask_url "$url")"

    if ! command -v redis-cli >/dev/null 2>&1; then
        apt_install redis-tools
    fi
    if redis_up; then
        redis_check_version
        redis_check_persistence
        return
    fi
    if ! is_loopback "$R_HOST"; then
        fail "redis at $addr is not reachable (${REDIS_REPLY:-no reply}); it is not on loopback, so it is not managed here"
    fi
    if port_open "$R_HOST" "$R_PORT"; then
        fail "something listens on $addr but PING failed: ${REDIS_REPLY:-no reply} (wrong password in REDIS_URL?)"
    fi
    if ((${#R_TLS[@]})); then
        fail "redis at $addr is down and rediss:// (TLS) servers are not started here"
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        apt_install redis-server
        # The package may have started a server of its own.
        if redis_up; then
            redis_check_version
            redis_check_persistence
            return
        fi
    fi

    local dir="$SERVICES_DIR/redis-$R_PORT" bind run_as=()
    bind=$(bind_address "$R_HOST")
    # As root, the server runs as the packaged `redis` user (never as root).
    if [[ $EUID -eq 0 ]] && id redis >/dev/null 2>&1; then run_as=(runuser -u redis --); fi
    if [[ ! -d $dir ]]; then
        mkdir -p "$dir"
        say "created $dir"
    fi
    if ((${#run_as[@]})); then
        chown redis:redis "$dir"
        chmod a+x "$SERVICES_DIR"
    fi
    local args=(--daemonize yes --bind "$bind" --port "$R_PORT" --dir "$dir"
        --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" --save "" --appendonly yes --appendfsync everysec)
    if [[ -n $R_PASS ]]; then args+=(--requirepass "$R_PASS"); fi
    say "starting redis-server${run_as:+ as user redis} on $(show_addr "$bind" "$R_PORT") (dir $dir, AOF appendfsync everysec${R_PASS:+, password from REDIS_URL})"
    local out
    if ! out=$("${run_as[@]}" redis-server "${args[@]}" 2>&1); then
        printf 'services:   %s\n' "$out" >&2
        show_log "$dir/redis.log"
        fail "redis-server failed to start"
    fi
    if [[ -n $R_USER && $R_USER != default ]]; then
        # Create the ACL user of the URL, authenticating as the default user.
        local user=$R_USER
        wait_for "redis-server" "$dir/redis.log" "" port_open "$R_HOST" "$R_PORT"
        R_USER=""
        redis_cli acl setuser "$user" on ">$R_PASS" '~*' '&*' '+@all' >/dev/null
        R_USER=$user
        say "created redis ACL user '$user'"
    fi
    wait_for "redis-server" "$dir/redis.log" "" redis_up
    redis_check_version
    redis_check_persistence
}

# --------------------------------------------------------------------- mysql

M_HOST="" M_PORT="" M_USER="" M_PASS="" MYSQL_CLIENT="" MYSQL_REPLY=""
# M_URL_SOURCE: env (DATABASE_URL), file (DATABASE_URL_FILE) or default.
M_URL_SOURCE="" M_URL_USER="" M_DATABASE=""
# 1 when this run initialised the private datadir: its users may then be given
# the password of DATABASE_URL.
FRESH_DATADIR=0

find_mysql_client() {
    MYSQL_CLIENT=""
    local c
    for c in mariadb mysql; do
        if command -v "$c" >/dev/null 2>&1; then
            MYSQL_CLIENT=$c
            return 0
        fi
    done
    return 1
}

# mysql_tcp ARGS...: the client over TCP as the URL's user, ignoring option files.
mysql_tcp() {
    local cmd=("$MYSQL_CLIENT" --no-defaults --protocol=TCP -h "$M_HOST" -P "$M_PORT"
        -u "$M_USER" --connect-timeout=5 -N -B)
    if [[ -n $M_PASS ]]; then
        MYSQL_PWD=$M_PASS "${cmd[@]}" "$@"
    else
        env -u MYSQL_PWD "${cmd[@]}" "$@"
    fi
}

# True when a TCP login as the URL's user works; the output or error is left
# in MYSQL_REPLY.
mysql_login_ok() {
    MYSQL_REPLY=$(mysql_tcp -e 'SELECT 1' 2>&1) || return 1
    [[ $MYSQL_REPLY == 1 ]]
}

mysql_report_up() {
    local version
    version=$(mysql_tcp -e 'SELECT VERSION()' 2>/dev/null) || version="unknown"
    say "mysql at $(show_addr "$M_HOST" "$M_PORT") is up (version $version, user $M_USER)"
}

# Quote a string for a single-quoted SQL literal.
sql_quote() {
    local s=${1//\\/\\\\}
    printf "'%s'" "${s//\'/\\\'}"
}

# mysql_socket_root SOCKET ARGS...: the client as root over the unix socket (as
# root: Debian's root@localhost authenticates the OS user through the socket).
# SOCKET empty: the client's configured socket. SQL may come on stdin.
mysql_socket_root() {
    local sock=$1
    shift
    local cmd=("$MYSQL_CLIENT" --protocol=SOCKET -uroot --connect-timeout=5 -N -B)
    if [[ -n $sock ]]; then cmd+=(-S "$sock"); fi
    as_root env -u MYSQL_PWD "${cmd[@]}" "$@"
}

# A random password of 32 letters and digits (safe in a URL as it is).
generate_password() {
    local p=""
    while ((${#p} < 32)); do
        p+=$(head -c 64 /dev/urandom | tr -dc 'A-Za-z0-9')
    done
    printf '%s' "${p:0:32}"
}

# write_database_url URL: keep URL in DATABASE_URL_FILE, mode 0600, owned by the
# user running this script (demo.sh and test.sh read it).
write_database_url() {
    local owner
    owner="$(id -u):$(id -g)"
    as_root mkdir -p "$SERVICES_DIR"
    as_root install -m 0600 -o "${owner%:*}" -g "${owner#*:}" /dev/null "$DATABASE_URL_FILE"
    printf '%s\n' "$1" | as_root tee "$DATABASE_URL_FILE" >/dev/null
}

# The server refuses the URL's user over TCP: fix the accounts through a root
# login over the unix socket (see the header).
mysql_fix_tcp_login() {
    local sock="" private="$SERVICES_DIR/mariadb-$M_PORT/mysqld.sock" reply
    if [[ -S $private ]]; then sock=$private; fi
    local how="root over the unix socket${sock:+ $sock}"
    if ! reply=$(mysql_socket_root "$sock" -e 'SELECT 1' 2>&1); then
        fail "TCP login as '$M_USER' to $(show_addr "$M_HOST" "$M_PORT") failed (${MYSQL_REPLY:-no reply}) and $how is not possible either (${reply:-no reply}); set DATABASE_URL to an account that can log in over TCP, or run this as root"
    fi
    local generated=0
    if [[ $M_URL_SOURCE != env ]]; then
        # No DATABASE_URL given: a dedicated user with a generated password.
        generated=1
        M_USER=oms
        M_PASS=$(generate_password)
    fi
    local user pass hosts=(127.0.0.1 localhost) h sql="" accounts=()
    user=$(sql_quote "$M_USER")
    if [[ $(bind_address "$M_HOST") == ::1 ]]; then hosts+=(::1); fi
    for h in "${hosts[@]}"; do
        local account
        account="$user@$(sql_quote "$h")"
        if [[ -n $M_PASS ]]; then
            pass=$(sql_quote "$M_PASS")
            sql+="CREATE USER IF NOT EXISTS $account IDENTIFIED BY $pass; "
            if ((FRESH_DATADIR || generated)); then
                sql+="ALTER USER $account IDENTIFIED BY $pass; "
            fi
        else
            sql+="CREATE USER IF NOT EXISTS $account; "
        fi
        sql+="GRANT ALL PRIVILEGES ON *.* TO $account WITH GRANT OPTION; "
        accounts+=("'$M_USER'@'$h'")
    done
    sql+="FLUSH PRIVILEGES;"
    # The SQL (with the password) goes on stdin, never on a command line.
    if ! reply=$(mysql_socket_root "$sock" <<<"$sql" 2>&1); then
        fail "creating the MySQL user '$M_USER' via $how failed: $reply"
    fi
    local pw_note=""
    if ((generated)); then
        local url="mysql://$M_USER:$M_PASS@$(show_addr "$M_HOST" "$M_PORT")/$M_DATABASE"
        write_database_url "$url"
        pw_note=" with a generated password; DATABASE_URL=$(mask_url "$url") kept in $DATABASE_URL_FILE (mode 0600; ops/demo.sh and ops/test.sh use it when DATABASE_URL is not set)"
    elif [[ -n $M_PASS ]]; then
        pw_note=" with the password from DATABASE_URL"
        if ((FRESH_DATADIR)); then pw_note+=" (also set on existing accounts of the new datadir)"; fi
    fi
    say "TCP login as '${M_URL_USER}' failed (${MYSQL_REPLY:-no reply}); via $how created (if missing) ${accounts[*]}$pw_note, granted ALL PRIVILEGES WITH GRANT OPTION, flushed privileges"
    if ! mysql_login_ok; then
        fail "TCP login as '$M_USER' to $(show_addr "$M_HOST" "$M_PORT") still fails: $MYSQL_REPLY (does '$M_USER' already exist with another password?)"
    fi
}

mariadb_bin() {
    local c
    for c in "$@"; do
        if command -v "$c" >/dev/null 2>&1; then
            command -v "$c"
            return 0
        fi
        if [[ -x /usr/sbin/$c ]]; then
            echo "/usr/sbin/$c"
            return 0
        fi
    done
    return 1
}

start_packaged_mariadb() {
    local server=$1 log=/var/log/mysql/error.log out=/var/log/mysql/mariadbd.out
    id mysql >/dev/null 2>&1 || fail "there is no 'mysql' system user to run mariadbd as"
    as_root install -d -o mysql -g mysql -m 755 /run/mysqld
    as_root install -d -o mysql -g adm -m 2750 /var/log/mysql
    say "starting the packaged MariaDB server $server as user mysql (datadir /var/lib/mysql, port 3306, log $log)"
    spawn_as_root "$out" "$server" --user=mysql --log-error="$log"
    wait_for "mariadbd" "$log $out" "$SPAWNED_PID" port_open "$M_HOST" "$M_PORT"
    say "mariadbd is up (pid $SPAWNED_PID)"
}

start_private_mariadb() {
    local server=$1 dir="$SERVICES_DIR/mariadb-$M_PORT" bind install_db
    bind=$(bind_address "$M_HOST")
    id mysql >/dev/null 2>&1 || fail "there is no 'mysql' system user to run mariadbd as"
    if [[ ! -d $dir ]]; then
        as_root mkdir -p "$dir"
        say "created $dir"
    fi
    as_root chown -R mysql:mysql "$dir"
    if ! as_root runuser -u mysql -- test -w "$dir" 2>/dev/null; then
        as_root chmod a+x "$SERVICES_DIR"
        say "made $SERVICES_DIR traversable so that the mysql user can reach $dir"
        as_root runuser -u mysql -- test -w "$dir" || fail "the mysql user cannot write $dir"
    fi
    if [[ ! -d $dir/data/mysql ]]; then
        install_db=$(mariadb_bin mariadb-install-db mysql_install_db) || fail "mariadb-install-db not found"
        say "initialising a private MariaDB datadir $dir/data"
        if ! as_root "$install_db" --no-defaults --user=mysql --datadir="$dir/data" \
            --auth-root-authentication-method=normal --skip-test-db >"$dir/install-db.log" 2>&1; then
            show_log "$dir/install-db.log"
            fail "mariadb-install-db failed"
        fi
        as_root chown -R mysql:mysql "$dir"
        FRESH_DATADIR=1
    fi
    say "starting a private mariadbd as user mysql on $(show_addr "$bind" "$M_PORT") (datadir $dir/data, socket $dir/mysqld.sock)"
    spawn_as_root "$dir/mariadbd.out" "$server" --no-defaults --datadir="$dir/data" --port="$M_PORT" \
        --bind-address="$bind" --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" \
        --user=mysql --innodb-flush-log-at-trx-commit=1 --max-connections=500 \
        --log-error="$dir/error.log"
    wait_for "mariadbd" "$dir/error.log $dir/mariadbd.out" "$SPAWNED_PID" port_open "$M_HOST" "$M_PORT"
    say "mariadbd is up (pid $SPAWNED_PID)"
}

ensure_mysql() {
    local url
    if [[ -n ${DATABASE_URL:-} ]]; then
        url=$DATABASE_URL M_URL_SOURCE=env
    elif [[ -s $DATABASE_URL_FILE ]] && url=$(cat "$DATABASE_URL_FILE" 2>/dev/null || as_root cat "$DATABASE_URL_FILE"); then
        M_URL_SOURCE=file
        say "mysql: DATABASE_URL not set; using the one kept in $DATABASE_URL_FILE"
    else
        url=$DEFAULT_DATABASE_URL M_URL_SOURCE=default
    fi
    parse_url "$url" 3306
    M_HOST=$U_HOST M_PORT=$U_PORT M_USER=${U_USER:-root} M_PASS=$U_PASS M_URL_USER=${U_USER:-root}
    M_DATABASE=${url#*://}
    M_DATABASE=${M_DATABASE#*/}
    [[ $M_DATABASE != "${url#*://}" ]] || M_DATABASE=""
    M_DATABASE=${M_DATABASE%%[?#]*}
    M_DATABASE=${M_DATABASE:-oms}
    case $U_SCHEME in
    mysql | mariadb) ;;
    *) fail "DATABASE_URL must start with mysql://, got $(mask_url "$url")" ;;
    esac
    local addr
    addr=$(show_addr "$M_HOST" "$M_PORT")
    say "mysql: DATABASE_URL=$(mask_url "$url")"

    if ! find_mysql_client; then
        apt_install mariadb-client
        find_mysql_client || fail "no mariadb or mysql client after installing mariadb-client"
    fi
    if mysql_login_ok; then
        mysql_report_up
        return
    fi
    if ! is_loopback "$M_HOST"; then
        if port_open "$M_HOST" "$M_PORT"; then
            fail "mysql at $addr answers but TCP login as '$M_USER' failed: $MYSQL_REPLY; it is not on loopback, so it is not managed here"
        fi
        fail "mysql at $addr is not reachable; it is not on loopback, so it is not managed here"
    fi

    if ! port_open "$M_HOST" "$M_PORT"; then
        local server
        if ! server=$(mariadb_bin mariadbd mysqld) || ! mariadb_bin mariadb-install-db mysql_install_db >/dev/null; then
            apt_install mariadb-server
            server=$(mariadb_bin mariadbd mysqld) || fail "no mariadbd after installing mariadb-server"
        fi
        # The package may have started its server already.
        if ! port_open "$M_HOST" "$M_PORT"; then
            if [[ $M_PORT == 3306 && -d /var/lib/mysql/mysql ]]; then
                start_packaged_mariadb "$server"
            else
                start_private_mariadb "$server"
            fi
        fi
    fi

    if ! mysql_login_ok; then
        mysql_fix_tcp_login
    fi
    mysql_report_up
}

# --------------------------------------------------------------------- tools

# A C compiler and linker (Rust's linker driver on Linux is `cc`; build scripts of
# crates such as `ring` compile C): checked by compiling and linking a C program.
ensure_build_tools() {
    local probe="${TMPDIR:-/tmp}/oms-services-cc-probe.$$"
    cc_works() {
        command -v cc >/dev/null 2>&1 &&
            printf 'int main(void) { return 0; }\n' | cc -x c - -o "$probe" >/dev/null 2>&1
    }
    if ! cc_works; then
        apt_install gcc libc6-dev
        cc_works || { rm -f "$probe"; fail "cc cannot compile and link a C program after installing gcc libc6-dev"; }
    fi
    rm -f "$probe"
    say "build tools: $(cc --version | head -n 1)"
}

# What ops/test.sh runs besides cargo: python3 with PyYAML (ops/check-manifests.py),
# openssl (the TLS tests make their certificates), ip (network namespace tests).
ensure_test_tools() {
    local missing=()
    if ! command -v python3 >/dev/null 2>&1; then
        missing+=(python3 python3-yaml)
    elif ! python3 -c 'import yaml' >/dev/null 2>&1; then
        # Debian's python3 is externally managed (PEP 668): pip is not the way.
        missing+=(python3-yaml)
    fi
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    if ((${#missing[@]})); then
        apt_install "${missing[@]}"
        python3 -c 'import yaml' 2>/dev/null || fail "python3 cannot import yaml after installing ${missing[*]} (a python3 other than Debian's first on PATH? $(command -v python3))"
    fi
    say "test tools: $(python3 --version 2>&1), PyYAML $(python3 -c 'import yaml; print(yaml.__version__)'), $(openssl version | cut -d' ' -f1-2)"
}

# The Galera wsrep provider (Debian's galera-4 puts it in /usr/lib/galera) and rsync, the
# state-transfer method of the private clusters tests/src/galera.rs and ops/bench-galera.sh
# start; mariadbd itself comes with mariadb-server (`mysql` target, or already installed).
readonly GALERA_PROVIDER=/usr/lib/galera/libgalera_smm.so
ensure_galera() {
    local missing=()
    [[ -e $GALERA_PROVIDER ]] || missing+=(galera-4)
    command -v rsync >/dev/null 2>&1 || missing+=(rsync)
    if ((${#missing[@]})); then
        apt_install "${missing[@]}"
        [[ -e $GALERA_PROVIDER ]] || fail "$GALERA_PROVIDER is missing after installing galera-4"
    fi
    say "galera: $GALERA_PROVIDER ($(dpkg-query -W -f='${Version}' galera-4 2>/dev/null || echo 'version unknown')), $(rsync --version | awk 'NR == 1 {print $1, $3}')"
}

# ---------------------------------------------------------------------- main

main() {
    local target
    for target in "${@:-all}"; do
        case $target in
        all)
            ensure_redis
            ensure_mysql
            ;;
        redis) ensure_redis ;;
        mysql) ensure_mysql ;;
        build-tools) ensure_build_tools ;;
        test-tools)
            ensure_test_tools
            ensure_galera
            ;;
        galera) ensure_galera ;;
        -h | --help)
            sed -n '3,48p' "$0" | sed 's/^# \{0,1\}//'
            ;;
        *)
            echo "usage: $0 [all|redis|mysql|build-tools|test-tools|galera]..." >&2
            exit 2
            ;;
        esac
    done
}

main "$@"

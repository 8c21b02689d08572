# ops/scratch-env.sh - sourced by the ops scripts that run the programs against a
# throwaway database and Redis prefix: `scratch_env NAME` sets ID (random), DATABASE_URL
# (database NAME_ID on the server of DATABASE_URL, or of the URL ops/services.sh keeps, or
# the local root default), REDIS_URL (default local), OMS_PREFIX (NAME_ID:) and RUST_LOG=warn.
scratch_env() {
    local name=$1 kept mysql
    # The server of DATABASE_URL, without its database (as the tests read it).
    kept=${OMS_SERVICES_DIR:-/var/lib/oms-services}/database-url
    if [[ -z ${DATABASE_URL:-} && -r $kept ]]; then DATABASE_URL=$(<"$kept"); fi
    mysql=${DATABASE_URL:-mysql://root@127.0.0.1:3306/oms}
    mysql=${mysql%%\?*}
    if [[ ${mysql#*://} == */* ]]; then mysql=${mysql%/*}; fi
    ID=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
    export DATABASE_URL="$mysql/${name}_$ID" REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
    export OMS_PREFIX="${name}_$ID:" RUST_LOG=warn
}

#!/usr/bin/env bash
# Run the fhirhub benchmark suite: for each backend, start `fhirhub serve --workers 2` on a
# fresh database, run the HTTP scenarios at each client count, stop the server, then time an
# import of the Synthea sample. Records go to bench/results/YYYY-MM-DD-HHMM.jsonl and a
# markdown table is printed at the end. See bench/README.md.
#
# Settings (environment variables, defaults in brackets):
#   DURATION [15]  WARMUP [3]  CLIENTS ["1 16"]  SCENARIOS ["create read update search-id"]
#   BACKENDS ["sqlite postgresql"]  WORKERS [2]  POOL [1000]  IMPORT [1]
#   PG_ADMIN_URL [postgresql://postgres@127.0.0.1:5432/postgres]  PG_DB [fhirhub_bench]
#   KEEP_DB [0]  START_TIMEOUT [60]  RESULTS_DIR [bench/results]
#   PYTHON [.venv/bin/python]  FHIRHUB [.venv/bin/fhirhub]
#
# Exit status: 0 when every run was clean; 1 when a run failed or saw errors (the results
# file is still written); the server not coming up stops the suite at once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
FHIRHUB="${FHIRHUB:-$ROOT/.venv/bin/fhirhub}"
# These benchmarks measure FHIR work, not token checks (bench/auth_bench.sh measures
# those): the server runs with authorisation off unless the caller says otherwise.
export FHIRHUB_AUTH="${FHIRHUB_AUTH:-off}"
DURATION="${DURATION:-15}"
WARMUP="${WARMUP:-3}"
CLIENTS="${CLIENTS:-1 16}"
SCENARIOS="${SCENARIOS:-create read update search-id}"
BACKENDS="${BACKENDS:-sqlite postgresql}"
WORKERS="${WORKERS:-2}"
POOL="${POOL:-1000}"
IMPORT="${IMPORT:-1}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
PG_DB="${PG_DB:-fhirhub_bench}"
KEEP_DB="${KEEP_DB:-0}"
START_TIMEOUT="${START_TIMEOUT:-60}"
RESULTS_DIR="${RESULTS_DIR:-$ROOT/bench/results}"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

for exe in "$PYTHON" "$FHIRHUB"; do
    [[ -x "$exe" ]] || die "$exe is not an executable (set PYTHON / FHIRHUB, or create the venv)"
done
"$PYTHON" -c 'import aiohttp' 2>/dev/null \
    || die "aiohttp is missing: $PYTHON -m pip install -e '.[bench]'"

mkdir -p "$RESULTS_DIR"
STAMP="$(date +%Y-%m-%d-%H%M)"
RESULTS="$RESULTS_DIR/$STAMP.jsonl"
n=2
while [[ -e "$RESULTS" ]]; do RESULTS="$RESULTS_DIR/$STAMP-$n.jsonl"; n=$((n + 1)); done
: >"$RESULTS"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fhirhub-bench.XXXXXX")"

SERVER_PID=""
CHILD_PID=""
PG_CREATED=0
FAILURES=()

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_step
    stop_server
    if [[ "$PG_CREATED" == 1 && "$KEEP_DB" != 1 ]]; then
        "$PYTHON" bench/benchutil.py pg-drop "$PG_DB" --admin-url "$PG_ADMIN_URL" \
            || echo "warning: could not drop database $PG_DB" >&2
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_server() {  # backend db_url
    SERVER_LOG="$RESULTS_DIR/$(basename "$RESULTS" .jsonl)-$1-server.log"
    start_fhirhub "$2" "$SERVER_LOG" "$1"
}

run_http() {  # backend
    local backend="$1" scenario clients
    for scenario in $SCENARIOS; do
        for clients in $CLIENTS; do
            log "$backend: $scenario, $clients client(s), ${DURATION}s after ${WARMUP}s warm-up"
            step "$PYTHON" bench/loadgen.py --url "$BASE" --scenario "$scenario" \
                --clients "$clients" --duration "$DURATION" --warmup "$WARMUP" \
                --label "$backend" --json "$RESULTS" --pool-size "$POOL" \
                --pool-file "$WORK/$backend-pool.json" --server-pid "$SERVER_PID" \
                --meta "workers=$WORKERS"
            if [[ "$STEP_RC" != 0 ]]; then
                FAILURES+=("$backend $scenario clients=$clients: loadgen exit $STEP_RC")
            fi
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then
                echo "--- last lines of $SERVER_LOG:" >&2
                tail -n 40 "$SERVER_LOG" >&2 || true
                die "the $backend server died during $scenario with $clients client(s)"
            fi
        done
    done
}

log "results: $RESULTS"
for backend in $BACKENDS; do
    case "$backend" in
        sqlite)
            db="sqlite:///$WORK/serve.sqlite3"  # $WORK is absolute: sqlite:////tmp/...
            ;;
        postgresql)
            log "postgresql: (re)creating database $PG_DB"
            db="$("$PYTHON" bench/benchutil.py pg-recreate "$PG_DB" --admin-url "$PG_ADMIN_URL")" \
                || die "could not create database $PG_DB via $PG_ADMIN_URL"
            PG_CREATED=1
            ;;
        *)
            die "unknown backend '$backend' (sqlite or postgresql)"
            ;;
    esac
    start_server "$backend" "$db"
    run_http "$backend"
    stop_server
    if [[ "$IMPORT" == 1 ]]; then
        log "$backend: import benchmark"
        step "$PYTHON" bench/import_bench.py --backend "$backend" \
            --pg-admin-url "$PG_ADMIN_URL" --fhirhub "$FHIRHUB" --label "$backend" \
            --json "$RESULTS" --quiet
        [[ "$STEP_RC" == 0 ]] || FAILURES+=("$backend import: exit $STEP_RC")
    fi
done

log "results in $RESULTS"
echo
"$PYTHON" bench/report.py "$RESULTS" || true
if ((${#FAILURES[@]})); then
    printf '\n!!! %d run(s) FAILED or saw errors:\n' "${#FAILURES[@]}" >&2
    printf '!!!   %s\n' "${FAILURES[@]}" >&2
    exit 1
fi

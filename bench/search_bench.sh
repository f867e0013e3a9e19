#!/usr/bin/env bash
# The search benchmark (issue 4): for each backend and scale, import the Synthea sample
# (scale 1: 100 patients) or an N-times copy of it (bench/synthea_scale.py) into a fresh
# database, start `fhirhub serve --workers 2`, build the URL files from the data the server
# holds (bench/search_urls.py), run every search scenario at 16 clients (bench/loadgen.py
# --urls), explain the queries on PostgreSQL (bench/explain.py), stop. See bench/README.md.
#
#   BACKENDS=postgresql SCALE=10 bench/search_bench.sh
#   DURATION=3 WARMUP=1 BACKENDS=sqlite SCALE=1 bench/search_bench.sh      # a smoke run
#
# Settings (environment variables, defaults in brackets):
#   BACKENDS ["sqlite postgresql"]  SCALE ["1"] (one or more, e.g. "1 10")
#   SCENARIOS [all ten]  CLIENTS ["16"]  DURATION [15]  WARMUP [3]  SAMPLE [200]  SEED [1]
#   WORKERS [2]  JOBS [fhirhub's default]  EXPLAIN [1]  GENERIC [1]
#   PG_ADMIN_URL [postgresql://postgres@127.0.0.1:5432/postgres]  PG_DB [fhirhub_search]
#   KEEP_DB [0]  REUSE_DB [0]  START_TIMEOUT [120]  RESULTS_DIR [bench/results]
#   PYTHON [.venv/bin/python]  FHIRHUB [.venv/bin/fhirhub]
#
# KEEP_DB=1 keeps the database (PostgreSQL: PG_DB_x<scale>; SQLite: the file
# bench/data/scaled/search-x<scale>.sqlite3); REUSE_DB=1 uses such a kept database as it is,
# without importing. Exit status: 0 when every run was clean; 1 when a run failed or saw
# errors (the results file is still written); set-up failures stop the script at once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
FHIRHUB="${FHIRHUB:-$ROOT/.venv/bin/fhirhub}"
# These benchmarks measure FHIR work, not token checks (bench/auth_bench.sh measures
# those): the server runs with authorisation off unless the caller says otherwise.
export FHIRHUB_AUTH="${FHIRHUB_AUTH:-off}"
BACKENDS="${BACKENDS:-sqlite postgresql}"
SCALE="${SCALE:-1}"
ALL_SCENARIOS="s-identifier s-family-birthdate s-obs-patient-code s-obs-patient-code-date"
ALL_SCENARIOS+=" s-chain2 s-has s-include s-revinclude s-sort-deep s-total"
SCENARIOS="${SCENARIOS:-$ALL_SCENARIOS}"
CLIENTS="${CLIENTS:-16}"
DURATION="${DURATION:-15}"
WARMUP="${WARMUP:-3}"
SAMPLE="${SAMPLE:-200}"
SEED="${SEED:-1}"
WORKERS="${WORKERS:-2}"
JOBS="${JOBS:-}"
EXPLAIN="${EXPLAIN:-1}"
GENERIC="${GENERIC:-1}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
PG_DB="${PG_DB:-fhirhub_search}"
KEEP_DB="${KEEP_DB:-0}"
REUSE_DB="${REUSE_DB:-0}"
START_TIMEOUT="${START_TIMEOUT:-120}"
RESULTS_DIR="${RESULTS_DIR:-$ROOT/bench/results}"
SCALED_DIR="$ROOT/bench/data/scaled"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

for exe in "$PYTHON" "$FHIRHUB"; do
    [[ -x "$exe" ]] || die "$exe is not an executable (set PYTHON / FHIRHUB, or create the venv)"
done
"$PYTHON" -c 'import aiohttp' 2>/dev/null \
    || die "aiohttp is missing: $PYTHON -m pip install -e '.[bench]'"

mkdir -p "$RESULTS_DIR"
STAMP="$(date +%Y-%m-%d-%H%M)-search"
RESULTS="$RESULTS_DIR/$STAMP.jsonl"
n=2
while [[ -e "$RESULTS" ]]; do RESULTS="$RESULTS_DIR/$STAMP-$n.jsonl"; n=$((n + 1)); done
: >"$RESULTS"
RUN="$(basename "$RESULTS" .jsonl)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fhirhub-search-bench.XXXXXX")"

SERVER_PID=""
CHILD_PID=""
PG_CREATED=""  # the database to drop on exit
FAILURES=()

drop_pg() {
    [[ -n "$PG_CREATED" ]] || return 0
    local name="$PG_CREATED"
    PG_CREATED=""
    "$PYTHON" bench/benchutil.py pg-drop "$name" --admin-url "$PG_ADMIN_URL" \
        || echo "warning: could not drop database $name" >&2
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_step
    stop_server
    drop_pg
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dataset() {  # scale -> prints the NDJSON file to import
    local scale="$1"
    if [[ "$scale" == 1 ]]; then
        echo "$ROOT/bench/data/synthea/bundles.ndjson.gz"
    else
        "$PYTHON" bench/synthea_scale.py --copies "$scale" --if-stale | tail -n 1
    fi
}

prepare_db() {  # backend scale data -> sets DB (URL) and IMPORT_S
    local backend="$1" scale="$2" data="$3" name file t0
    IMPORT_S=""
    case "$backend" in
        sqlite)
            if [[ "$KEEP_DB" == 1 || "$REUSE_DB" == 1 ]]; then
                file="$SCALED_DIR/search-x$scale.sqlite3"
            else
                file="$WORK/search-x$scale.sqlite3"
            fi
            DB="sqlite:///$file"  # absolute path: sqlite:////...
            if [[ "$REUSE_DB" == 1 && -s "$file" ]]; then
                log "sqlite: reusing $file (REUSE_DB=1; no import)"
                return 0
            fi
            mkdir -p "$(dirname "$file")"
            rm -f "$file" "$file-wal" "$file-shm"
            ;;
        postgresql)
            name="${PG_DB}_x$scale"
            if [[ "$REUSE_DB" == 1 ]] && "$PYTHON" - "$PG_ADMIN_URL" "$name" <<'EOF'
import sys, psycopg
with psycopg.connect(sys.argv[1]) as c:
    found = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (sys.argv[2],)).fetchone()
sys.exit(0 if found else 1)
EOF
            then
                DB="$(PYTHONPATH="$ROOT/bench" "$PYTHON" -c \
                    'import sys, benchutil; print(benchutil.database_url(*sys.argv[1:]))' \
                    "$PG_ADMIN_URL" "$name")"
                log "postgresql: reusing database $name (REUSE_DB=1; no import)"
                return 0
            fi
            log "postgresql: (re)creating database $name"
            DB="$("$PYTHON" bench/benchutil.py pg-recreate "$name" --admin-url "$PG_ADMIN_URL")" \
                || die "could not create database $name via $PG_ADMIN_URL"
            [[ "$KEEP_DB" == 1 ]] || PG_CREATED="$name"
            ;;
        *)
            die "unknown backend '$backend' (sqlite or postgresql)"
            ;;
    esac
    local import_log="$RESULTS_DIR/$RUN-$backend-x$scale-import.log" ms
    log "$backend: fhirhub import $(basename "$data") (log: $import_log)"
    t0="$(date +%s%N)"
    step "$FHIRHUB" import "$data" --db "$DB" ${JOBS:+--jobs "$JOBS"} >"$import_log" 2>&1
    ms=$((($(date +%s%N) - t0) / 1000000))
    IMPORT_S="$((ms / 1000)).$((ms % 1000 / 100))"
    if [[ "$STEP_RC" != 0 ]]; then
        tail -n 30 "$import_log" >&2 || true
        die "fhirhub import into $backend failed (exit $STEP_RC)"
    fi
    grep -E '^Imported' "$import_log" >&2 || true
    echo "import wall time (this script): ${IMPORT_S}s" | tee -a "$import_log" >&2
    if [[ "$backend" == postgresql ]]; then
        log "postgresql: VACUUM ANALYZE"
        "$PYTHON" - "$DB" <<'EOF' || die "VACUUM ANALYZE failed"
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as c:
    c.execute("VACUUM (ANALYZE)")
EOF
    fi
}

start_server() {  # backend scale
    SERVER_LOG="$RESULTS_DIR/$RUN-$1-x$2-server.log"
    start_fhirhub "$DB" "$SERVER_LOG" "$1"
}

info() {  # key -> a value of the URL folder's info.json
    "$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2]) or "")' \
        "$URLS/info.json" "$1"
}

run_scenarios() {  # backend scale
    local backend="$1" scale="$2" scenario clients resources patients
    resources="$(info resources)"
    patients="$(info patients)"
    for scenario in $SCENARIOS; do
        if [[ ! -s "$URLS/$scenario.urls" ]]; then
            FAILURES+=("$backend x$scale $scenario: no URL file")
            continue
        fi
        for clients in $CLIENTS; do
            log "$backend x$scale: $scenario, $clients client(s), ${DURATION}s after ${WARMUP}s"
            step "$PYTHON" bench/loadgen.py --url "$BASE" --scenario "$scenario" \
                --urls "$URLS/$scenario.urls" --clients "$clients" --duration "$DURATION" \
                --warmup "$WARMUP" --label "$backend" --json "$RESULTS" --seed "$SEED" \
                --server-pid "$SERVER_PID" --meta suite=search --meta "scale=$scale" \
                --meta "patients=$patients" --meta "resources=$resources" \
                --meta "workers=$WORKERS" --meta "import_s=$IMPORT_S"
            if [[ "$STEP_RC" != 0 ]]; then
                FAILURES+=("$backend x$scale $scenario clients=$clients: loadgen exit $STEP_RC")
            fi
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then
                echo "--- last lines of $SERVER_LOG:" >&2
                tail -n 40 "$SERVER_LOG" >&2 || true
                die "the $backend server died during $scenario"
            fi
        done
    done
}

log "results: $RESULTS"
for scale in $SCALE; do
    [[ "$scale" =~ ^[1-9][0-9]*$ ]] || die "SCALE: whole numbers >= 1, not '$scale'"
    log "dataset for scale $scale"
    data="$(dataset "$scale")" || die "could not make the scale-$scale dataset"
    [[ -s "$data" ]] || die "no dataset at '$data'"
    for backend in $BACKENDS; do
        prepare_db "$backend" "$scale" "$data"
        start_server "$backend" "$scale"
        URLS="$RESULTS_DIR/$RUN-$backend-x$scale-urls"
        log "$backend x$scale: building the URL files in $URLS"
        step "$PYTHON" bench/search_urls.py --url "$BASE" --out "$URLS" --sample "$SAMPLE" \
            --seed "$SEED"
        [[ "$STEP_RC" == 0 ]] || FAILURES+=("$backend x$scale: search_urls.py exit $STEP_RC")
        run_scenarios "$backend" "$scale"
        stop_server
        if [[ "$backend" == postgresql && "$EXPLAIN" == 1 ]]; then
            plans="$RESULTS_DIR/$RUN-$backend-x$scale-plans.md"
            log "postgresql x$scale: query plans -> $plans"
            extra=()
            [[ "$GENERIC" == 1 ]] && extra+=(--generic)
            for scenario in $SCENARIOS; do extra+=(--scenario "$scenario"); done
            step "$PYTHON" bench/explain.py --db "$DB" --urls-dir "$URLS" --out "$plans" \
                --title "PostgreSQL plans, scale $scale ($(info patients) patients)" \
                "${extra[@]}"
            [[ "$STEP_RC" == 0 ]] || FAILURES+=("postgresql x$scale: explain.py exit $STEP_RC")
        fi
        drop_pg
    done
done

log "results in $RESULTS"
echo
"$PYTHON" bench/report.py "$RESULTS" || true
if ((${#FAILURES[@]})); then
    printf '\n!!! %d run(s) FAILED or saw errors:\n' "${#FAILURES[@]}" >&2
    printf '!!!   %s\n' "${FAILURES[@]}" >&2
    exit 1
fi

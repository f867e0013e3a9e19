#!/usr/bin/env bash
# The audit benchmark (issue 5): create and read throughput with the audit log vs. a build
# with the audit sink stubbed out (bench/fhirhub_noaudit.py), on each backend. Each run is
# one bench/run.sh (fresh database, `fhirhub serve --workers 2`, the scenarios, stop); the
# builds alternate in ORDER (audit, stub, stub, audit) to spread the machine's drift over
# both. Prints the audit-vs-stub table at the end. See bench/README.md.
#
#   bench/audit_bench.sh                      # the whole benchmark (~12 min)
#   bench/audit_bench.sh --dry-run            # the plan only
#   bench/audit_bench.sh --report FILE.jsonl  # the table of earlier results
#   DURATION=3 WARMUP=1 BACKENDS=sqlite ORDER="audit stub" CLIENTS_FIRST=16 bench/audit_bench.sh
#
# Settings (environment variables, defaults in brackets):
#   BACKENDS ["sqlite postgresql"]  ORDER ["audit stub stub audit"]  SCENARIOS ["create read"]
#   CLIENTS ["16"]  CLIENTS_FIRST ["16 1"] (the clients of each build's first run on a backend)
#   DURATION [15]  WARMUP [3]  WORKERS [2]  POOL [1000]
#   MAX_LOAD [1.0] (the 1-minute load average to wait for before starting)  LOAD_WAIT [600] s
#   BUSY_MAX [25] (% of the machine other processes may use before each run)  BUSY_WAIT [180] s
#   PG_ADMIN_URL [postgresql://postgres@127.0.0.1:5432/postgres]  PG_DB [fhirhub_audit_bench]
#   RESULTS_DIR [bench/results]  PYTHON [.venv/bin/python]
#
# Output: RESULTS_DIR/<stamp>-audit.jsonl (every record, with meta.build, meta.rep,
# meta.audit_rows: the audit_event rows the run left) and RESULTS_DIR/<stamp>-audit/ (each
# run's own records and server log). /tmp/fhirhub-bench-running exists while it runs.
# Exit status: 0 when every run was clean and the stub left no audit rows; 1 otherwise;
# 2 for a bad command line.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
parse_ab_args "$@"

PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
WRAPPER="$ROOT/bench/fhirhub_noaudit.py"
if ((${#REPORT[@]})); then
    exec "$PYTHON" "$WRAPPER" --report "${REPORT[@]}"
fi

BACKENDS="${BACKENDS:-sqlite postgresql}"
ORDER="${ORDER:-audit stub stub audit}"
SCENARIOS="${SCENARIOS:-create read}"
CLIENTS="${CLIENTS:-16}"
CLIENTS_FIRST="${CLIENTS_FIRST:-16 1}"
DURATION="${DURATION:-15}"
WARMUP="${WARMUP:-3}"
WORKERS="${WORKERS:-2}"
POOL="${POOL:-1000}"
MAX_LOAD="${MAX_LOAD:-1.0}"
LOAD_WAIT="${LOAD_WAIT:-600}"
BUSY_MAX="${BUSY_MAX:-25}"
BUSY_WAIT="${BUSY_WAIT:-180}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
PG_DB="${PG_DB:-fhirhub_audit_bench}"
RESULTS_DIR="${RESULTS_DIR:-$ROOT/bench/results}"
MARKER=/tmp/fhirhub-bench-running

for build in $ORDER; do
    [[ "$build" == audit || "$build" == stub ]] \
        || { echo "error: ORDER may hold only 'audit' and 'stub', not '$build'" >&2; exit 2; }
done
for backend in $BACKENDS; do
    [[ "$backend" == sqlite || "$backend" == postgresql ]] \
        || { echo "error: unknown backend '$backend' (sqlite or postgresql)" >&2; exit 2; }
done
for n in "$DURATION" "$WARMUP" "$WORKERS" "$POOL" $CLIENTS $CLIENTS_FIRST; do
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "error: '$n' is not a whole number" >&2; exit 2; }
done

# The plan: one line per run.sh: backend build rep clients...
PLAN=()
runs=0
load_s=0
for backend in $BACKENDS; do
    declare -A rep=([audit]=0 [stub]=0)
    for build in $ORDER; do
        rep[$build]=$((rep[$build] + 1))
        clients="$CLIENTS"
        ((rep[$build] == 1)) && clients="$CLIENTS_FIRST"
        PLAN+=("$backend $build ${rep[$build]} $clients")
        runs=$((runs + 1))
        for _ in $SCENARIOS; do
            for _ in $clients; do load_s=$((load_s + DURATION + WARMUP + 1)); done
        done
    done
    unset rep
done
estimate=$(((load_s + runs * 40) / 60 + 1))  # ~40 s a run to start (definitions) and stop

if [[ "$DRY_RUN" == 1 ]]; then
    echo "plan: ${#PLAN[@]} run(s) of bench/run.sh, about $estimate min"
    for p in "${PLAN[@]}"; do
        read -r backend build r clients <<<"$p"
        echo "$backend $build rep=$r clients=\"$clients\" scenarios=\"$SCENARIOS\"" \
             "duration=$DURATION warmup=$WARMUP workers=$WORKERS"
    done
    exit 0
fi


[[ -x "$PYTHON" ]] || die "$PYTHON is not an executable (set PYTHON, or create the venv)"
[[ -x "$WRAPPER" ]] || die "$WRAPPER is not executable"

wait_for_quiet
new_results audit
KEYS="$(mktemp -d "${TMPDIR:-/tmp}/fhirhub-audit-bench.XXXXXX")"

CHILD_PID=""
SERVER_PID=""
FAILURES=()
: >"$MARKER"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_step  # run.sh stops its server and drops its DB
    if [[ " $BACKENDS " == *" postgresql "* ]]; then
        "$PYTHON" bench/benchutil.py pg-drop "$PG_DB" --admin-url "$PG_ADMIN_URL" \
            || echo "warning: could not drop database $PG_DB" >&2
    fi
    rm -rf "$KEYS"
    rm -f "$MARKER"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "audit benchmark: ${#PLAN[@]} runs, about $estimate min; results $RESULTS (load $(load1))"
started=$SECONDS
DIRS=()
for p in "${PLAN[@]}"; do
    read -r backend build r clients <<<"$p"
    dir="$RUNS_DIR/$backend-$build-$r"
    mkdir -p "$dir"
    busy="$(busy_pct)"
    waited=0
    while ((busy > BUSY_MAX && waited < BUSY_WAIT)); do
        log "other processes use ${busy}% of the machine (> ${BUSY_MAX}%): waiting"
        sleep 12
        waited=$((waited + 15))
        busy="$(busy_pct)"
    done
    echo "$busy" >"$dir/busy-before.txt"
    log "$backend, $build build, run $r: clients \"$clients\" (machine ${busy}% busy before," \
        "load $(load1), $(((SECONDS - started) / 60)) min so far)"
    noaudit=0
    [[ "$build" == stub ]] && noaudit=1
    step env NOAUDIT="$noaudit" FHIRHUB="$WRAPPER" PYTHON="$PYTHON" BACKENDS="$backend" \
        SCENARIOS="$SCENARIOS" CLIENTS="$clients" DURATION="$DURATION" WARMUP="$WARMUP" \
        WORKERS="$WORKERS" POOL="$POOL" IMPORT=0 PG_ADMIN_URL="$PG_ADMIN_URL" PG_DB="$PG_DB" \
        KEEP_DB=0 RESULTS_DIR="$dir" FHIRHUB_AUDIT_SIGNING_KEY="$KEYS/$backend-$build-$r.pem" \
        bash bench/run.sh
    [[ "$STEP_RC" == 0 ]] || FAILURES+=("$backend $build run $r: run.sh exit $STEP_RC")
    DIRS+=("$dir")
    rows="$(grep -ho 'noaudit: audit_event rows: [0-9]*' "$dir"/*-server.log 2>/dev/null \
            | tail -n1 | grep -o '[0-9]*$' || true)"
    if [[ "$build" == stub && "$rows" != 0 ]]; then
        FAILURES+=("$backend stub run $r: the stub left '${rows:-unknown}' audit_event rows, not 0")
    elif [[ "$build" == audit && ( -z "$rows" || "$rows" == 0 ) ]]; then
        FAILURES+=("$backend audit run $r: no audit_event rows counted ('$rows')")
    fi
done

"$PYTHON" "$WRAPPER" --merge "$RESULTS" "${DIRS[@]}"
log "done in $(((SECONDS - started) / 60)) min; results in $RESULTS"
echo
"$PYTHON" "$WRAPPER" --report "$RESULTS" || true
if ((${#FAILURES[@]})); then
    printf '\n!!! %d problem(s):\n' "${#FAILURES[@]}" >&2
    printf '!!!   %s\n' "${FAILURES[@]}" >&2
    exit 1
fi

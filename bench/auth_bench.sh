#!/usr/bin/env bash
# The auth benchmark (issue 6): read throughput with token checking on (FHIRHUB_AUTH=on, a
# registered system client's bearer token, system/*.cruds, no rate limit) against off
# (FHIRHUB_AUTH=off, no token), on each backend. Each run starts `fhirhub serve --workers 2`
# on a fresh database, runs the scenarios and stops it; the modes alternate in ORDER (off,
# on, on, off) to spread the machine's drift over both. With PATIENT=1 each `on` run also
# reads with a patient's token (a trusted NHS login style issuer; the patient's own pool
# Patient, so each read adds the compartment check): records with meta.mode=patient,
# reported apart. Prints the off-vs-on table at the end. See bench/README.md.
#
#   bench/auth_bench.sh                      # the whole benchmark (~20 min)
#   bench/auth_bench.sh --dry-run            # the plan only
#   bench/auth_bench.sh --report FILE.jsonl  # the tables of earlier results
#   DURATION=3 WARMUP=1 BACKENDS=sqlite ORDER="off on" CLIENTS=16 bench/auth_bench.sh
#
# Settings (environment variables, defaults in brackets):
#   BACKENDS ["sqlite postgresql"]  ORDER ["off on on off"]  SCENARIOS ["read search-id"]
#   CLIENTS ["16 1"]  PATIENT [1] (the patient scenarios in each `on` run)
#   DURATION [15]  WARMUP [3]  WORKERS [2]  POOL [1000]  TOKEN_SECONDS [7200] (the tokens'
#   lifetime: one token lasts the whole run)  START_TIMEOUT [60]
#   MAX_LOAD [1.0] (the 1-minute load average to wait for before starting)  LOAD_WAIT [1200] s
#   LOAD_STRICT [1] (0: start anyway, with a warning, when the load stays high)
#   BUSY_MAX [25] (% of the machine other processes may use before each run)  BUSY_WAIT [180] s
#   PG_ADMIN_URL [postgresql://postgres@127.0.0.1:5432/postgres]  PG_DB [fhirhub_auth_bench]
#   RESULTS_DIR [bench/results]  PYTHON [.venv/bin/python]  FHIRHUB [.venv/bin/fhirhub]
#   SERIES [""] (a name for meta.series, to tell a second series apart in one report)
#
# Output: RESULTS_DIR/<stamp>-auth.jsonl (every record, with meta.mode off|on|patient,
# meta.rep, meta.busy, meta.load1) and RESULTS_DIR/<stamp>-auth/ (each run's server log).
# Keys and tokens live in a temporary folder, removed at the end; no token is printed.
# /tmp/fhirhub-bench-running exists while it runs. Exit status: 0 when every run was clean
# (every request answered as expected: 200 with the id); 1 otherwise; 2 for a bad command line.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
parse_ab_args "$@"

PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
FHIRHUB="${FHIRHUB:-$ROOT/.venv/bin/fhirhub}"
HELPER="$ROOT/bench/auth_micro.py"
if ((${#REPORT[@]})); then
    exec "$PYTHON" "$HELPER" --report "${REPORT[@]}"
fi

BACKENDS="${BACKENDS:-sqlite postgresql}"
ORDER="${ORDER:-off on on off}"
SCENARIOS="${SCENARIOS:-read search-id}"
CLIENTS="${CLIENTS:-16 1}"
PATIENT="${PATIENT:-1}"
DURATION="${DURATION:-15}"
WARMUP="${WARMUP:-3}"
WORKERS="${WORKERS:-2}"
POOL="${POOL:-1000}"
TOKEN_SECONDS="${TOKEN_SECONDS:-7200}"
START_TIMEOUT="${START_TIMEOUT:-60}"
MAX_LOAD="${MAX_LOAD:-1.0}"
LOAD_WAIT="${LOAD_WAIT:-1200}"
LOAD_STRICT="${LOAD_STRICT:-1}"
BUSY_MAX="${BUSY_MAX:-25}"
BUSY_WAIT="${BUSY_WAIT:-180}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgresql://postgres@127.0.0.1:5432/postgres}"
PG_DB="${PG_DB:-fhirhub_auth_bench}"
RESULTS_DIR="${RESULTS_DIR:-$ROOT/bench/results}"
SERIES="${SERIES:-}"
MARKER=/tmp/fhirhub-bench-running
SCOPE="system/*.cruds"

for mode in $ORDER; do
    [[ "$mode" == off || "$mode" == on ]] \
        || { echo "error: ORDER may hold only 'off' and 'on', not '$mode'" >&2; exit 2; }
done
for backend in $BACKENDS; do
    [[ "$backend" == sqlite || "$backend" == postgresql ]] \
        || { echo "error: unknown backend '$backend' (sqlite or postgresql)" >&2; exit 2; }
done
for scenario in $SCENARIOS; do
    [[ "$scenario" == read || "$scenario" == search-id ]] \
        || { echo "error: SCENARIOS may hold only 'read' and 'search-id', not '$scenario'" >&2
             exit 2; }
done
for n in "$DURATION" "$WARMUP" "$WORKERS" "$POOL" "$TOKEN_SECONDS" "$START_TIMEOUT" $CLIENTS; do
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "error: '$n' is not a whole number" >&2; exit 2; }
done
[[ "$PATIENT" == 0 || "$PATIENT" == 1 ]] || { echo "error: PATIENT is 0 or 1" >&2; exit 2; }

# The plan: one line per server run: backend mode rep
PLAN=()
load_s=0
per_scenario=$((DURATION + WARMUP + 1))
for backend in $BACKENDS; do
    declare -A rep=([off]=0 [on]=0)
    for mode in $ORDER; do
        rep[$mode]=$((rep[$mode] + 1))
        PLAN+=("$backend $mode ${rep[$mode]}")
        for _ in $SCENARIOS; do
            for _ in $CLIENTS; do
                load_s=$((load_s + per_scenario))
                [[ "$mode" == on && "$PATIENT" == 1 ]] && load_s=$((load_s + per_scenario))
            done
        done
    done
    unset rep
done
estimate=$(((load_s + ${#PLAN[@]} * 25) / 60 + 1))  # ~25 s a run to start, make the pool, stop

if [[ "$DRY_RUN" == 1 ]]; then
    echo "plan: ${#PLAN[@]} server run(s), about $estimate min"
    for p in "${PLAN[@]}"; do
        read -r backend mode r <<<"$p"
        extra=""
        [[ "$mode" == on && "$PATIENT" == 1 ]] && extra=" + the same as patient"
        echo "$backend $mode rep=$r: FHIRHUB_AUTH=$mode scenarios=\"$SCENARIOS\"" \
             "clients=\"$CLIENTS\"$extra duration=$DURATION warmup=$WARMUP workers=$WORKERS"
    done
    exit 0
fi


for exe in "$PYTHON" "$FHIRHUB"; do
    [[ -x "$exe" ]] || die "$exe is not an executable (set PYTHON / FHIRHUB, or create the venv)"
done
"$PYTHON" -c 'import aiohttp' 2>/dev/null \
    || die "aiohttp is missing: $PYTHON -m pip install -e '.[bench]'"

wait_for_quiet
new_results auth
: >"$RESULTS"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fhirhub-auth-bench.XXXXXX")"  # keys, tokens, databases
chmod 700 "$WORK"

CHILD_PID=""
SERVER_PID=""
PG_CREATED=0
FAILURES=()
: >"$MARKER"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_step
    stop_server
    if [[ "$PG_CREATED" == 1 ]]; then
        "$PYTHON" bench/benchutil.py pg-drop "$PG_DB" --admin-url "$PG_ADMIN_URL" \
            || echo "warning: could not drop database $PG_DB" >&2
    fi
    rm -rf "$WORK"
    rm -f "$MARKER"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# check_mode BASE MODE: the server really runs in MODE (off: every answer says
# X-Fhirhub-Auth: off; on: a read without a token is refused with 401).
check_mode() {
    "$PYTHON" - "$1" "$2" <<'EOF'
import sys
import urllib.error
import urllib.request

base, mode = sys.argv[1], sys.argv[2]
try:
    with urllib.request.urlopen(f"{base}/Patient?_count=1", timeout=30) as resp:
        status, header = resp.status, resp.headers.get("X-Fhirhub-Auth")
except urllib.error.HTTPError as exc:
    status, header = exc.code, exc.headers.get("X-Fhirhub-Auth")
ok = (status == 200 and header == "off") if mode == "off" else (status == 401 and header is None)
print(f"mode check: GET Patient without a token -> {status}, X-Fhirhub-Auth: {header}",
      file=sys.stderr)
sys.exit(0 if ok else 1)
EOF
}

# run_loadgen backend mode rep scenario clients [loadgen options...]
run_loadgen() {
    local backend="$1" mode="$2" r="$3" scenario="$4" clients="$5"
    shift 5
    log "$backend $mode run $r: $scenario, $clients client(s), ${DURATION}s after ${WARMUP}s warm-up"
    step "$PYTHON" bench/loadgen.py --url "$BASE" --scenario "$scenario" \
        --clients "$clients" --duration "$DURATION" --warmup "$WARMUP" --label "$backend" \
        --json "$RESULTS" --server-pid "$SERVER_PID" --meta "workers=$WORKERS" \
        --meta "mode=$mode" --meta "rep=$r" --meta "busy=$BUSY" --meta "load1=$LOAD1" \
        --meta "quiet_start=$QUIET" --meta "token_seconds=$TOKEN_SECONDS" \
        ${SERIES:+--meta "series=$SERIES"} "$@"
    [[ "$STEP_RC" == 0 ]] || FAILURES+=("$backend $mode run $r $scenario clients=$clients: loadgen exit $STEP_RC")
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "--- last lines of $SERVER_LOG:" >&2
        tail -n 40 "$SERVER_LOG" >&2 || true
        die "the $backend server died during $scenario with $clients client(s)"
    fi
}

log "auth benchmark: ${#PLAN[@]} server runs, about $estimate min; results $RESULTS (load $(load1))"
started=$SECONDS
for p in "${PLAN[@]}"; do
    read -r backend mode r <<<"$p"
    run="$backend-$mode-$r"
    keys="$WORK/$run"
    mkdir -p "$keys"
    BUSY="$(busy_pct)"
    waited=0
    while ((BUSY > BUSY_MAX && waited < BUSY_WAIT)); do
        log "other processes use ${BUSY}% of the machine (> ${BUSY_MAX}%): waiting"
        sleep 12
        waited=$((waited + 15))
        BUSY="$(busy_pct)"
    done
    LOAD1="$(load1)"
    log "$backend, auth $mode, run $r (machine ${BUSY}% busy before, load $LOAD1," \
        "$(((SECONDS - started) / 60)) min so far)"

    case "$backend" in
        sqlite) db="sqlite:///$keys/serve.sqlite3" ;;  # $WORK is absolute: sqlite:////tmp/...
        postgresql)
            db="$("$PYTHON" bench/benchutil.py pg-recreate "$PG_DB" --admin-url "$PG_ADMIN_URL")" \
                || die "could not create database $PG_DB via $PG_ADMIN_URL"
            PG_CREATED=1
            ;;
    esac
    # Settings of the server and of the CLI commands that write its database.
    export FHIRHUB_AUTH="$mode" FHIRHUB_AUTH_TOKEN_SECONDS="$TOKEN_SECONDS" \
        FHIRHUB_AUTH_SIGNING_KEY="$keys/auth-signing-key.pem" \
        FHIRHUB_AUDIT_SIGNING_KEY="$keys/audit-signing-key.pem"
    unset FHIRHUB_AUTH_ISSUERS FHIRHUB_BENCH_TOKEN
    if [[ "$mode" == on ]]; then
        # The client is registered in the database before the server starts.
        "$FHIRHUB" clients add "auth-bench" --scopes "$SCOPE" --generate-key "$keys/client.pem" \
            --db "$db" >"$keys/client-add.txt" || die "fhirhub clients add failed"
        client_id="$("$FHIRHUB" clients list --json --db "$db" | "$PYTHON" -c '
import json, sys
ids = [json.loads(line)["client_id"] for line in sys.stdin if line.strip()]
assert len(ids) == 1, ids
print(ids[0])')" || die "could not read the client id back"
        if [[ "$PATIENT" == 1 ]]; then
            "$PYTHON" "$HELPER" --write-issuer "$keys" >/dev/null || die "could not write the issuer"
            export FHIRHUB_AUTH_ISSUERS="$keys/issuers.json"
        fi
    fi

    SERVER_LOG="$RUNS_DIR/$run-server.log"
    start_fhirhub "$db" "$SERVER_LOG" "$backend, FHIRHUB_AUTH=$mode"
    check_mode "$BASE" "$mode" || die "the server does not run with FHIRHUB_AUTH=$mode"

    token_opts=()
    if [[ "$mode" == on ]]; then
        # The token is asked for once the server is up, as a client application would.
        (umask 077 && "$FHIRHUB" clients token "$client_id" --key "$keys/client.pem" \
            --scope "$SCOPE" --url "$BASE" >"$keys/token") || die "could not get an access token"
        token_opts=(--token-file "$keys/token")
    fi
    for scenario in $SCENARIOS; do
        for clients in $CLIENTS; do
            run_loadgen "$backend" "$mode" "$r" "$scenario" "$clients" "${token_opts[@]}" \
                --pool-size "$POOL" --pool-file "$keys/pool.json"
        done
    done
    if [[ "$mode" == on && "$PATIENT" == 1 ]]; then
        if [[ ! -s "$keys/pool.json" ]]; then
            FAILURES+=("$backend on run $r: no pool file, so no patient runs")
        else
            "$PYTHON" "$HELPER" --patient-setup "$keys" --pool-file "$keys/pool.json" \
                --seconds "$TOKEN_SECONDS" >&2 || die "could not make the patient's token"
            for scenario in $SCENARIOS; do
                for clients in $CLIENTS; do
                    run_loadgen "$backend" patient "$r" "$scenario" "$clients" \
                        --token-file "$keys/patient-token" --urls "$keys/patient-$scenario.urls"
                done
            done
        fi
    fi
    stop_server
    if grep -q "not installed" "$SERVER_LOG"; then
        FAILURES+=("$backend $mode run $r: the server could not install some definitions (see $SERVER_LOG)")
    fi
done

log "done in $(((SECONDS - started) / 60)) min; results in $RESULTS"
echo
"$PYTHON" "$HELPER" --report "$RESULTS" || true
if [[ "$QUIET" != 1 ]]; then
    echo "NOTE: the machine was not quiet at the start (load ≥ $MAX_LOAD after ${LOAD_WAIT}s)" >&2
fi
if ((${#FAILURES[@]})); then
    printf '\n!!! %d problem(s):\n' "${#FAILURES[@]}" >&2
    printf '!!!   %s\n' "${FAILURES[@]}" >&2
    exit 1
fi

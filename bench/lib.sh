# Shell helpers shared by the benchmark scripts (sourced, not run). They use the caller's
# globals: CHILD_PID and STEP_RC (step), SERVER_PID (stop_server, start_fhirhub), and
# PYTHON, FHIRHUB, WORKERS, START_TIMEOUT (start_fhirhub).

log() { printf '\n=== %s\n' "$*" >&2; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

# Run a step in the background and wait for it, so that INT/TERM reach the trap at once
# instead of after the step (bash defers traps while a foreground command runs).
# Usage: step CMD...; the step's exit status is left in STEP_RC.
step() {
    "$@" &
    CHILD_PID=$!
    STEP_RC=0
    wait "$CHILD_PID" || STEP_RC=$?
    CHILD_PID=""
}

# Stop the step in progress (CHILD_PID), if any.
stop_step() {
    if [[ -n "$CHILD_PID" ]]; then
        kill -TERM "$CHILD_PID" 2>/dev/null || true
        wait "$CHILD_PID" 2>/dev/null || true
    fi
}

stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    local pid="$SERVER_PID"
    SERVER_PID=""
    # The server runs in its own process group (setsid), so its workers go with it.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Start `fhirhub serve --db DB` on a free port in its own process group, output to LOG;
# set BASE and SERVER_PID; wait for GET $BASE/metadata, or die with the log's tail.
start_fhirhub() {  # db log label
    local db="$1" logfile="$2" label="$3" port
    port="$("$PYTHON" bench/benchutil.py free-port)"
    BASE="http://127.0.0.1:$port/fhir"
    log "$label: $FHIRHUB serve --db $db --port $port --workers $WORKERS (log: $logfile)"
    local cmd=("$FHIRHUB" serve --db "$db" --host 127.0.0.1 --port "$port" --workers "$WORKERS")
    if command -v setsid >/dev/null; then
        setsid "${cmd[@]}" >"$logfile" 2>&1 </dev/null &
    else
        "${cmd[@]}" >"$logfile" 2>&1 </dev/null &
    fi
    SERVER_PID=$!
    step "$PYTHON" bench/benchutil.py wait-http "$BASE/metadata" \
        --timeout "$START_TIMEOUT" --pid "$SERVER_PID"
    if [[ "$STEP_RC" != 0 ]]; then
        echo "--- last lines of $logfile:" >&2
        tail -n 40 "$logfile" >&2 || true
        die "fhirhub serve ($label) did not answer GET $BASE/metadata with 200"
    fi
}

# The command line of an A/B benchmark script: -h/--help (the script's header comment),
# -n/--dry-run (sets DRY_RUN=1), --report FILE... (sets REPORT).
parse_ab_args() {
    DRY_RUN=0
    REPORT=()
    while (($#)); do
        case "$1" in
            -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
            -n|--dry-run) DRY_RUN=1; shift ;;
            --report)
                shift
                (($#)) || { echo "error: --report needs a results file" >&2; exit 2; }
                REPORT=("$@"); break ;;
            *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
        esac
    done
}

load1() { cut -d' ' -f1 /proc/loadavg; }

busy_pct() {  # % of the whole machine busy over 3 s (user+nice+system+irq+softirq+steal)
    local a b
    a=($(head -n1 /proc/stat))
    sleep 3
    b=($(head -n1 /proc/stat))
    awk -v u="$((b[1] - a[1] + b[2] - a[2] + b[3] - a[3] + b[6] - a[6] + b[7] - a[7] + b[8] - a[8]))" \
        -v i="$((b[4] - a[4] + b[5] - a[5]))" 'BEGIN { t = u + i; printf "%.0f", t ? 100 * u / t : 0 }'
}

# Wait until no other benchmark runs (MARKER) and the 1-minute load is below MAX_LOAD, up
# to LOAD_WAIT seconds each; then die, or with LOAD_STRICT=0 go on (QUIET=0) for the load.
wait_for_quiet() {
    local waited
    QUIET=1
    if [[ -e "$MARKER" ]]; then
        log "another benchmark is running ($MARKER exists): waiting up to ${LOAD_WAIT}s"
        waited=0
        while [[ -e "$MARKER" ]] && ((waited < LOAD_WAIT)); do sleep 10; waited=$((waited + 10)); done
        [[ ! -e "$MARKER" ]] || die "$MARKER is still there after ${LOAD_WAIT}s; not starting"
    fi
    waited=0
    while awk -v l="$(load1)" -v m="$MAX_LOAD" 'BEGIN { exit !(l >= m) }'; do
        if ((waited >= LOAD_WAIT)); then
            [[ "${LOAD_STRICT:-1}" == 0 ]] \
                || die "the load average is still $(load1) (≥ $MAX_LOAD) after ${LOAD_WAIT}s"
            log "WARNING: the load average is still $(load1) (≥ $MAX_LOAD) after ${LOAD_WAIT}s;" \
                "starting anyway (LOAD_STRICT=0)"
            QUIET=0
            break
        fi
        ((waited % 60 == 0)) && log "load average $(load1) ≥ $MAX_LOAD: waiting (up to ${LOAD_WAIT}s)"
        sleep 15
        waited=$((waited + 15))
    done
}

# A fresh results name under RESULTS_DIR: sets STAMP, RESULTS (.jsonl) and RUNS_DIR.
new_results() {  # suffix
    local n=2
    mkdir -p "$RESULTS_DIR"
    STAMP="$(date +%Y-%m-%d-%H%M)-$1"
    while [[ -e "$RESULTS_DIR/$STAMP.jsonl" || -e "$RESULTS_DIR/$STAMP" ]]; do
        STAMP="$(date +%Y-%m-%d-%H%M)-$1-$n"; n=$((n + 1))
    done
    RESULTS="$RESULTS_DIR/$STAMP.jsonl"
    RUNS_DIR="$RESULTS_DIR/$STAMP"
    mkdir -p "$RUNS_DIR"
}

# Shell helpers shared by bench/run.sh and bench/search_bench.sh (sourced, not run).
# They use the caller's globals: CHILD_PID and STEP_RC (step), SERVER_PID (stop_server).

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

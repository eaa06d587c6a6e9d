# Phase timing for .ci/run: `begin NAME` ends the running phase (printing "phase NAME: N s") and starts
# the next; `end_phase` ends the last one; on exit, a phase still running prints its duration and the
# exit status, then the total.
PHASE=""
PHASE_START=0
TOTAL_START=$SECONDS
begin() {
    end_phase
    PHASE=$1
    PHASE_START=$SECONDS
    echo "phase $PHASE: started"
}
end_phase() {
    if [ -n "$PHASE" ]; then echo "phase $PHASE: $((SECONDS - PHASE_START)) s"; fi
    PHASE=""
}
on_exit() {
    local status=$?
    if [ -n "$PHASE" ]; then echo "phase $PHASE: $((SECONDS - PHASE_START)) s (failed, exit status $status)"; fi
    echo "ci: $((SECONDS - TOTAL_START)) s in all, exit status $status"
}
trap on_exit EXIT

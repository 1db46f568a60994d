#!/usr/bin/env bash
# Visible steps for the set-up, main and test jobs (sourced): each step prints its title, a progress line every
# 15 s while it runs (elapsed time, and the build's [n/m] compile count where there is one), and its time when
# done; its full output goes to build/logs/<name>.log. A failing step shows the tail of its log and stops the job.
#   step NAME "title" command...        output only in the log
#   live_step NAME "title" command...   output on the terminal too (tables, results)
#   step_summary                        the time of every step so far
steps_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CYCLEISP_FAST_LOGS="${CYCLEISP_FAST_LOGS:-$steps_repo/build/logs}"
mkdir -p "$CYCLEISP_FAST_LOGS"
STEP_TIMES=()

_step_seconds() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# The newest "[n/m] source" of a build log (ninja's compile count and the file it compiles), if any.
_step_progress() {
  grep -oE '^ *\[[0-9]+/[0-9]+\] .*' "$1" 2>/dev/null | tail -n 1 \
    | sed -E 's/^ *(\[[0-9]+\/[0-9]+\]).* -c ([^ ]+).*/\1 compiling \2/; s/^ *(\[[0-9]+\/[0-9]+\]) .* -o ([^ ]+\.so).*/\1 linking \2/' \
    | sed -E "s#${steps_repo}/##" | cut -c 1-100
}

_step_done() {  # name title start status
  local elapsed=$((SECONDS - $3)) log="$CYCLEISP_FAST_LOGS/$1.log"
  STEP_TIMES+=("$(printf '%-44s %8s' "$2" "$(_step_seconds "$elapsed")")")
  if [ "$4" -eq 0 ]; then
    printf '    done in %s\n' "$(_step_seconds "$elapsed")"
    return 0
  fi
  printf '\n!! %s failed after %s (exit status %s). The last lines of %s:\n' "$2" "$(_step_seconds "$elapsed")" "$4" \
    "${log#"$steps_repo"/}" >&2
  grep -v "is ignored: it is neither" "$log" | tail -n 40 >&2
  return "$4"
}

step() {
  local name="$1" title="$2" start=$SECONDS status=0 ticks=0
  shift 2
  local log="$CYCLEISP_FAST_LOGS/$name.log"
  printf '==> %s  (log: %s)\n' "$title" "${log#"$steps_repo"/}"
  "$@" > "$log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2> /dev/null; do
    sleep 1
    ticks=$((ticks + 1))
    if [ $((ticks % 15)) -eq 0 ]; then
      printf '    ... %s %s\n' "$(_step_seconds $((SECONDS - start)))" "$(_step_progress "$log")"
    fi
  done
  wait "$pid" || status=$?
  _step_done "$name" "$title" "$start" "$status"
}

live_step() {
  local name="$1" title="$2" start=$SECONDS status=0
  shift 2
  local log="$CYCLEISP_FAST_LOGS/$name.log"
  printf '==> %s  (log: %s)\n' "$title" "${log#"$steps_repo"/}"
  "$@" 2>&1 | tee "$log" || status=$?
  _step_done "$name" "$title" "$start" "$status"
}

step_summary() {
  printf '\nSteps:\n'
  printf '  %s\n' "${STEP_TIMES[@]}"
}

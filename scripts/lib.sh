# Shared by the results scripts (source it): plan runs, run them a few at a time.
#
# plan_run DIR ARGS...  prints the alseg command line of one run: nothing for a finished
#   run, `resume DIR $RESUME_ARGS` for a killed one (RESUME_ARGS: keys safe to change, e.g.
#   active.keep_checkpoints=5), else `run ARGS run_dir=DIR` (no W&B, no progress bar).
# run_plans OUT PARALLEL THREADS  runs the lines read from stdin, PARALLEL at a time with
#   OMP_NUM_THREADS=THREADS each, appending their output to OUT/log.txt.
plan_run() {
  local d=$1
  shift
  if [ -f "$d/state.json" ]; then
    grep -q '"done"' "$d/state.json" || echo "resume $d ${RESUME_ARGS:-}"
  else
    echo "run $* run_dir=$d logger=none trainer.enable_progress_bar=false"
  fi
}

# prune_plan DIR STAGE ARGS...: like plan_run, for `alseg prune` (a killed run starts afresh).
prune_plan() {
  local d=$1
  shift
  if ! grep -qs '"done"' "$d/state.json"; then
    echo "prune $* run_dir=$d logger=none trainer.enable_progress_bar=false"
  fi
}

run_plans() {
  mkdir -p "$1"
  xargs -r -P "$2" -L 1 env OMP_NUM_THREADS="$3" alseg >> "$1/log.txt" 2>&1
}

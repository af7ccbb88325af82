#!/usr/bin/env bash
# Fails when a tracked file narrates how the project was made instead of
# describing the code: work sessions, turns, issue numbers, who did what.
# The fuzz corpus and the vectors are data and are not searched.
#
#   bash .ci/process-talk.sh
#
# Prints each hit as FILE:LINE:TEXT and exits 1 if there is any, 0 if none.
set -euo pipefail
cd "$(dirname "$0")/.."

pattern='session[- ][0-9]|\bsessions [0-9]|another[ ]engineer|this[ ]guest|\bturn [0-9]|issue ?#?[0-9]|\(issue [0-9]|for[ ]issue|work[ ]period'

status=0
hits=$(git grep --perl-regexp --ignore-case --line-number -I -e "$pattern" -- . \
    ':(exclude)fuzz/corpus/' ':(exclude)vectors/' ':(exclude).ci/process-talk.sh') || status=$?

case $status in
0)
    printf '%s\n' "$hits"
    echo "process-talk: $(wc -l <<<"$hits") line(s) above narrate how the project was made;" \
        "say what the code does instead" >&2
    exit 1
    ;;
1)
    echo "process-talk: no hits"
    ;;
*)
    echo "process-talk: git grep failed (status $status)" >&2
    exit "$status"
    ;;
esac

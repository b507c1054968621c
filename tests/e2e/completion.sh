#!/bin/sh
# tests/e2e/completion.sh: the manual pages render without a warning, and the bash
# completion completes gptctl's and gptd's commands, options, pipeline files and,
# from a live daemon, run IDs.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

if ! command -v bash > /dev/null; then
  echo "1..0 # SKIP bash is not installed"
  exit 0
fi

plan 9

for page in gptd.8 gptctl.1 gptd.pipeline.5 gptd.conf.5; do
  if command -v groff > /dev/null; then
    LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$GPTD_SRCDIR/dist/man/$page" > "$TMP/groff.out" 2>&1 \
      && [ ! -s "$TMP/groff.out" ]
    ok $? "man page $page renders without a warning"
  else
    ok 0 "man page $page (groff is not installed: not rendered) # SKIP"
  fi
done

# complete WORDS...: what the completion offers for the last word of the line.
complete_line () {
  PATH="$GPTD_BUILDDIR/daemon:$PATH" bash -c '
    . "$1/dist/completion/gptctl"
    shift
    COMP_WORDS=("$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    case $1 in gptd) _gptd ;; *) _gptctl ;; esac
    printf "%s\n" "${COMPREPLY[@]}"' sh "$GPTD_SRCDIR" "$@"
}

complete_line gptctl "" > "$TMP/c1" && grep -qx run "$TMP/c1" && grep -qx watch "$TMP/c1" && grep -qx generate "$TMP/c1"
ok $? "gptctl's commands complete"
complete_line gptctl wa > "$TMP/c2" && [ "$(cat "$TMP/c2")" = watch ]
ok $? "a command's start completes to it"
(cd "$GPTD_SRCDIR/pipelines" && complete_line gptctl run he) > "$TMP/c3" && grep -qx hello.pipeline "$TMP/c3"
ok $? "gptctl run completes pipeline files"
complete_line gptd run - > /dev/null && complete_line gptd "" > "$TMP/c4" && grep -qx generate "$TMP/c4"
ok $? "gptd's subcommands complete"

start_daemon > /dev/null
ctl run "$GPTD_SRCDIR/pipelines/hello.pipeline" --wait > /dev/null 2>&1
complete_line gptctl --socket "$SOCK" status "" > "$TMP/c5" && grep -qx 1 "$TMP/c5"
ok $? "run IDs complete from the daemon's run table"
stop_daemon > /dev/null

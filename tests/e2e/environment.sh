#!/bin/sh
# tests/e2e/environment.sh: ${NAME} in a submitted pipeline reads the client's
# environment, never the daemon's. gptctl sends the variables the pipeline names;
# a variable only the daemon has is undefined, and the worker expands with what
# the client sent (recorded in run.json), also when the run is resumed.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

plan 7

printf '[pipeline]\nname=env\n\n[stage ticks]\ntype=e2e-ticker\ncount=${E2E_TICKS}\ninterval-ms=10\n\n[stage out]\ntype=dump\ninput=ticks\n' \
  > "$TMP/env.pipeline"

E2E_TICKS=7 check "gptd starts with E2E_TICKS=7 in its environment" start_daemon
unset E2E_TICKS
ctl validate "$TMP/env.pipeline" 2> "$TMP/undefined.err"
[ $? -eq 1 ] && grep -q 'E2E_TICKS' "$TMP/undefined.err"
ok $? "a variable only the daemon has is undefined for the client's pipeline"
E2E_TICKS=3 ctl run "$TMP/env.pipeline" --wait > "$TMP/run.out"
ok $? "with the client's E2E_TICKS=3 the run succeeds"
ID=$(head -n 1 "$TMP/run.out")
ctl status "$ID" | grep -q 'progress: .* 3/3'
ok $? "the worker expanded the client's value (3 ticks, not 7)"
grep -q '"E2E_TICKS=3"' "$STATE/runs/$ID/run.json"
ok $? "run.json records the variable the client sent"
! grep -q 'HOME=' "$STATE/runs/$ID/run.json"
ok $? "and only the variables the pipeline names"
check "gptd stops" stop_daemon

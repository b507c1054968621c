#!/bin/sh
# tests/e2e/gptctl.sh: gptctl's manners: each command's own --help, options a
# command does not take refused, a mistyped command answered with a suggestion,
# JSON with lower-case state names, and validate --json giving each problem field by
# field (from the daemon and from gptd validate alike).
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

plan 10

"$GPTCTL" status --help > "$TMP/h1" 2>&1 && grep -q 'gptctl status \[OPTION.*\] \[ID\]' "$TMP/h1" \
  && ! grep -q -- '--set' "$TMP/h1"
ok $? "gptctl status --help shows that command's usage and options only"
"$GPTCTL" run --help > "$TMP/h2" 2>&1 && grep -q -- '--set' "$TMP/h2" && grep -q -- '--wait' "$TMP/h2"
ok $? "gptctl run --help lists --set and --wait"
"$GPTCTL" generate --help > "$TMP/h3" 2>&1 && grep -q -- '--temperature' "$TMP/h3"
ok $? "gptctl generate --help lists the sampling options"

"$GPTCTL" --socket "$SOCK" ps --wait > /dev/null 2> "$TMP/e1"
[ $? -eq 2 ] && grep -q 'Unknown option --wait' "$TMP/e1" && grep -q "gptctl ps --help" "$TMP/e1"
ok $? "an option the command does not take is a usage error pointing to its --help"
"$GPTCTL" --socket "$SOCK" stauts 1 > /dev/null 2> "$TMP/e2"
[ $? -eq 2 ] && grep -q "unknown command 'stauts' (did you mean 'status'?)" "$TMP/e2"
ok $? "a mistyped command gets the closest command as a suggestion"

start_daemon > /dev/null
ctl run "$GPTD_SRCDIR/pipelines/hello.pipeline" --wait > /dev/null 2>&1
ctl --json ps > "$TMP/ps.json" && grep -q '"state" : "succeeded"' "$TMP/ps.json"
ok $? "ps --json names the state in lower case"
ctl ps --json > "$TMP/ps2.json" && cmp -s "$TMP/ps.json" "$TMP/ps2.json"
ok $? "--json may come before or after the command"

printf '[pipeline]\nname=bad\n\n[stage a]\ntype=text-source\npaht=x\n' > "$TMP/bad.pipeline"
ctl validate --json "$TMP/bad.pipeline" > "$TMP/v.json"
[ $? -eq 1 ] && grep -q '"valid" : false' "$TMP/v.json" && grep -q '"line" : 6' "$TMP/v.json" \
  && grep -q '"stage" : "a"' "$TMP/v.json" && grep -q '"key" : "paht"' "$TMP/v.json" \
  && grep -q "\"file\" : \"$TMP/bad.pipeline\"" "$TMP/v.json" && grep -q "\"message\" : \"stage type text-source has no key 'paht'" "$TMP/v.json"
ok $? "gptctl validate --json gives each problem's file, line, stage, key and message"
"$GPTD" validate --json "$TMP/bad.pipeline" > "$TMP/v2.json"
[ $? -eq 1 ] && grep -q '"line" : 6' "$TMP/v2.json" && grep -q '"key" : "paht"' "$TMP/v2.json"
ok $? "gptd validate --json gives the same details"
ctl run "$TMP/bad.pipeline" > /dev/null 2> "$TMP/run.err"
[ $? -eq 1 ] && grep -q "bad.pipeline:6: stage a: key paht" "$TMP/run.err"
ok $? "gptctl run of an invalid pipeline prints each problem"
stop_daemon > /dev/null

#!/bin/sh
# tests/e2e/config.sh: gptd.conf. Bad files stop gptd at start with the file, line
# and what is wrong; a good one sets the socket and state directory; the command
# line wins over it; SIGHUP reads it again, applying and logging what changed, and
# a file broken meanwhile leaves the old settings in force. The shipped sample is
# valid as it is.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

plan 16

CONF="$TMP/gptd.conf"

# bad_config DESCRIPTION PATTERN: gptd --config refuses $CONF with exit 2, saying PATTERN.
bad_config () {
  timeout 20 "$GPTD" --config "$CONF" > /dev/null 2> "$TMP/bad.err"
  status=$?
  [ $status -eq 2 ] && grep -q "$2" "$TMP/bad.err"
  ok $? "$1"
  [ $status -eq 2 ] || diag "exit $status: $(cat "$TMP/bad.err")"
}

printf '[gptd]\n# the cache\nmodel-cahe=3\n' > "$CONF"
bad_config "an unknown key is named with its line and the closest key" \
  "gptd.conf:3: unknown key model-cahe (did you mean model-cache?)"
printf '[gptd]\nstop-timeout=ten\n' > "$CONF"
bad_config "a value that is not a number is named with its line and the range" \
  "gptd.conf:2: stop-timeout=ten: give a whole number from 0 to 86400"
printf '[gptd]\nmodel-cache=0\n' > "$CONF"
bad_config "a value out of range is refused" "gptd.conf:2: model-cache=0"
printf '[gptd]\nstate-dir=relative/dir\n' > "$CONF"
bad_config "a relative path is refused" "gptd.conf:2: state-dir=relative/dir: give an absolute path"
printf '[gptd]\n\nmax-runs=0\n' > "$CONF"
bad_config "max-runs=0 is refused with its line and range" \
  "gptd.conf:3: max-runs=0: give a whole number from 1 to 1024"
printf '[gptd]\nthreads=-2\n' > "$CONF"
bad_config "a negative threads= is refused" "gptd.conf:2: threads=-2: give a whole number from 1"
printf '[gptd]\nallow-users=root,no-such-user-here\n' > "$CONF"
bad_config "allow-users= naming an unknown user is refused, naming it" \
  "gptd.conf:2: allow-users=root,no-such-user-here: there is no user no-such-user-here"
printf '[gptd]\nallow-users=@no-such-group-here\n' > "$CONF"
bad_config "allow-users= naming an unknown group is refused, naming it" \
  "gptd.conf:2: allow-users=@no-such-group-here: there is no group no-such-group-here"
printf '[daemon]\nsocket=/x\n' > "$CONF"
bad_config "an unknown group is refused" "gptd.conf:1: unknown group \[daemon\]"

timeout 20 "$GPTD" --config "$TMP/missing.conf" > /dev/null 2> "$TMP/missing.err"
[ $? -eq 2 ] && grep -q "missing.conf" "$TMP/missing.err"
ok $? "a --config file that does not exist is an error naming it"

# The shipped sample, every key commented out, loads: a daemon starts with it.
start_daemon --config "$GPTD_SRCDIR/dist/gptd.conf"
ok $? "the shipped dist/gptd.conf loads"
stop_daemon
DPID=

# A good file: the socket and state directory come from it.
printf '[gptd]\nsocket=%s\nstate-dir=%s\nmodel-cache=2\nstop-timeout=10\n' "$SOCK" "$STATE" > "$CONF"
"$GPTD" --config "$CONF" >> "$TMP/daemon.log" 2>&1 &
DPID=$!
i=0
until ctl ping > /dev/null 2>&1 || [ $i -gt 100 ]; do i=$((i + 1)); sleep 0.1; done
ctl ping > /dev/null 2>&1 && [ -d "$STATE/runs" ]
ok $? "gptd listens on the socket and keeps its state where the file says"

printf '[gptd]\nsocket=%s\nstate-dir=%s\nmodel-cache=5\nstop-timeout=10\nlog-level=debug\nmax-runs=3\n' \
  "$SOCK" "$STATE" > "$CONF"
kill -HUP "$DPID"
sleep 1
grep -q 'reloaded: model-cache: 2 -> 5' "$TMP/daemon.log" && grep -q 'reloaded: log-level: (default) -> debug' "$TMP/daemon.log" \
  && grep -q 'reloaded: max-runs: (default) -> 3$' "$TMP/daemon.log" \
  && ctl status | grep -q 'at most 3 run(s) at once'
ok $? "SIGHUP reads the file again and logs each change"
printf '[gptd]\nsocket=%s\nstate-dir=%s/other\n' "$SOCK" "$STATE" > "$CONF"
kill -HUP "$DPID"
sleep 1
grep -q "state-dir: $STATE -> $STATE/other (takes effect when gptd restarts)" "$TMP/daemon.log"
ok $? "a change that needs a restart is logged as such"
printf '[gptd]\nmodel-cache=many\n' > "$CONF"
kill -HUP "$DPID"
sleep 1
grep -q 'Reloading the configuration failed, keeping the old one: .*gptd.conf:2: model-cache=many' "$TMP/daemon.log" \
  && ctl ping > /dev/null 2>&1
ok $? "a broken file on reload is logged and the daemon serves on"
stop_daemon

# The command line wins over the file.
printf '[gptd]\nsocket=%s/elsewhere.sock\nstate-dir=%s\n' "$TMP" "$STATE" > "$CONF"
"$GPTD" --config "$CONF" --socket "$SOCK" >> "$TMP/daemon.log" 2>&1 &
DPID=$!
i=0
until ctl ping > /dev/null 2>&1 || [ $i -gt 100 ]; do i=$((i + 1)); sleep 0.1; done
ctl ping > /dev/null 2>&1 && [ ! -e "$TMP/elsewhere.sock" ]
ok $? "--socket on the command line wins over the file's socket"
stop_daemon

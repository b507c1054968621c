#!/bin/sh
# tests/e2e/systemd.sh: gptd with systemd's tools (no systemd as PID 1 needed): the
# units pass `systemd-analyze verify` and meet the exposure goal of
# `systemd-analyze security` (2.0 at most); under `systemd-socket-activate` gptd
# takes the socket it is passed, serves on it, tells READY=1 and WATCHDOG=1 to the
# NOTIFY_SOCKET the test listens on, STOPPING=1 on SIGTERM, and leaves the socket
# file to its owner.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

if ! command -v systemd-analyze > /dev/null || ! command -v systemd-socket-activate > /dev/null; then
  echo "1..0 # SKIP systemd-analyze or systemd-socket-activate is not installed"
  exit 0
fi
if ! grep -q '^#define HAVE_SYSTEMD 1' "$GPTD_BUILDDIR/config.h"; then
  echo "1..0 # SKIP gptd was built without libsystemd"
  exit 0
fi

plan 9

# The units as installed, naming this build's gptd.
UNITS="$TMP/units"
mkdir -p "$UNITS"
sed "s|@bindir@|$GPTD_BUILDDIR/daemon|" "$GPTD_SRCDIR/dist/gptd.service.in" > "$UNITS/gptd.service"
cp "$GPTD_SRCDIR/dist/gptd.socket" "$UNITS/gptd.socket"
(cd "$UNITS" && systemd-analyze verify --man=no gptd.service gptd.socket) > "$TMP/verify.out" 2>&1
status=$?
[ $status -eq 0 ] && [ ! -s "$TMP/verify.out" ]
ok $? "systemd-analyze verify passes the units without a message"
[ -s "$TMP/verify.out" ] && diag "$(cat "$TMP/verify.out")"

systemd-analyze security --offline=true "$UNITS/gptd.service" > "$TMP/security.out" 2>&1
level=$(sed -n 's/.*Overall exposure level for gptd.service: \([0-9.]*\).*/\1/p' "$TMP/security.out")
diag "exposure level: $level"
[ -n "$level" ] && awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }'
ok $? "systemd-analyze security rates the service's exposure 2.0 or less"

# Socket activation: the activator owns the socket, gptd is started on it.
"$GPTD_BUILDDIR/tests/e2e/e2e-notify" "$TMP/notify" 60 > "$TMP/notify.out" &
NPID=$!
sleep 0.2
NOTIFY_SOCKET="$TMP/notify" WATCHDOG_USEC=400000 systemd-socket-activate -l "$SOCK" \
  -E NOTIFY_SOCKET -E WATCHDOG_USEC -E GPTD_PLUGIN_PATH \
  "$GPTD" --state-dir "$STATE" --stop-timeout 10 >> "$TMP/daemon.log" 2>&1 &
DPID=$!
i=0
until ctl ping > /dev/null 2>&1 || [ $i -gt 100 ]; do i=$((i + 1)); sleep 0.1; done
ctl ping > /dev/null 2>&1
ok $? "gptd started by systemd-socket-activate answers on the socket it was passed"
ctl run "$GPTD_SRCDIR/pipelines/hello.pipeline" --wait > "$TMP/hello.out" 2>&1
ok $? "it runs a pipeline submitted there"
grep -q "passed by systemd" "$TMP/daemon.log"
ok $? "its log says the socket came from systemd"
sleep 0.6
grep -q 'READY=1' "$TMP/notify.out" && grep -q "MAINPID=$DPID" "$TMP/notify.out"
ok $? "it sends READY=1 with its MAINPID"
grep -q 'WATCHDOG=1' "$TMP/notify.out"
ok $? "it pings the watchdog at the interval WATCHDOG_USEC asks"
stop_daemon
ok $? "SIGTERM stops it with exit status 0"
wait "$NPID" 2>/dev/null
grep -q 'STOPPING=1' "$TMP/notify.out" && [ -S "$SOCK" ]
ok $? "it sends STOPPING=1 and leaves the activator's socket file in place"

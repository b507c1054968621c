#!/bin/sh
# tests/e2e/owners.sh: who may do what. Two users made for the test (skipped
# unless run as root) reach a root daemon through the socket's group. Each run
# records its owner: ps shows it; the worker runs with the owner's uid and the
# run directory is theirs; another user may not cancel, pause, resume, watch or
# read the logs of it (exit 5, naming the owner), the owner and root may. A
# serving worker runs with its user's uid. A daemon that is not root serves only
# its own user and root, unless allow-users= lends its rights to others.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

if [ "$(id -u)" -ne 0 ] || ! command -v useradd > /dev/null || ! command -v runuser > /dev/null \
   || ! command -v setpriv > /dev/null; then
  echo "1..0 # SKIP needs root, useradd, runuser and setpriv"
  exit 0
fi

plan 23

GPTD_PLUGIN_PATH="$GPTD_BUILDDIR/plugins/generate/.libs:$GPTD_PLUGIN_PATH"
export GPTD_PLUGIN_PATH

U1=gptdt1-$$
U2=gptdt2-$$
G=gptdtg-$$
groupadd "$G" && useradd -M -N -g "$G" -s /bin/sh "$U1" && useradd -M -N -g "$G" -s /bin/sh "$U2"
ok $? "two users made for the test ($U1, $U2), in group $G"
remove_users () {
  userdel "$U1" 2>/dev/null
  userdel "$U2" 2>/dev/null
  groupdel "$G" 2>/dev/null
}
trap 'cleanup; remove_users' EXIT
chmod 0755 "$TMP"

# as USER CMD...: a command with that user's rights.
as () { u=$1; shift; runuser -u "$u" -- "$@"; }
actl () { u=$1; shift; as "$u" timeout 60 "$GPTCTL" --socket "$SOCK" "$@"; }
uid_of () { sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$1/status"; }

check "a root gptd starts" start_daemon
chgrp "$G" "$SOCK"

ticker_pipeline "$TMP/long.pipeline" long count=600 interval-ms=100
chmod 0644 "$TMP/long.pipeline"
ID=$(actl "$U1" run "$TMP/long.pipeline")
ok $? "$U1 submits a run through the socket's group"
wait_state "$ID" running 20
PID=$(sed -n 's/^ *"pid" *: *\([0-9]*\).*/\1/p' "$STATE/runs/$ID/status.json")
[ "$(uid_of "$PID")" = "$(id -u "$U1")" ]
ok $? "its worker runs with $U1's uid"
[ "$(stat -c %U "$STATE/runs/$ID")" = "$U1" ]
ok $? "the run directory is $U1's"
ctl ps | grep -q "^$ID  *running  *$U1 "
ok $? "ps shows the owner"
grep -q "\"owner\" : \"$U1\"" "$STATE/runs/$ID/status.json"
ok $? "status.json records it"

for what in cancel pause resume logs watch; do
  actl "$U2" $what "$ID" > /dev/null 2> "$TMP/refused.err"
  st=$?
  [ $st -eq 5 ] && grep -q "Run $ID belongs to $U1 (uid $(id -u "$U1")): only its owner or root may" "$TMP/refused.err"
  ok $? "$U2 may not $what $U1's run (exit $st)"
done
actl "$U2" ps > /dev/null
ok $? "$U2 may list the runs"
actl "$U1" logs "$ID" > /dev/null
ok $? "the owner may read its logs"
actl "$U1" pause "$ID" > /dev/null && [ "$(run_state "$ID")" = paused ]
ok $? "the owner may pause it"
ctl resume "$ID" > /dev/null && wait_state "$ID" running 20
ok $? "root may resume it"
PID=$(sed -n 's/^ *"pid" *: *\([0-9]*\).*/\1/p' "$STATE/runs/$ID/status.json")
[ "$(uid_of "$PID")" = "$(id -u "$U1")" ]
ok $? "resumed by root, it still runs with its owner's uid"
actl "$U1" cancel "$ID" > /dev/null && [ "$(run_state "$ID")" = cancelled ]
ok $? "the owner may cancel it"

MODEL="$GPTD_SRCDIR/tests/golden/generate/model"
actl "$U2" generate --model "$MODEL" --max-new-tokens 4 "hello" > /dev/null
SP=$(for d in /proc/[0-9]*; do
       [ "$(awk '{ print $4 }' "$d/stat" 2>/dev/null)" = "$DPID" ] \
         && tr '\0' ' ' < "$d/cmdline" 2>/dev/null | grep -q -- '--serve ' && basename "$d"
     done)
[ -n "$SP" ] && [ "$(uid_of "$SP")" = "$(id -u "$U2")" ]
ok $? "$U2's generation ran in a serving worker with $U2's uid"
# Checking a submitted pipeline reads the files it names with the client's
# rights, not the daemon's: a model only root may read cannot be checked by U1.
mkdir -m 0700 "$TMP/secret" && cp -r "$MODEL" "$TMP/secret/model"
printf '[pipeline]\nname=g\n\n[stage generate]\ntype=generator\nmodel=%s\nprompt=hi\ncontext-length=8\n' \
  "$TMP/secret/model" > "$TMP/secret.pipeline"
chmod 0644 "$TMP/secret.pipeline"
ctl validate "$TMP/secret.pipeline" > /dev/null
st_root=$?
actl "$U1" validate "$TMP/secret.pipeline" > /dev/null 2> "$TMP/secret.err"
st_u1=$?
[ $st_root -eq 0 ] && [ $st_u1 -eq 1 ] && grep -q "key model: $TMP/secret/model" "$TMP/secret.err"
ok $? "a pipeline naming a model only root may read checks for root, not for $U1 (exit $st_root, $st_u1)"
[ $st_u1 -eq 1 ] || diag "$(cat "$TMP/secret.err")"
check "gptd stops" stop_daemon

# --- a daemon that is not root ------------------------------------------------------
mkdir -p "$TMP/u1" && chown "$U1" "$TMP/u1"
USOCK="$TMP/u1/gptd.sock"
printf '[gptd]\nallow-users=%s\n' "$U2" > "$TMP/allow.conf"
setpriv --reuid "$U1" --regid "$G" --clear-groups "$GPTD" --socket "$USOCK" --state-dir "$TMP/u1/state" >> "$TMP/daemon.log" 2>&1 &
UPID=$!
i=0
while ! as "$U1" "$GPTCTL" --socket "$USOCK" ping > /dev/null 2>&1 && [ "$i" -lt 100 ]; do
  sleep 0.1
  i=$((i + 1))
done
chmod 0777 "$TMP/u1" "$USOCK"
as "$U2" timeout 20 "$GPTCTL" --socket "$USOCK" ps > /dev/null 2> "$TMP/other.err"
[ $? -eq 5 ] && grep -q "serves only that user, root and the users its configuration lists in allow-users=" "$TMP/other.err"
ok $? "a daemon run by $U1 refuses $U2, saying why"
kill -TERM "$UPID"; wait "$UPID"
setpriv --reuid "$U1" --regid "$G" --clear-groups "$GPTD" --config "$TMP/allow.conf" --socket "$USOCK" --state-dir "$TMP/u1/state" \
  >> "$TMP/daemon.log" 2>&1 &
UPID=$!
i=0
while ! as "$U1" "$GPTCTL" --socket "$USOCK" ping > /dev/null 2>&1 && [ "$i" -lt 100 ]; do
  sleep 0.1
  i=$((i + 1))
done
chmod 0777 "$USOCK"
as "$U2" timeout 20 "$GPTCTL" --socket "$USOCK" ps > /dev/null
ok $? "with allow-users=$U2 it serves $U2"
kill -TERM "$UPID"; wait "$UPID"

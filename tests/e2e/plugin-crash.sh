#!/bin/sh
# tests/e2e/plugin-crash.sh: a plugin that crashes while it is loaded does not stop
# the service. With GPTD_TEST_CRASH_ON_LOAD=1, testplugin-crash raises SIGSEGV in
# its constructor: gptd probes the plugins in a child first, names the plugin in
# its log, skips it (and so do its workers), lists it among the skipped plugins,
# runs pipelines, and survives a SIGHUP rescan, which probes again.
. "${GPTD_SRCDIR:-.}/tests/e2e/lib.sh"

plan 15

HELLO=$(realpath -s "${E2E_HELLO_PIPELINE:-$GPTD_SRCDIR/pipelines/hello.pipeline}")
GPTD_PLUGIN_PATH="$GPTD_PLUGIN_PATH:$GPTD_BUILDDIR/tests/.libs"
GPTD_TEST_CRASH_ON_LOAD=1
export GPTD_PLUGIN_PATH GPTD_TEST_CRASH_ON_LOAD
unset GPTD_PLUGIN_EXCLUDE
CRASH_RE='plugin [^ ]*/testplugin-crash\.so crashed while loading (.*): skipped'

# crash_lines: how many times the log names the crashing plugin.
crash_lines () { grep -c "$CRASH_RE" "$TMP/daemon.log"; }

# --- the probe itself -------------------------------------------------------------
GPTD_TEST_CRASH_ON_LOAD=0 "$GPTD" --probe-plugins > "$TMP/probe.out" 2> "$TMP/probe.err"
[ $? -eq 0 ] && [ "$(tail -n 1 "$TMP/probe.out")" = done ] \
  && grep -q '^loading .*/testplugin-crash\.so$' "$TMP/probe.out" \
  && grep -q '^loaded .*/testplugin-crash\.so$' "$TMP/probe.out" \
  && grep -q '^failed .*/testplugin-wrong-abi\.so: .*ABI 99' "$TMP/probe.out"
ok $? "gptd --probe-plugins names each file before and after loading it, then says done"
"$GPTD" --probe-plugins > "$TMP/probe.out" 2> "$TMP/probe.err"
[ $? -ne 0 ] && tail -n 1 "$TMP/probe.out" | grep -q '^loading .*/testplugin-crash\.so$'
ok $? "with GPTD_TEST_CRASH_ON_LOAD=1 it dies, its last line naming the plugin"

# --- the daemon ---------------------------------------------------------------------
check "gptd starts and answers ping although a plugin crashes while loading" start_daemon
[ "$(crash_lines)" -eq 1 ]
ok $? "its log names the crashing plugin once, with what killed the probe"
grep "$CRASH_RE" "$TMP/daemon.log" | sed 's/^/# /'
grep -q 'Plugin skipped: .*testplugin-crash\.so: skipped: listed in GPTD_PLUGIN_EXCLUDE' "$TMP/daemon.log" \
  && grep -q 'Plugin skipped: .*testplugin-wrong-abi\.so' "$TMP/daemon.log"
ok $? "the log also lists the plugins the scan skipped or rejected"

ctl plugins > "$TMP/plugins.out" 2>&1
grep -q 'dump' "$TMP/plugins.out" && grep -q 'e2e-ticker' "$TMP/plugins.out" \
  && grep -q 'test-counter' "$TMP/plugins.out"
ok $? "gptctl plugins lists the stage types of the other plugins"
grep -q 'testplugin-crash\.so: skipped: listed in GPTD_PLUGIN_EXCLUDE' "$TMP/plugins.out" \
  && ! grep -q 'test-idle' "$TMP/plugins.out"
ok $? "and names the crashing plugin among the skipped ones, without its stage type"

ctl run "$HELLO" --wait > "$TMP/hello.out" 2>&1
ok $? "hello.pipeline runs through the daemon (run --wait exits 0)"
tail -n 1 "$TMP/hello.out" | grep -q '^run 1 succeeded'
ok $? "its worker skipped the plugin too: run 1 succeeded"

# --- SIGHUP -----------------------------------------------------------------------
kill -HUP "$DPID"
i=0
while ! grep -q 'stage type(s) loaded' "$TMP/daemon.log" && [ "$i" -lt 300 ] && alive "$DPID"; do
  i=$((i + 1))
  sleep 0.1
done
alive "$DPID" && grep -q 'stage type(s) loaded' "$TMP/daemon.log"
ok $? "SIGHUP rescans the plugins and gptd lives on"
[ "$(crash_lines)" -eq 2 ]
ok $? "the rescan probed again and named the plugin again"
ctl ping > /dev/null && ctl ps | grep -q '^1  *succeeded'
ok $? "gptd answers ping and ps after the rescan"
ctl plugins | grep -q 'testplugin-crash\.so: skipped'
ok $? "the rescanned plugin list still names the skipped plugin"
ctl run "$HELLO" --wait > "$TMP/hello2.out" 2>&1 && tail -n 1 "$TMP/hello2.out" | grep -q '^run 2 succeeded'
ok $? "a run after the rescan succeeds"

stop_daemon
ok $? "SIGTERM stops gptd with exit status 0"

/* test-runner-stages.c: the core plugin's stages run by the runner — text-source
 * (chunking on UTF-8 boundaries, lists and globs, empty files, invalid UTF-8 named by
 * file and byte offset, replacement) and dump (one JSON line per message) — and the
 * generic message-to-JSON conversion they rely on. text-source runs alone in a
 * GptdHarness; its Documents are checked in their JSON form, as dump prints them. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <gptd/harness.h>
#include <gptd/message-json.h>

#include "test-pipeline-util.h"

static GptdRegistry *registry;

typedef struct {
  char *dir;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  f->dir = g_dir_make_tmp ("gptd-test-stages-XXXXXX", NULL);
  g_assert_nonnull (f->dir);
}

static void
remove_tree (const char *dir)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d)))
    {
      g_autofree char *path = g_build_filename (dir, name, NULL);
      if (g_file_test (path, G_FILE_TEST_IS_DIR))
        remove_tree (path);
      else
        g_unlink (path);
    }
  g_rmdir (dir);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  remove_tree (f->dir);
  g_free (f->dir);
}

static char *
write_file (Fixture *f, const char *name, const char *data, gssize len)
{
  char *path = g_build_filename (f->dir, name, NULL);
  g_assert_true (g_file_set_contents (path, data, len, NULL));
  return path;
}

/* Runs text-source with @read_keys (newline-separated key=value) in the fixture
 * directory, so that relative paths are found there. Returns its Documents as JSON
 * objects, or NULL when the run failed (@error set, without a stage name: the
 * harness runs the one stage). Its log lines ("LEVEL: message") and progress
 * reports land in @ev. */
static GPtrArray *
run_read (Fixture *f, const char *read_keys, TestEvents *ev, GError **error)
{
  g_auto (GStrv) params = g_strsplit (read_keys, "\n", -1);
  g_autofree char *cwd = g_get_current_dir ();
  g_assert_cmpint (g_chdir (f->dir), ==, 0);
  g_autoptr (GptdHarness) h = gptd_harness_new ("text-source", (const char *const *) params,
                                                error);
  g_assert_nonnull (h);
  gboolean ok = gptd_harness_run (h, error);
  g_assert_cmpint (g_chdir (cwd), ==, 0);
  for (const char *const *l = gptd_harness_get_logs (h); *l; l++)
    g_ptr_array_add (ev->logs, g_strdup (*l));
  ev->progress = gptd_harness_get_n_progress (h);
  if (!ok)
    return NULL;

  GPtrArray *objects = g_ptr_array_new_with_free_func ((GDestroyNotify) json_object_unref);
  GptdHarnessMessage *msg;
  while ((msg = gptd_harness_pull (h, "default")) != NULL)
    {
      g_assert_true (msg->descriptor == &gptd__document__descriptor);
      g_autoptr (JsonNode) node = gptd_message_to_json (msg, FALSE);
      g_ptr_array_add (objects, json_object_ref (json_node_get_object (node)));
      gptd_harness_message_free (msg);
    }
  return objects;
}

static gint64
int_member (JsonObject *o, const char *name)
{
  return json_object_has_member (o, name) ? json_object_get_int_member (o, name) : 0;
}

static gboolean
bool_member (JsonObject *o, const char *name)
{
  return json_object_has_member (o, name) && json_object_get_boolean_member (o, name);
}

static const char *
string_member (JsonObject *o, const char *name)
{
  return json_object_has_member (o, name) ? json_object_get_string_member (o, name) : "";
}

/* ---- text-source ------------------------------------------------------------- */

/* A file of multi-byte characters read in 16-byte chunks: no chunk splits a
 * character, the chunks put together are the file, offsets add up, only the last
 * chunk says last. */
static void
test_chunking (Fixture *f, gconstpointer data)
{
  GString *content = g_string_new (NULL);
  for (int i = 0; i < 40; i++)
    g_string_append (content, "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xf0\x9f\x98\x80!\n");
  g_autofree char *path = write_file (f, "text.txt", content->str, (gssize) content->len);
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) docs = run_read (f, "path=text.txt\nchunk-size=16", &ev, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (docs->len, >, content->len / 16);
  g_autoptr (GString) joined = g_string_new (NULL);
  for (guint i = 0; i < docs->len; i++)
    {
      JsonObject *d = docs->pdata[i];
      const char *text = string_member (d, "text");
      g_assert_true (g_utf8_validate (text, -1, NULL));
      g_assert_cmpuint (strlen (text), <=, 16);
      if (i + 1 < docs->len)
        g_assert_cmpuint (strlen (text), >=, 13);   /* cut at most 3 bytes early */
      g_assert_cmpint (int_member (d, "offset"), ==, (gint64) joined->len);
      g_assert_cmpstr (string_member (d, "source"), ==, path);
      g_assert_cmpint (int_member (d, "index"), ==, 0);
      g_assert_true (bool_member (d, "last") == (i == docs->len - 1));
      g_string_append (joined, text);
    }
  g_assert_cmpstr (joined->str, ==, content->str);
  g_assert_cmpint (test_events_find_prefix (&ev, "info: read 1 file, "), >=, 0);
  g_assert_cmpuint (ev.progress, >=, 1);
  g_string_free (content, TRUE);
  test_events_clear (&ev);
}

/* A comma-separated list with a glob: files in order, each with its index; an empty
 * file is one empty, last Document. */
static void
test_files_and_glob (Fixture *f, gconstpointer data)
{
  g_autofree char *a = write_file (f, "a.txt", "alpha", -1);
  g_autofree char *b = write_file (f, "b.txt", "", -1);
  g_autofree char *c = write_file (f, "c.md", "gamma", -1);
  g_autofree char *sub = g_build_filename (f->dir, "sub.txt", NULL);
  g_mkdir (sub, 0755);   /* a directory the glob matches: skipped */
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) docs = run_read (f, "path=c.md, *.txt\nlabel=spam", &ev, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (docs->len, ==, 3);
  const char *paths[] = { c, a, b };
  const char *texts[] = { "gamma", "alpha", "" };
  for (guint i = 0; i < 3; i++)
    {
      JsonObject *d = docs->pdata[i];
      g_assert_cmpstr (string_member (d, "source"), ==, paths[i]);
      g_assert_cmpstr (string_member (d, "text"), ==, texts[i]);
      g_assert_cmpint (int_member (d, "index"), ==, i);
      g_assert_true (bool_member (d, "last"));
      g_assert_cmpstr (string_member (d, "label"), ==, "spam");
    }
  test_events_clear (&ev);
}

static void
test_invalid_utf8 (Fixture *f, gconstpointer data)
{
  /* 40 good bytes, then a byte that never starts a character. */
  GString *content = g_string_new ("0123456789012345678901234567890123456789");
  g_string_append (content, "\xff tail");
  g_autofree char *path = write_file (f, "bad.txt", content->str, (gssize) content->len);
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) docs = run_read (f, "path=bad.txt\nchunk-size=16", &ev, &error);
  g_assert_null (docs);
  g_assert_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT);
  g_autofree char *want = g_strdup_printf ("%s: invalid UTF-8 at byte offset 40",
                                           path);
  g_assert_true (g_str_has_prefix (error->message, want));
  g_string_free (content, TRUE);
  test_events_clear (&ev);
}

/* A character cut short by the end of the file is invalid too. */
static void
test_truncated_character (Fixture *f, gconstpointer data)
{
  g_autofree char *path = write_file (f, "cut.txt", "abc\xe2\x9c", 5);
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) docs = run_read (f, "path=cut.txt", &ev, &error);
  g_assert_null (docs);
  g_assert_nonnull (strstr (error->message, "invalid UTF-8 at byte offset 3"));
  test_events_clear (&ev);
}

/* NUL is valid UTF-8 (U+0000): read as it is, not refused nor replaced. */
static void
test_nul_bytes (Fixture *f, gconstpointer data)
{
  g_autofree char *path = write_file (f, "nul.txt", "ab\0cd\n", 6);
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) docs = run_read (f, "path=nul.txt", &ev, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (docs->len, ==, 1);
  test_events_clear (&ev);

  /* With invalid=replace, only the invalid byte after the NUL is replaced. */
  g_autofree char *bad = write_file (f, "nul-bad.txt", "ab\0cd\xff", 6);
  test_events_init (&ev);
  g_autoptr (GPtrArray) fixed = run_read (f, "path=nul-bad.txt\ninvalid=replace", &ev, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (fixed->len, ==, 1);
  g_autofree char *warning = g_strdup_printf ("warning: %s: invalid UTF-8 from byte offset 5",
                                             bad);
  g_assert_cmpint (test_events_find_prefix (&ev, warning), >=, 0);
  test_events_clear (&ev);
}

static void
test_invalid_replace (Fixture *f, gconstpointer data)
{
  g_autofree char *path = write_file (f, "bad.txt", "abc\xff" "def\xc3", 8);
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) docs = run_read (f, "path=bad.txt\ninvalid=replace", &ev, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (docs->len, ==, 1);
  g_assert_cmpstr (string_member (docs->pdata[0], "text"), ==,
                   "abc\xef\xbf\xbd" "def\xef\xbf\xbd");
  g_autofree char *warning = g_strdup_printf ("warning: %s: invalid UTF-8 from byte offset 3",
                                             path);
  g_assert_cmpint (test_events_find_prefix (&ev, warning), >=, 0);
  test_events_clear (&ev);
}

/* Loads [read] text-source with @read_keys (the pipeline file in the fixture
 * directory); returns the load error. */
static GError *
load_read_error (Fixture *f, const char *read_keys)
{
  g_autofree char *text = g_strdup_printf ("[pipeline]\nname=stages\n"
                                           "[stage read]\ntype=text-source\n%s\n"
                                           "[stage out]\ntype=dump\ninput=read\n", read_keys);
  g_autofree char *filename = g_build_filename (f->dir, "test.pipeline", NULL);
  GError *error = NULL;
  g_autoptr (GptdPipeline) p = gptd_pipeline_load_data (registry, text, -1, filename, NULL,
                                                        NULL, &error);
  g_assert_null (p);
  return error;
}

/* Missing files are found when the pipeline loads (gptd validate says so), before
 * anything runs. */
static void
test_missing_files (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = load_read_error (f, "path=nope.txt");
  g_autofree char *missing = g_build_filename (f->dir, "nope.txt", NULL);
  g_autofree char *want = g_strdup_printf (":3: stage read: %s: ", missing);
  g_assert_nonnull (strstr (error->message, want));
  g_clear_error (&error);

  error = load_read_error (f, "path=*.none");
  g_assert_nonnull (strstr (error->message, "no file matches"));
  g_clear_error (&error);

  /* One missing item of a list is enough. */
  g_autofree char *there = g_build_filename (f->dir, "there.txt", NULL);
  g_assert_true (g_file_set_contents (there, "x", -1, NULL));
  error = load_read_error (f, "path=there.txt,gone.txt");
  g_assert_nonnull (strstr (error->message, "gone.txt"));
}

/* ---- dump ------------------------------------------------------------------------- */

static void
test_dump_with_type (Fixture *f, gconstpointer data)
{
  /* dump alone, fed one Document, writing to a file. */
  g_autofree char *out = g_build_filename (f->dir, "out.jsonl", NULL);
  g_autofree char *out_key = g_strconcat ("path=", out, NULL);
  const char *params[] = { out_key, "with-type=true", "all-fields=1", NULL };
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdHarness) h = gptd_harness_new ("dump", params, &error);
  g_assert_no_error (error);
  Gptd__Document doc = GPTD__DOCUMENT__INIT;
  doc.source = (char *) "a.txt";
  doc.text.data = (guint8 *) "hi";
  doc.text.len = 2;
  g_assert_true (gptd_harness_push (h, "default", &doc.base));
  g_assert_true (gptd_harness_run (h, &error));
  g_assert_no_error (error);
  g_autofree char *contents = NULL;
  g_assert_true (g_file_get_contents (out, &contents, NULL, NULL));
  /* One message, one line. */
  g_assert_true (g_str_has_suffix (contents, "}\n"));
  g_assert_true (strchr (contents, '\n') == contents + strlen (contents) - 1);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_assert_true (json_parser_load_from_data (parser, contents, -1, NULL));
  JsonObject *o = json_node_get_object (json_parser_get_root (parser));
  g_assert_cmpstr (string_member (o, "type"), ==, "gptd.Document");
  JsonObject *m = json_object_get_object_member (o, "message");
  g_assert_cmpstr (string_member (m, "text"), ==, "hi");
  /* all-fields: default values are printed too. */
  g_assert_true (json_object_has_member (m, "offset"));
  g_assert_cmpstr (string_member (m, "label"), ==, "");
  g_autofree char *log = g_strdup_printf ("info: wrote 1 message to %s", out);
  g_assert_true (g_str_has_prefix (gptd_harness_get_logs (h)[0], log));
}

/* Batches (repeated fields) from the test batcher through dump. */
static void
test_dump_batches (Fixture *f, gconstpointer data)
{
  g_autofree char *text = g_strdup_printf ("[pipeline]\nname=b\n"
                                           "[stage c]\ntype=test-counter\ncount=3\nlog=false\n"
                                           "[stage b]\ntype=test-batcher\ninput=c\n"
                                           "[stage out]\ntype=dump\ninput=b\npath=%s/b.jsonl\n",
                                           f->dir);
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  g_assert_true (test_run_pipeline (registry, text, 0, &ev, &error));
  g_assert_no_error (error);
  g_autofree char *out = g_build_filename (f->dir, "b.jsonl", NULL);
  g_autofree char *contents = NULL;
  g_assert_true (g_file_get_contents (out, &contents, NULL, NULL));
  g_assert_cmpstr (contents, ==,
                   "{\"batches\":2,\"batch_size\":2,\"inputs\":[0,1]}\n"
                   "{\"index\":1,\"batches\":2,\"batch_size\":2,\"inputs\":[2]}\n");
  test_events_clear (&ev);
}

/* ---- Messages as JSON ---------------------------------------------------------------- */

static JsonObject *
to_object (const ProtobufCMessage *m, gboolean all)
{
  g_autofree char *s = gptd_message_to_json_string (m, all, FALSE);
  g_test_message ("%s", s);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_assert_true (json_parser_load_from_data (parser, s, -1, NULL));
  return json_object_ref (json_node_get_object (json_parser_get_root (parser)));
}

static void
test_message_json (void)
{
  /* A oneof holding a nested message; an enum; NaN; 64-bit integers. */
  Gptd__Progress p = GPTD__PROGRESS__INIT;
  p.stage = (char *) "train";
  p.step = G_GUINT64_CONSTANT (5000000000);
  p.loss = 2.5;
  p.val_loss = NAN;
  Gptd__Event ev = GPTD__EVENT__INIT;
  ev.seq = 3;
  ev.body_case = GPTD__EVENT__BODY_PROGRESS;
  ev.progress = &p;
  g_autoptr (JsonObject) o = to_object (&ev.base, FALSE);
  g_assert_cmpint (json_object_get_int_member (o, "seq"), ==, 3);
  g_assert_false (json_object_has_member (o, "run_id"));   /* "" is left out */
  g_assert_false (json_object_has_member (o, "log"));      /* the oneof's other members */
  JsonObject *po = json_object_get_object_member (o, "progress");
  g_assert_cmpstr (json_object_get_string_member (po, "stage"), ==, "train");
  g_assert_cmpint (json_object_get_int_member (po, "step"), ==, G_GINT64_CONSTANT (5000000000));
  g_assert_cmpfloat (json_object_get_double_member (po, "loss"), ==, 2.5);
  g_assert_true (json_object_get_null_member (po, "val_loss"));

  Gptd__StateChange sc = GPTD__STATE_CHANGE__INIT;
  sc.state = GPTD__RUN_STATE__RUN_STATE_FAILED;
  g_autoptr (JsonObject) so = to_object (&sc.base, TRUE);
  g_assert_cmpstr (json_object_get_string_member (so, "state"), ==, "failed");
  g_assert_cmpstr (json_object_get_string_member (so, "error"), ==, "");
  g_assert_cmpint (json_object_get_int_member (so, "exit_code"), ==, 0);

  /* Bytes that are not UTF-8 become base64; repeated fields arrays. */
  Gptd__Document d = GPTD__DOCUMENT__INIT;
  guint8 raw[] = { 0xff, 0x00, 0x41 };
  d.text.data = raw;
  d.text.len = sizeof raw;
  g_autoptr (JsonObject) dobj = to_object (&d.base, FALSE);
  JsonObject *b64 = json_object_get_object_member (dobj, "text");
  g_assert_cmpstr (json_object_get_string_member (b64, "base64"), ==, "/wBB");

  Gptd__Tokens t = GPTD__TOKENS__INIT;
  guint32 ids[] = { 15496, 11, 4294967295u };
  t.ids = ids;
  t.n_ids = 3;
  g_autoptr (JsonObject) tobj = to_object (&t.base, FALSE);
  JsonArray *arr = json_object_get_array_member (tobj, "ids");
  g_assert_cmpuint (json_array_get_length (arr), ==, 3);
  g_assert_cmpint (json_array_get_int_element (arr, 2), ==, 4294967295);

  /* Unsigned 64-bit values: numbers up to 2^63 - 1, decimal strings above. */
  Gptd__EpochRequest r = GPTD__EPOCH_REQUEST__INIT;
  r.seed = G_MAXUINT64;
  r.start = (guint64) G_MAXINT64;
  g_autoptr (JsonObject) robj = to_object (&r.base, FALSE);
  g_assert_cmpstr (json_object_get_string_member (robj, "seed"), ==, "18446744073709551615");
  g_assert_cmpint (json_object_get_int_member (robj, "start"), ==, G_MAXINT64);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  registry = test_registry ();
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/stages/text-source/chunking", test_chunking);
  ADD ("/stages/text-source/files-and-glob", test_files_and_glob);
  ADD ("/stages/text-source/invalid-utf8", test_invalid_utf8);
  ADD ("/stages/text-source/truncated-character", test_truncated_character);
  ADD ("/stages/text-source/invalid-replace", test_invalid_replace);
  ADD ("/stages/text-source/nul-bytes", test_nul_bytes);
  ADD ("/stages/text-source/missing-files", test_missing_files);
  ADD ("/stages/dump/with-type", test_dump_with_type);
  ADD ("/stages/dump/batches", test_dump_batches);
  g_test_add_func ("/stages/message-json", test_message_json);
  int rc = g_test_run ();
  gptd_registry_free (registry);
  return rc;
}

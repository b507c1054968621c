/* tests/test-table-source.c: the table-source stage run in pipelines — TSV rows
 * (quotes kept as text, CRLF line ends, blank lines, a byte-order mark), CSV with
 * RFC 4180 quoting (commas, "" and newlines inside quoted fields, line numbers
 * after a multi-line record), columns chosen by index or header name, labels=,
 * invalid UTF-8 replaced; bad input (an unknown label, too few columns, an empty
 * text or label, an unclosed quote, text after a closing quote, invalid UTF-8, an
 * unknown column name) stopping the run with an error naming file and line; bad
 * keys rejected when the pipeline loads; labels carried by bpe-tokenizer to its
 * Tokens; and, when $GPTD_DATA_DIR is set, the whole SMS Spam Collection. The stage
 * runs alone in a GptdHarness, except where the test is about the pipeline.
 */
#include "config.h"

#include <string.h>

#include <json-glib/json-glib.h>

#include <gptd/harness.h>

#include "test-pipeline-util.h"
#include "test-bpe-util.h"

static GptdRegistry *registry;

typedef struct {
  char *dir;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  f->dir = g_dir_make_tmp ("gptd-test-table-XXXXXX", NULL);
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
write_file (Fixture *f, const char *name, const char *text, gssize len)
{
  char *path = g_build_filename (f->dir, name, NULL);
  g_assert_true (g_file_set_contents (path, text, len, NULL));
  return path;
}

/* What one table-source run gave: its Documents and its log lines. */
typedef struct {
  GPtrArray *docs;   /* Gptd__Document */
  GStrv logs;        /* "LEVEL: message" */
} Table;

static void
table_free (Table *t)
{
  g_ptr_array_unref (t->docs);
  g_strfreev (t->logs);
  g_free (t);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Table, table_free)

/* Runs table-source over @path with the extra keys @keys (newline-separated
 * key=value); NULL when the run failed, *error set. */
static Table *
read_table (Fixture *f, const char *path, const char *keys, GError **error)
{
  g_autoptr (GPtrArray) params = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (params, g_strconcat ("path=", path, NULL));
  g_auto (GStrv) lines = g_strsplit (keys, "\n", -1);
  for (guint i = 0; lines[i]; i++)
    if (lines[i][0])
      g_ptr_array_add (params, g_strdup (lines[i]));
  g_ptr_array_add (params, NULL);
  g_autoptr (GptdHarness) h = gptd_harness_new ("table-source",
                                                (const char *const *) params->pdata, error);
  g_assert_nonnull (h);
  if (!gptd_harness_run (h, error))
    return NULL;
  Table *t = g_new0 (Table, 1);
  t->docs = g_ptr_array_new_with_free_func ((GDestroyNotify) gptd_harness_message_free);
  GptdHarnessMessage *msg;
  while ((msg = gptd_harness_pull (h, "default")) != NULL)
    {
      g_assert_true (msg->descriptor == &gptd__document__descriptor);
      g_ptr_array_add (t->docs, msg);
    }
  t->logs = g_strdupv ((char **) gptd_harness_get_logs (h));
  return t;
}

/* Checks Document @i: its text, label, index and source (FILE:LINE). */
static void
check_doc (GPtrArray *docs, guint i, const char *path, guint line, const char *label,
           const char *text)
{
  const Gptd__Document *d = docs->pdata[i];
  g_autofree char *source = g_strdup_printf ("%s:%u", path, line);
  g_assert_cmpstr (d->source, ==, source);
  g_assert_cmpstr (d->label, ==, label);
  g_assert_cmpuint (d->index, ==, i);
  g_assert_true (d->last);
  g_autofree char *got = g_strndup ((const char *) d->text.data, d->text.len);
  g_assert_cmpuint (strlen (got), ==, d->text.len);
  g_assert_cmpstr (got, ==, text);
}

static void
test_tsv (Fixture *f, gconstpointer data)
{
  /* A byte-order mark, a CRLF line end, quotes inside a message (no quoting in TSV),
   * a blank line in the middle and an extra column after the text. */
  const char *content =
    "\xEF\xBB\xBFham\tGo until jurong point, \"crazy\".. Available\r\n"
    "spam\t\"Free\" entry in 2 a wkly comp\n"
    "\n"
    "ham\tOk lar... Joking wif u oni...\textra\n"
    "spam\tWINNER!! caf\xC3\xA9";
  g_autofree char *path = write_file (f, "sms.tsv", content, -1);
  g_autoptr (GError) error = NULL;
  g_autoptr (Table) t = read_table (f, path, "labels=ham,spam\n", &error);
  g_assert_no_error (error);
  GPtrArray *docs = t->docs;
  g_assert_cmpuint (docs->len, ==, 4);
  check_doc (docs, 0, path, 1, "ham", "Go until jurong point, \"crazy\".. Available");
  check_doc (docs, 1, path, 2, "spam", "\"Free\" entry in 2 a wkly comp");
  check_doc (docs, 2, path, 4, "ham", "Ok lar... Joking wif u oni...");
  check_doc (docs, 3, path, 5, "spam", "WINNER!! caf\xC3\xA9");
  g_autofree char *log = g_strdup_printf ("info: read 4 rows from %s: ham 2, spam 2", path);
  g_assert_true (g_strv_contains ((const char *const *) t->logs, log));
}

static void
test_csv (Fixture *f, gconstpointer data)
{
  /* A header; the text is column 1 and the label column 3, found by name; quoted
   * fields with commas, "" and a newline; a CRLF file; the line of each row is
   * where it starts. */
  const char *content =
    "message,id,category\r\n"
    "\"Hello, world\",1,greeting\r\n"
    "\"She said \"\"hi\"\"\nand left\",2,story\r\n"
    "plain text,3,\"greeting\"\r\n"
    "\"\"\"quoted\"\" start\",4,story";
  g_autofree char *path = write_file (f, "data.csv", content, -1);
  static const char *const key_sets[] = {
    "format=csv\nheader=true\nlabel-column=category\ntext-column=message\n",
    "format=csv\nheader=true\nlabel-column=3\ntext-column=1\n",
  };
  for (guint k = 0; k < G_N_ELEMENTS (key_sets); k++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (Table) t = read_table (f, path, key_sets[k], &error);
      g_assert_no_error (error);
      GPtrArray *docs = t->docs;
      g_assert_cmpuint (docs->len, ==, 4);
      check_doc (docs, 0, path, 2, "greeting", "Hello, world");
      check_doc (docs, 1, path, 3, "story", "She said \"hi\"\nand left");
      check_doc (docs, 2, path, 5, "greeting", "plain text");
      check_doc (docs, 3, path, 6, "story", "\"quoted\" start");
    }
}

/* invalid=replace: the bad byte becomes U+FFFD and a warning names file, line and
 * byte offset. */
static void
test_invalid_replace (Fixture *f, gconstpointer data)
{
  const char *content = "ham\tfine\nspam\tbad \xFF byte\n";
  g_autofree char *path = write_file (f, "bad.tsv", content, -1);
  g_autoptr (GError) error = NULL;
  g_autoptr (Table) t = read_table (f, path, "invalid=replace\n", &error);
  g_assert_no_error (error);
  g_assert_cmpuint (t->docs->len, ==, 2);
  check_doc (t->docs, 1, path, 2, "spam", "bad \xEF\xBF\xBD byte");
  g_autofree char *log = g_strdup_printf ("warning: %s:2: invalid UTF-8 from byte offset 18 "
                                          "replaced with U+FFFD", path);
  g_assert_true (g_strv_contains ((const char *const *) t->logs, log));
}

typedef struct {
  const char *what;
  const char *keys;
  const char *content;
  const char *message;    /* after "FILE:" */
} BadTable;

static const BadTable bad_tables[] = {
  { "a label not in labels=", "labels=ham,spam\n",
    "ham\tone\nspam\ttwo\nspma\tthree\n",
    "3: label \"spma\" is not one of labels=ham,spam" },
  { "a row with too few columns", "",
    "ham\tone\nham only\nspam\tthree\n",
    "2: 1 column (tab-separated), but the label is column 1 and the text column 2" },
  { "too few columns for a text column far right", "format=csv\ntext-column=4\n",
    "ham,a,b,text\nspam,a,b\n",
    "2: 3 columns (comma-separated), but the label is column 1 and the text column 4" },
  { "an empty text", "",
    "ham\tone\nham\ttwo\n\nspam\t\n",
    "4: the text (column 2) is empty" },
  { "an empty label", "format=csv\n",
    "ham,one\n,two\n",
    "2: the label (column 1) is empty" },
  { "a quoted field never closed (named by the line where it opens)", "format=csv\n",
    "ham,one\nspam,\"two\nthree\n",
    "2: a quoted field is not closed before the end of the file" },
  { "text after a closing quote", "format=csv\n",
    "ham,one\nspam,\"two\" three\n",
    "2: ' ' after the closing quote of a field (a quoted field ends at a comma or the "
    "end of the line)" },
  { "invalid UTF-8 (line and byte offset)", "",
    "ham\tone\nspam\ttw\xC3\n",
    "2: invalid UTF-8 at byte offset 15 (set invalid=replace to replace it with U+FFFD)" },
  { "a column name the header lacks", "format=csv\nheader=true\ntext-column=text\n",
    "label,message\nham,one\n",
    "1: text-column: no column is named \"text\" (the header names \"label\", "
    "\"message\")" },
};

static void
test_bad_input (Fixture *f, gconstpointer data)
{
  for (guint i = 0; i < G_N_ELEMENTS (bad_tables); i++)
    {
      const BadTable *b = &bad_tables[i];
      g_test_message ("%s", b->what);
      g_autofree char *path = write_file (f, "bad.txt", b->content, -1);
      g_autoptr (GError) error = NULL;
      g_autoptr (Table) t = read_table (f, path, b->keys, &error);
      g_assert_null (t);
      g_assert_nonnull (error);
      g_autofree char *want = g_strdup_printf ("%s:%s", path, b->message);
      g_assert_cmpstr (error->message, ==, want);
    }
}

/* Keys that cannot work are rejected when the pipeline loads, naming the key. */
static void
test_bad_keys (Fixture *f, gconstpointer data)
{
  static const struct { const char *keys; const char *message; } cases[] = {
    { "label-column=label\n", "label-column: \"label\" is a column name, which needs "
      "header=true (or give the column's 1-based index)" },
    { "text-column=0\n", "text-column: columns count from 1" },
    { "label-column=2\ntext-column=2\n", "label-column and text-column name the same column" },
    { "labels=ham,,spam\n", "labels: name 2 of \"ham,,spam\" is empty" },
    { "labels=ham, spam,ham\n", "labels: \"ham\" is given twice" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *text = g_strdup_printf (
        "[pipeline]\nname=t\n[stage read]\ntype=table-source\npath=/dev/null\n%s"
        "[stage d]\ntype=dump\ninput=read\n", cases[i].keys);
      g_autoptr (GError) error = NULL;
      g_autoptr (GPtrArray) problems = NULL;
      g_autoptr (GptdPipeline) p = gptd_pipeline_load_data (registry, text, -1, "t.pipeline",
                                                            NULL, &problems, &error);
      g_assert_null (p);
      g_assert_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_CHECK);
      g_assert_nonnull (strstr (error->message, cases[i].message));
      g_assert_nonnull (strstr (error->message, "stage read"));
    }
}

/* bpe-tokenizer gives each Document's label to its Tokens. */
static void
test_labels_travel (Fixture *f, gconstpointer data)
{
  g_autofree char *vocab = g_build_filename (f->dir, "small", NULL);
  g_assert_cmpint (g_mkdir (vocab, 0755), ==, 0);
  test_bpe_write_small (vocab);
  g_autofree char *path = write_file (f, "l.tsv",
                                      "b\tthe first\na\tthe second one\nb\tthird\n", -1);
  g_autofree char *out = g_build_filename (f->dir, "tokens.jsonl", NULL);
  g_autofree char *text = g_strdup_printf (
    "[pipeline]\nname=t\n"
    "[stage read]\ntype=table-source\npath=%s\n"
    "[stage tok]\ntype=bpe-tokenizer\ninput=read\nvocab=%s\nthreads=2\n"
    "[stage d]\ntype=dump\ninput=tok\npath=%s\n", path, vocab, out);
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  g_assert_true (test_run_pipeline (registry, text, 0, &ev, &error));
  g_assert_no_error (error);
  test_events_clear (&ev);
  g_autofree char *dump = NULL;
  g_assert_true (g_file_get_contents (out, &dump, NULL, NULL));
  g_auto (GStrv) lines = g_strsplit (dump, "\n", -1);
  static const char *const labels[] = { "b", "a", "b" };
  g_assert_cmpuint (g_strv_length (lines), ==, 4);
  for (guint i = 0; i < 3; i++)
    {
      g_autoptr (JsonNode) node = json_from_string (lines[i], NULL);
      JsonObject *o = json_node_get_object (node);
      g_assert_cmpstr (json_object_get_string_member (o, "label"), ==, labels[i]);
      g_autofree char *source = g_strdup_printf ("%s:%u", path, i + 1);
      g_assert_cmpstr (json_object_get_string_member (o, "source"), ==, source);
      g_assert_cmpuint (json_array_get_length (json_object_get_array_member (o, "ids")), >, 0);
    }
}

/* The SMS Spam Collection loads whole: 5,574 rows, 4,827 ham and 747 spam. */
static void
test_sms (Fixture *f, gconstpointer data)
{
  g_autofree char *path = test_bpe_data_file ("sms-spam-collection/SMSSpamCollection");
  if (path == NULL)
    return;
  g_autoptr (GError) error = NULL;
  g_autoptr (Table) t = read_table (f, path, "labels=ham,spam\n", &error);
  g_assert_no_error (error);
  GPtrArray *docs = t->docs;
  g_assert_cmpuint (docs->len, ==, 5574);
  guint spam = 0;
  for (guint i = 0; i < docs->len; i++)
    spam += g_str_equal (((Gptd__Document *) docs->pdata[i])->label, "spam");
  g_assert_cmpuint (spam, ==, 747);
  g_autofree char *log = g_strdup_printf ("info: read 5574 rows from %s: ham 4827, spam 747",
                                          path);
  g_assert_true (g_strv_contains ((const char *const *) t->logs, log));
  check_doc (docs, 2, path, 3, "spam", "Free entry in 2 a wkly comp to win FA Cup final tkts "
             "21st May 2005. Text FA to 87121 to receive entry question(std txt rate)T&C's "
             "apply 08452810075over18's");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  registry = test_registry ();
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/table-source/tsv", test_tsv);
  ADD ("/table-source/csv", test_csv);
  ADD ("/table-source/invalid-replace", test_invalid_replace);
  ADD ("/table-source/bad-input", test_bad_input);
  ADD ("/table-source/bad-keys", test_bad_keys);
  ADD ("/table-source/labels-travel", test_labels_travel);
  ADD ("/table-source/sms", test_sms);
  int rc = g_test_run ();
  gptd_registry_free (registry);
  return rc;
}

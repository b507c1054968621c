/* tests/test-bpe-stages.c: the bpe plugin's stages run in pipelines, or alone in a
 * GptdHarness — bpe-tokenizer (chunked documents encode as whole ones, on one
 * thread or two,
 * output in input order, <|endoftext|> between documents, special-token errors
 * naming source and offset), token-writer and token-reader (llm.c shards and raw
 * ids, bad files; output split into shards of shard-tokens each, read back in order
 * through a glob, and a run failing midway keeping its complete shards), and
 * bpe-trainer (a vocabulary the tokenizer then loads).
 *
 * They use GPT-2's vocabulary when $GPTD_DATA_DIR/gpt2 exists and a small
 * vocabulary written by the test otherwise.
 */
#include "config.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include <json-glib/json-glib.h>
#include <gptd/harness.h>

#include "test-pipeline-util.h"
#include "test-bpe-util.h"

static GptdRegistry *registry;

typedef struct {
  char *dir;
  char *vocab;     /* vocab= value */
  GptdBpe *bpe;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  f->dir = g_dir_make_tmp ("gptd-test-bpe-stages-XXXXXX", NULL);
  g_assert_nonnull (f->dir);
  const char *dd = g_getenv ("GPTD_DATA_DIR");
  g_autofree char *enc = dd ? g_build_filename (dd, "gpt2", "encoder.json", NULL) : NULL;
  if (enc && g_file_test (enc, G_FILE_TEST_EXISTS))
    f->vocab = g_strdup ("gpt2");
  else
    {
      f->vocab = g_build_filename (f->dir, "small", NULL);
      g_assert_cmpint (g_mkdir (f->vocab, 0755), ==, 0);
      test_bpe_write_small (f->vocab);
    }
  g_autoptr (GError) error = NULL;
  f->bpe = gptd_bpe_load (f->vocab, &error);
  g_assert_no_error (error);
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
  g_free (f->vocab);
  gptd_bpe_unref (f->bpe);
}

static char *
write_text (Fixture *f, const char *name, const char *text)
{
  char *path = g_build_filename (f->dir, name, NULL);
  g_assert_true (g_file_set_contents (path, text, -1, NULL));
  return path;
}

static gboolean
run (const char *text, TestEvents *ev, GError **error)
{
  return test_run_pipeline (registry, text, 0, ev, error);
}

static GArray *
read_u32 (const char *path, gsize skip)
{
  g_autofree char *data = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (path, &data, &len, NULL));
  g_assert_cmpuint (len, >=, skip);
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  const guint8 *p = (const guint8 *) data + skip;
  for (gsize i = 0; i + 4 <= len - skip; i += 4)
    {
      guint32 v = p[i] | (p[i + 1] << 8) | (p[i + 2] << 16) | ((guint32) p[i + 3] << 24);
      g_array_append_val (ids, v);
    }
  return ids;
}

/* The ids the library gives for the files, one document each. */
static GArray *
expected_ids (Fixture *f, const char *const *texts, guint n, gboolean eot)
{
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  GptdBpeEncodeOptions opts = { .special = GPTD_BPE_SPECIAL_ALLOWED };
  guint32 eot_id = (guint32) gptd_bpe_get_special_id (f->bpe, "<|endoftext|>");
  for (guint i = 0; i < n; i++)
    {
      if (eot && i > 0)
        g_array_append_val (ids, eot_id);
      g_assert_true (gptd_bpe_encode (f->bpe, texts[i], strlen (texts[i]), &opts, ids, NULL));
    }
  return ids;
}

/* Pushes @text to @h as Documents of at most @chunk bytes, cut on UTF-8 character
 * boundaries as text-source cuts them. */
static void
push_chunks (GptdHarness *h, const char *source, guint index, const char *text, gsize chunk)
{
  gsize len = strlen (text);
  gsize at = 0;
  do
    {
      gsize end = MIN (at + chunk, len);
      while (end < len && end > at + 1 && ((guint8) text[end] & 0xC0) == 0x80)
        end--;
      Gptd__Document doc = GPTD__DOCUMENT__INIT;
      doc.source = (char *) source;
      doc.text.data = (guint8 *) text + at;
      doc.text.len = end - at;
      doc.offset = at;
      doc.index = index;
      doc.last = end == len;
      g_assert_true (gptd_harness_push (h, "default", &doc.base));
      at = end;
    }
  while (at < len);
}

/* Three documents, fed to bpe-tokenizer alone in small chunks, encoded on one or
 * two threads: the ids of its Tokens equal the library's for the whole documents. */
static void
test_tokenize_chunks (Fixture *f, gconstpointer data)
{
  g_autofree char *t0 = test_bpe_random_text (3000);
  const char *texts[] = {
    t0,
    "It's the end.<|endoftext|>  And then   there were\n\n\n none.    \t\n",
    "short",
  };
  static const char *const sources[] = { "a.txt", "b.txt", "c.txt" };
  g_autoptr (GArray) want = expected_ids (f, texts, 3, TRUE);
  static const gsize chunk_sizes[] = { 16, 37, 1048576 };
  for (guint c = 0; c < G_N_ELEMENTS (chunk_sizes); c++)
    for (int threads = 1; threads <= 2; threads++)
      {
        g_autofree char *vocab = g_strconcat ("vocab=", f->vocab, NULL);
        g_autofree char *n_threads = g_strdup_printf ("threads=%d", threads);
        const char *params[] = { vocab, "special-tokens=allowed",
                                 "eot-between-documents=true", n_threads, NULL };
        g_autoptr (GError) error = NULL;
        g_autoptr (GptdHarness) h = gptd_harness_new ("bpe-tokenizer", params, &error);
        g_assert_no_error (error);
        for (guint i = 0; i < 3; i++)
          push_chunks (h, sources[i], i, texts[i], chunk_sizes[c]);
        g_assert_true (gptd_harness_run (h, &error));
        g_assert_no_error (error);
        g_autoptr (GArray) got = g_array_new (FALSE, FALSE, sizeof (guint32));
        GptdHarnessMessage *msg;
        while ((msg = gptd_harness_pull (h, "default")) != NULL)
          {
            const Gptd__Tokens *tokens = (const Gptd__Tokens *) msg;
            g_assert_true (msg->descriptor == &gptd__tokens__descriptor);
            g_array_append_vals (got, tokens->ids, tokens->n_ids);
            gptd_harness_message_free (msg);
          }
        g_assert_cmpmem (got->data, got->len * 4, want->data, want->len * 4);
        g_assert_true (g_str_has_prefix (gptd_harness_get_logs (h)[0],
                                         "info: encoded 3 documents"));
      }
}

/* A document of 2.5 MB, read whole (one message) or in 1 MB chunks: cut into
 * segments for the workers, it still gives the ids of the whole document. */
static void
test_tokenize_large (Fixture *f, gconstpointer data)
{
  GString *big = g_string_new (NULL);
  while (big->len < 2500000)
    {
      g_autofree char *part = test_bpe_random_text (1000);
      g_string_append (big, part);
      g_string_append (big, "\n\nThe quick brown fox jumps over the lazy dog; it's 1234 times.   ");
    }
  const char *texts[] = { big->str };
  g_autofree char *p0 = write_text (f, "big.txt", big->str);
  g_autoptr (GArray) want = expected_ids (f, texts, 1, FALSE);
  static const char *const chunk_sizes[] = { "4194304", "1048576" };
  for (guint c = 0; c < G_N_ELEMENTS (chunk_sizes); c++)
    {
      g_autofree char *out = g_build_filename (f->dir, "out.u32", NULL);
      g_autofree char *text = g_strdup_printf (
        "[pipeline]\nname=t\n"
        "[stage read]\ntype=text-source\npath=%s\nchunk-size=%s\n"
        "[stage tok]\ntype=bpe-tokenizer\ninput=read\nvocab=%s\nspecial-tokens=allowed\n"
        "[stage write]\ntype=token-writer\ninput=tok\npath=%s\nformat=u32\n",
        p0, chunk_sizes[c], f->vocab, out);
      TestEvents ev;
      test_events_init (&ev);
      g_autoptr (GError) error = NULL;
      g_assert_true (run (text, &ev, &error));
      g_assert_no_error (error);
      g_autoptr (GArray) got = read_u32 (out, 0);
      g_assert_cmpmem (got->data, got->len * 4, want->data, want->len * 4);
      test_events_clear (&ev);
    }
  g_string_free (big, TRUE);
}

/* An llm.c shard: header, uint16 ids; token-reader reads it back into Tokens. */
static void
test_llmc_roundtrip (Fixture *f, gconstpointer data)
{
  const char *texts[] = { "Hello, world! The cat sat on the mat.\n", "Second document: 12345." };
  g_autofree char *p0 = write_text (f, "a.txt", texts[0]);
  g_autofree char *p1 = write_text (f, "b.txt", texts[1]);
  g_autofree char *shard = g_build_filename (f->dir, "tokens.bin", NULL);
  g_autofree char *text = g_strdup_printf (
    "[pipeline]\nname=t\n"
    "[stage read]\ntype=text-source\npath=%s,%s\n"
    "[stage tok]\ntype=bpe-tokenizer\ninput=read\nvocab=%s\n"
    "[stage write]\ntype=token-writer\ninput=tok\npath=%s\n",
    p0, p1, f->vocab, shard);
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  g_assert_true (run (text, &ev, &error));
  g_assert_no_error (error);
  test_events_clear (&ev);

  g_autoptr (GArray) want = expected_ids (f, texts, 2, FALSE);
  g_autofree char *bytes = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (shard, &bytes, &len, NULL));
  g_assert_cmpuint (len, ==, 1024 + 2 * want->len);
  g_autoptr (GArray) header = read_u32 (shard, 0);
  g_assert_cmpuint (g_array_index (header, guint32, 0), ==, 20240520);
  g_assert_cmpuint (g_array_index (header, guint32, 1), ==, 1);
  g_assert_cmpuint (g_array_index (header, guint32, 2), ==, want->len);
  for (guint i = 0; i < want->len; i++)
    {
      const guint8 *p = (const guint8 *) bytes + 1024 + 2 * i;
      g_assert_cmpuint (p[0] | (p[1] << 8), ==, g_array_index (want, guint32, i));
    }

  /* token-reader -> token-writer u32: the same ids. */
  g_autofree char *raw = g_build_filename (f->dir, "copy.u32", NULL);
  g_autofree char *text2 = g_strdup_printf (
    "[pipeline]\nname=t\n"
    "[stage read]\ntype=token-reader\npath=%s\nchunk-tokens=3\nvocab-size=%u\n"
    "[stage write]\ntype=token-writer\ninput=read\npath=%s\nformat=u32\n",
    shard, gptd_bpe_get_n_vocab (f->bpe), raw);
  test_events_init (&ev);
  g_assert_true (run (text2, &ev, &error));
  g_assert_no_error (error);
  g_autofree char *line = g_strdup_printf ("read: read %u tokens from 1 file", want->len);
  g_assert_cmpint (test_events_find (&ev, line), >=, 0);
  test_events_clear (&ev);
  g_autoptr (GArray) copy = read_u32 (raw, 0);
  g_assert_cmpmem (copy->data, copy->len * 4, want->data, want->len * 4);
}

/* Bad token files are errors that name the file. */
static void
test_reader_errors (Fixture *f, gconstpointer data)
{
  guint8 header[1024] = { 0 };
  guint32 vals[3] = { 20240520, 1, 10 };
  memcpy (header, vals, sizeof vals);
  g_autofree char *truncated = g_build_filename (f->dir, "trunc.bin", NULL);
  g_assert_true (g_file_set_contents (truncated, (const char *) header, sizeof header, NULL));
  vals[0] = 1234;
  memcpy (header, vals, sizeof vals);
  g_autofree char *badmagic = g_build_filename (f->dir, "magic.bin", NULL);
  g_assert_true (g_file_set_contents (badmagic, (const char *) header, sizeof header, NULL));
  g_autofree char *odd = g_build_filename (f->dir, "odd.u16", NULL);
  g_assert_true (g_file_set_contents (odd, "abc", 3, NULL));
  g_autofree char *missing = g_build_filename (f->dir, "missing.u16", NULL);
  struct {
    const char *path;
    const char *format;
    const char *needle;
  } cases[] = {
    { truncated, "llmc", "header says 10 tokens" },
    { badmagic, "llmc", "not an llm.c token shard" },
    { odd, "u16", "not a whole number" },
    /* A device is not a missing file, and a missing file says so. */
    { "/dev/zero", "u16", "/dev/zero: a character device, not a regular file" },
    { f->dir, "u16", "a directory, not a token file" },
    { missing, "u16", "No such file or directory" },
  };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      g_autofree char *out = g_build_filename (f->dir, "out.u32", NULL);
      g_autofree char *text = g_strdup_printf (
        "[pipeline]\nname=t\n"
        "[stage read]\ntype=token-reader\npath=%s\nformat=%s\n"
        "[stage write]\ntype=token-writer\ninput=read\npath=%s\nformat=u32\n",
        cases[c].path, cases[c].format, out);
      TestEvents ev;
      test_events_init (&ev);
      g_autoptr (GError) error = NULL;
      g_assert_false (run (text, &ev, &error));
      g_assert_nonnull (error);
      if (!strstr (error->message, cases[c].needle) || !strstr (error->message, cases[c].path))
        g_error ("error \"%s\" should name %s and say \"%s\"", error->message, cases[c].path,
                 cases[c].needle);
      g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
      test_events_clear (&ev);
    }

  /* An empty file of raw ids is no tokens (it maps to no memory at all). */
  g_autofree char *empty = g_build_filename (f->dir, "empty.u16", NULL);
  g_assert_true (g_file_set_contents (empty, "", 0, NULL));
  g_autofree char *out = g_build_filename (f->dir, "out.u32", NULL);
  g_autofree char *text = g_strdup_printf (
    "[pipeline]\nname=t\n"
    "[stage read]\ntype=token-reader\npath=%s\nformat=u16\n"
    "[stage write]\ntype=token-writer\ninput=read\npath=%s\nformat=u32\n", empty, out);
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  g_assert_true (run (text, &ev, &error));
  g_assert_no_error (error);
  g_autoptr (GArray) ids = read_u32 (out, 0);
  g_assert_cmpuint (ids->len, ==, 0);
  test_events_clear (&ev);
}

/* special-tokens=error: a run over text holding <|endoftext|> fails naming the
 * file and the byte offset, even when the token is split over chunks. */
static void
test_special_error (Fixture *f, gconstpointer data)
{
  GString *s = g_string_new (NULL);
  for (int i = 0; i < 20; i++)
    g_string_append (s, "some text here ");
  gsize at = s->len;
  g_string_append (s, "<|endoftext|> and more");
  g_autofree char *path = write_text (f, "special.txt", s->str);
  g_string_free (s, TRUE);
  g_autofree char *out = g_build_filename (f->dir, "out.bin", NULL);
  g_autofree char *text = g_strdup_printf (
    "[pipeline]\nname=t\n"
    "[stage read]\ntype=text-source\npath=%s\nchunk-size=17\n"
    "[stage tok]\ntype=bpe-tokenizer\ninput=read\nvocab=%s\n"
    "[stage write]\ntype=token-writer\ninput=tok\npath=%s\n",
    path, f->vocab, out);
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  g_assert_false (run (text, &ev, &error));
  g_autofree char *want = g_strdup_printf ("byte offset %" G_GSIZE_FORMAT, at);
  if (!error || !strstr (error->message, want) || !strstr (error->message, path))
    g_error ("error \"%s\" should name %s and %s", error ? error->message : "(none)", path, want);
  g_assert_false (g_file_test (out, G_FILE_TEST_EXISTS));
  test_events_clear (&ev);
}

/* bpe-trainer writes a vocabulary that bpe-tokenizer loads; round trip of the ids. */
static void
test_trainer (Fixture *f, gconstpointer data)
{
  GString *s = g_string_new (NULL);
  for (int i = 0; i < 200; i++)
    g_string_append_printf (s, "the quick brown fox %d jumps over the lazy dog's back.<|endoftext|>\n", i);
  g_autofree char *path = write_text (f, "train.txt", s->str);
  g_autofree char *vdir = g_build_filename (f->dir, "trained", NULL);
  g_autofree char *text = g_strdup_printf (
    "[pipeline]\nname=t\n"
    "[stage read]\ntype=text-source\npath=%s\nchunk-size=50\n"
    "[stage train]\ntype=bpe-trainer\ninput=read\npath=%s\nvocab-size=300\n"
    "special=<|endoftext|>, [PAD]\n",
    path, vdir);
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  g_assert_true (run (text, &ev, &error));
  g_assert_no_error (error);
  g_assert_cmpint (test_events_find_prefix (&ev, "train: trained a vocabulary of 300 tokens"), >=, 0);
  test_events_clear (&ev);

  g_autoptr (GptdBpe) bpe = gptd_bpe_load (vdir, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (gptd_bpe_get_n_vocab (bpe), ==, 300);
  g_assert_cmpint (gptd_bpe_get_special_id (bpe, "<|endoftext|>"), ==, 298);
  g_assert_cmpint (gptd_bpe_get_special_id (bpe, "[PAD]"), ==, 299);

  /* The same text trained whole gives the same vocabulary. */
  static const char *const special[] = { "<|endoftext|>", "[PAD]", NULL };
  g_autoptr (GptdBpeTrainer) t = gptd_bpe_trainer_new (special, &error);
  g_assert_true (gptd_bpe_trainer_add_text (t, s->str, s->len, &error));
  g_autoptr (GptdBpe) whole = gptd_bpe_trainer_train (t, 300, &error);
  for (guint32 id = 0; id < 300; id++)
    {
      gsize n1, n2;
      const guint8 *a = gptd_bpe_get_token (bpe, id, &n1);
      const guint8 *b = gptd_bpe_get_token (whole, id, &n2);
      g_assert_cmpmem (a, n1, b, n2);
    }

  /* Tokenize with it. */
  g_autofree char *out = g_build_filename (f->dir, "out.u32", NULL);
  g_autofree char *text2 = g_strdup_printf (
    "[pipeline]\nname=t\n"
    "[stage read]\ntype=text-source\npath=%s\n"
    "[stage tok]\ntype=bpe-tokenizer\ninput=read\nvocab=%s\nspecial-tokens=allowed\n"
    "[stage write]\ntype=token-writer\ninput=tok\npath=%s\nformat=u16\n",
    path, vdir, out);
  test_events_init (&ev);
  g_assert_true (run (text2, &ev, &error));
  g_assert_no_error (error);
  test_events_clear (&ev);
  g_autofree char *raw = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (out, &raw, &len, NULL));
  g_assert_cmpuint (len % 2, ==, 0);
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  for (gsize i = 0; i < len; i += 2)
    {
      guint32 v = (guint8) raw[i] | ((guint8) raw[i + 1] << 8);
      g_array_append_val (ids, v);
    }
  g_autoptr (GString) back = g_string_new (NULL);
  g_assert_true (gptd_bpe_decode (bpe, (const guint32 *) (void *) ids->data, ids->len, back, &error));
  g_assert_cmpstr (back->str, ==, s->str);
  g_assert_cmpuint (ids->len, <, s->len / 4);
  g_string_free (s, TRUE);
}

/* ---- token-writer shard-tokens ---------------------------------------------- */

/* @n ids, below @max, with no pattern that survives a shift or a reordering. */
static GArray *
make_ids (guint n, guint32 max)
{
  GArray *ids = g_array_sized_new (FALSE, FALSE, sizeof (guint32), n);
  for (guint i = 0; i < n; i++)
    {
      guint32 v = (guint32) (((guint64) i * 7919u + (guint64) i * i * 31u + 13u) % max);
      g_array_append_val (ids, v);
    }
  return ids;
}

/* Writes @ids as raw little-endian uint32 to @name in the fixture's directory. */
static char *
write_ids (Fixture *f, const char *name, GArray *ids)
{
  char *path = g_build_filename (f->dir, name, NULL);
  g_autofree guint8 *bytes = g_malloc (4 * ids->len + 1);
  for (guint i = 0; i < ids->len; i++)
    {
      guint32 v = g_array_index (ids, guint32, i);
      for (int b = 0; b < 4; b++)
        bytes[4 * i + b] = (guint8) (v >> (8 * b));
    }
  g_assert_true (g_file_set_contents (path, (const char *) bytes, 4 * ids->len, NULL));
  return path;
}

static gint
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* The names in @dir, sorted and separated by spaces. */
static char *
list_dir (const char *dir)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  g_assert_nonnull (d);
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  while ((name = g_dir_read_name (d)))
    g_ptr_array_add (names, g_strdup (name));
  g_ptr_array_sort (names, compare_names);
  g_ptr_array_add (names, NULL);
  return g_strjoinv (" ", (char **) names->pdata);
}

/* "PREFIX000000SUFFIX PREFIX000001SUFFIX ..." for @n shards. */
static char *
shard_names (const char *prefix, const char *suffix, guint n)
{
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < n; i++)
    g_string_append_printf (s, "%s%s%06u%s", i ? " " : "", prefix, i, suffix);
  return g_string_free (s, FALSE);
}

/* The file at @path is an llm.c shard holding ids [@from, @from + @n) of @ids. */
static void
check_llmc_shard (const char *path, GArray *ids, guint from, guint n)
{
  g_autofree char *bytes = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (path, &bytes, &len, NULL));
  g_assert_cmpuint (len, ==, 1024 + 2 * (gsize) n);
  g_autoptr (GArray) words = read_u32 (path, 0);
  g_assert_cmpuint (g_array_index (words, guint32, 0), ==, 20240520);
  g_assert_cmpuint (g_array_index (words, guint32, 1), ==, 1);
  g_assert_cmpuint (g_array_index (words, guint32, 2), ==, n);
  for (guint k = 3; k < 256; k++)
    g_assert_cmpuint (g_array_index (words, guint32, k), ==, 0);
  for (guint i = 0; i < n; i++)
    {
      const guint8 *p = (const guint8 *) bytes + 1024 + 2 * i;
      g_assert_cmpuint (p[0] | (p[1] << 8), ==, g_array_index (ids, guint32, from + i));
    }
}

/* Runs token-reader (raw uint32 @in, 7 ids a message) into token-writer with
 * path=@out, format=@format and shard-tokens=@n. */
static gboolean
run_shard_writer (const char *in, const char *out, const char *format, guint n, TestEvents *ev,
                  GError **error)
{
  g_autofree char *text = g_strdup_printf (
    "[pipeline]\nname=t\n"
    "[stage read]\ntype=token-reader\npath=%s\nformat=u32\nchunk-tokens=7\n"
    "[stage write]\ntype=token-writer\ninput=read\npath=%s\nformat=%s\nshard-tokens=%u\n",
    in, out, format, n);
  test_events_init (ev);
  return run (text, ev, error);
}

/* Reads @glob (format @format) with token-reader and returns its ids; the reader
 * must log that it read @n_files files. */
static GArray *
read_back (Fixture *f, const char *glob, const char *format, guint n_files)
{
  g_autofree char *raw = g_build_filename (f->dir, "back.u32", NULL);
  g_autofree char *text = g_strdup_printf (
    "[pipeline]\nname=t\n"
    "[stage read]\ntype=token-reader\npath=%s\nformat=%s\nchunk-tokens=5\n"
    "[stage write]\ntype=token-writer\ninput=read\npath=%s\nformat=u32\n",
    glob, format, raw);
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  g_assert_true (run (text, &ev, &error));
  g_assert_no_error (error);
  g_autofree char *suffix = g_strdup_printf (" from %u file%s", n_files, n_files == 1 ? "" : "s");
  int at = test_events_find_prefix (&ev, "read: read ");
  g_assert_cmpint (at, >=, 0);
  g_assert_true (g_str_has_suffix (ev.logs->pdata[at], suffix));
  test_events_clear (&ev);
  GArray *ids = read_u32 (raw, 0);
  g_unlink (raw);
  return ids;
}

/* shard-tokens=N over streams of known length (messages of 7 ids, so that shards
 * end inside messages): ceil(len/N) llm.c shards named train_NNNNNN.bin, each with
 * its header and ids, nothing else in the directory; a glob reads them back in
 * order. */
static void
test_shards_llmc (Fixture *f, gconstpointer data)
{
  static const struct {
    guint len, n;
  } cases[] = { { 1000, 300 }, { 900, 300 }, { 5, 1 }, { 10, 100 }, { 2000, 128 } };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      guint len = cases[c].len, n = cases[c].n, n_shards = (len + n - 1) / n;
      g_autoptr (GArray) ids = make_ids (len, 50257);
      g_autofree char *in = write_ids (f, "in.u32", ids);
      g_autofree char *name = g_strdup_printf ("shards.%u", c);
      g_autofree char *dir = g_build_filename (f->dir, name, NULL);
      g_assert_cmpint (g_mkdir (dir, 0755), ==, 0);
      g_autofree char *out = g_build_filename (dir, "train.bin", NULL);
      TestEvents ev;
      g_autoptr (GError) error = NULL;
      g_assert_true (run_shard_writer (in, out, "llmc", n, &ev, &error));
      g_assert_no_error (error);
      g_autofree char *first = g_build_filename (dir, "train_000000.bin", NULL);
      g_autofree char *last_name = g_strdup_printf ("train_%06u.bin", n_shards - 1);
      g_autofree char *last = g_build_filename (dir, last_name, NULL);
      g_autofree char *line = n_shards == 1
        ? g_strdup_printf ("write: wrote %u tokens in 1 shard (%s, llmc)", len, first)
        : g_strdup_printf ("write: wrote %u tokens in %u shards (%s to %s, llmc)", len, n_shards,
                           first, last);
      if (test_events_find (&ev, line) < 0)
        g_error ("no log line \"%s\"", line);
      test_events_clear (&ev);

      g_autofree char *listing = list_dir (dir);
      g_autofree char *want_listing = shard_names ("train_", ".bin", n_shards);
      g_assert_cmpstr (listing, ==, want_listing);
      for (guint s = 0; s < n_shards; s++)
        {
          g_autofree char *sname = g_strdup_printf ("train_%06u.bin", s);
          g_autofree char *spath = g_build_filename (dir, sname, NULL);
          check_llmc_shard (spath, ids, s * n, MIN (n, len - s * n));
        }

      g_autofree char *glob = g_build_filename (dir, "train_*.bin", NULL);
      g_autoptr (GArray) back = read_back (f, glob, "llmc", n_shards);
      g_assert_cmpmem (back->data, back->len * 4, ids->data, ids->len * 4);
    }

  /* An llm.c shard holds at most 2^31 - 1 tokens: a larger shard-tokens is refused. */
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdPipeline) p = gptd_pipeline_load_data (
    registry,
    "[pipeline]\nname=t\n[stage read]\ntype=token-reader\npath=/x.u32\nformat=u32\n"
    "[stage write]\ntype=token-writer\ninput=read\npath=/x.bin\nshard-tokens=2147483648\n",
    -1, "test.pipeline", NULL, NULL, &error);
  g_assert_null (p);
  g_assert_nonnull (error);
  if (!strstr (error->message, "2147483647"))
    g_error ("error \"%s\" should give the range of shard-tokens", error->message);
}

/* format=u32 shards (ids above 65535) of a path without extension: raw files
 * train_NNNNNN of 4-byte ids, read back in order through a glob. */
static void
test_shards_u32 (Fixture *f, gconstpointer data)
{
  guint len = 1000, n = 256, n_shards = 4;
  g_autoptr (GArray) ids = make_ids (len, 100000);
  g_autofree char *in = write_ids (f, "in.u32", ids);
  g_autofree char *dir = g_build_filename (f->dir, "raw.d", NULL);
  g_assert_cmpint (g_mkdir (dir, 0755), ==, 0);
  g_autofree char *out = g_build_filename (dir, "train", NULL);
  TestEvents ev;
  g_autoptr (GError) error = NULL;
  g_assert_true (run_shard_writer (in, out, "u32", n, &ev, &error));
  g_assert_no_error (error);
  g_assert_cmpint (test_events_find_prefix (&ev, "write: wrote 1000 tokens in 4 shards ("), >=, 0);
  test_events_clear (&ev);

  g_autofree char *listing = list_dir (dir);
  g_autofree char *want_listing = shard_names ("train_", "", n_shards);
  g_assert_cmpstr (listing, ==, want_listing);
  for (guint s = 0; s < n_shards; s++)
    {
      g_autofree char *sname = g_strdup_printf ("train_%06u", s);
      g_autofree char *spath = g_build_filename (dir, sname, NULL);
      g_autoptr (GArray) got = read_u32 (spath, 0);
      guint m = MIN (n, len - s * n);
      g_assert_cmpuint (got->len, ==, m);
      g_assert_cmpmem (got->data, m * 4, &g_array_index (ids, guint32, s * n), m * 4);
    }
  g_autofree char *glob = g_build_filename (dir, "train_*", NULL);
  g_autoptr (GArray) back = read_back (f, glob, "u32", n_shards);
  g_assert_cmpmem (back->data, back->len * 4, ids->data, ids->len * 4);
}

/* An empty input writes one empty shard, _000000, which reads back as no tokens. */
static void
test_shards_empty (Fixture *f, gconstpointer data)
{
  g_autoptr (GArray) ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_autofree char *in = write_ids (f, "in.u32", ids);
  g_autofree char *dir = g_build_filename (f->dir, "empty", NULL);
  g_assert_cmpint (g_mkdir (dir, 0755), ==, 0);
  g_autofree char *out = g_build_filename (dir, "train.bin", NULL);
  TestEvents ev;
  g_autoptr (GError) error = NULL;
  g_assert_true (run_shard_writer (in, out, "llmc", 100, &ev, &error));
  g_assert_no_error (error);
  g_assert_cmpint (test_events_find_prefix (&ev, "write: wrote 0 tokens in 1 shard ("), >=, 0);
  test_events_clear (&ev);
  g_autofree char *listing = list_dir (dir);
  g_assert_cmpstr (listing, ==, "train_000000.bin");
  g_autofree char *shard = g_build_filename (dir, "train_000000.bin", NULL);
  check_llmc_shard (shard, ids, 0, 0);
  g_autofree char *glob = g_build_filename (dir, "train_*.bin", NULL);
  g_autoptr (GArray) back = read_back (f, glob, "llmc", 1);
  g_assert_cmpuint (back->len, ==, 0);
}

/* Shards of an earlier, longer run that follow the last one written are removed
 * (up to the first gap in the numbers); earlier ones are replaced. */
static void
test_shards_stale (Fixture *f, gconstpointer data)
{
  g_autoptr (GArray) ids = make_ids (700, 50257);
  g_autofree char *in = write_ids (f, "in.u32", ids);
  g_autofree char *dir = g_build_filename (f->dir, "stale", NULL);
  g_assert_cmpint (g_mkdir (dir, 0755), ==, 0);
  static const char *const old[] = { "train_000001.bin", "train_000003.bin", "train_000004.bin",
                                     "train_000006.bin" };
  for (guint i = 0; i < G_N_ELEMENTS (old); i++)
    {
      g_autofree char *p = g_build_filename (dir, old[i], NULL);
      g_assert_true (g_file_set_contents (p, "old", 3, NULL));
    }
  g_autofree char *out = g_build_filename (dir, "train.bin", NULL);
  TestEvents ev;
  g_autoptr (GError) error = NULL;
  g_assert_true (run_shard_writer (in, out, "llmc", 300, &ev, &error));
  g_assert_no_error (error);
  g_assert_cmpint (test_events_find_prefix (&ev, "write: removed 2 shards of an earlier run"), >=, 0);
  g_assert_cmpint (test_events_find_prefix (&ev, "write: wrote 700 tokens in 3 shards ("), >=, 0);
  test_events_clear (&ev);
  g_autofree char *listing = list_dir (dir);
  g_assert_cmpstr (listing, ==,
                   "train_000000.bin train_000001.bin train_000002.bin train_000006.bin");
  for (guint s = 0; s < 3; s++)
    {
      g_autofree char *sname = g_strdup_printf ("train_%06u.bin", s);
      g_autofree char *spath = g_build_filename (dir, sname, NULL);
      check_llmc_shard (spath, ids, s * 300, MIN (300, 700 - s * 300));
    }
}

/* NUL is valid UTF-8 (U+0000): text-source -> bpe-tokenizer encodes "ab\0cd\n" as
 * tiktoken does with GPT-2's vocabulary (397 "ab", 188 the byte token of 0x00,
 * 10210 "cd", 198 "\n"), where the segments once lost everything after a NUL
 * (188 four times); bpe-trainer learns from text holding NULs and keeps them in
 * its tokens' bytes. */
static void
test_nul (Fixture *f, gconstpointer data)
{
  static const char nul_text[] = "ab\0cd\n";
  g_autofree char *path = g_build_filename (f->dir, "nul.txt", NULL);
  g_assert_true (g_file_set_contents (path, nul_text, sizeof nul_text - 1, NULL));

  GString *s = g_string_new (NULL);
  for (int i = 0; i < 50; i++)
    g_string_append_len (s, "x\0y\0z ", 7);
  g_autofree char *train = g_build_filename (f->dir, "train.txt", NULL);
  g_assert_true (g_file_set_contents (train, s->str, (gssize) s->len, NULL));
  g_autofree char *vdir = g_build_filename (f->dir, "nul-vocab", NULL);
  g_autofree char *text = g_strdup_printf (
    "[pipeline]\nname=t\n"
    "[stage read]\ntype=text-source\npath=%s\n"
    "[stage train]\ntype=bpe-trainer\ninput=read\npath=%s\nvocab-size=260\n", train, vdir);
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  g_assert_true (run (text, &ev, &error));
  g_assert_no_error (error);
  test_events_clear (&ev);
  g_autoptr (GptdBpe) trained = gptd_bpe_load (vdir, &error);
  g_assert_no_error (error);
  /* The first merges hold the NULs: "x\0" or "\0y" or "\0z" become tokens. */
  gboolean nul_merged = FALSE;
  for (guint32 id = 256; id < gptd_bpe_get_n_vocab (trained); id++)
    {
      gsize n;
      const guint8 *b = gptd_bpe_get_token (trained, id, &n);
      if (b && n > 1 && memchr (b, 0, n))
        nul_merged = TRUE;
    }
  g_assert_true (nul_merged);

  GptdBpe *gpt2 = test_bpe_gpt2 ();
  if (gpt2 == NULL)
    return;
  g_autofree char *out = g_build_filename (f->dir, "nul.u32", NULL);
  g_autofree char *text2 = g_strdup_printf (
    "[pipeline]\nname=t\n"
    "[stage read]\ntype=text-source\npath=%s\n"
    "[stage tok]\ntype=bpe-tokenizer\ninput=read\nvocab=gpt2\n"
    "[stage write]\ntype=token-writer\ninput=tok\npath=%s\nformat=u32\n", path, out);
  test_events_init (&ev);
  g_assert_true (run (text2, &ev, &error));
  g_assert_no_error (error);
  test_events_clear (&ev);
  g_autoptr (GArray) ids = read_u32 (out, 0);
  const guint32 want[] = { 397, 188, 10210, 198 };
  for (guint i = 0; i < ids->len; i++)
    g_test_message ("id %u: %u", i, g_array_index (ids, guint32, i));
  g_assert_cmpmem (ids->data, ids->len * 4, want, sizeof want);
  /* 188 is the byte token of 0x00. */
  gsize n;
  const guint8 *b = gptd_bpe_get_token (gpt2, 188, &n);
  g_assert_cmpuint (n, ==, 1);
  g_assert_cmpuint (b[0], ==, 0);
}

/* token-writer replaces only regular files: a FIFO, a symbolic link or a directory
 * at the path (or at a shard's name) stops the run with an error naming the path
 * and what is there, and is left as it was. */
static void
test_writer_not_regular (Fixture *f, gconstpointer data)
{
  g_autoptr (GArray) ids = make_ids (20, 50257);
  g_autofree char *in = write_ids (f, "in.u32", ids);
  g_autofree char *fifo = g_build_filename (f->dir, "fifo.bin", NULL);
  g_assert_cmpint (mkfifo (fifo, 0644), ==, 0);
  g_autofree char *target = g_build_filename (f->dir, "target.bin", NULL);
  g_assert_true (g_file_set_contents (target, "keep", 4, NULL));
  g_autofree char *link = g_build_filename (f->dir, "link.bin", NULL);
  g_assert_cmpint (symlink (target, link), ==, 0);
  g_autofree char *dir = g_build_filename (f->dir, "dir.bin", NULL);
  g_assert_cmpint (g_mkdir (dir, 0755), ==, 0);
  g_autofree char *shards = g_build_filename (f->dir, "sh.bin", NULL);
  g_autofree char *shard1 = g_build_filename (f->dir, "sh_000001.bin", NULL);
  g_assert_cmpint (mkfifo (shard1, 0644), ==, 0);

  const struct {
    const char *out, *bad, *what;
    guint shard_tokens;
  } cases[] = {
    { fifo, fifo, "a FIFO", 0 },
    { link, link, "a symbolic link", 0 },
    { dir, dir, "a directory", 0 },
    { shards, shard1, "a FIFO", 8 },
  };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      TestEvents ev;
      g_autoptr (GError) error = NULL;
      g_assert_false (run_shard_writer (in, cases[c].out, "u32", cases[c].shard_tokens, &ev,
                                        &error));
      g_assert_nonnull (error);
      g_autofree char *want = g_strdup_printf ("“%s”: it is %s", cases[c].bad, cases[c].what);
      if (!strstr (error->message, want))
        g_error ("error \"%s\" should say \"%s\"", error->message, want);
      test_events_clear (&ev);
    }
  GStatBuf st;
  g_assert_cmpint (lstat (fifo, &st), ==, 0);
  g_assert_true (S_ISFIFO (st.st_mode));
  g_assert_cmpint (lstat (shard1, &st), ==, 0);
  g_assert_true (S_ISFIFO (st.st_mode));
  g_assert_cmpint (lstat (link, &st), ==, 0);
  g_assert_true (S_ISLNK (st.st_mode));
  g_autofree char *kept = NULL;
  g_assert_true (g_file_get_contents (target, &kept, NULL, NULL));
  g_assert_cmpstr (kept, ==, "keep");
}

/* A run failing midway — the third shard cannot be renamed into place (a directory
 * has its name), or its tokens hold an id too large for llmc — keeps the first two
 * complete shards and leaves no temporary or partial file. */
static void
test_shards_failure (Fixture *f, gconstpointer data)
{
  for (int c = 0; c < 2; c++)
    {
      g_autoptr (GArray) ids = make_ids (1000, 50257);
      if (c == 1)
        g_array_index (ids, guint32, 650) = 70000;
      g_autofree char *in = write_ids (f, "in.u32", ids);
      g_autofree char *name = g_strdup_printf ("fail.%d", c);
      g_autofree char *dir = g_build_filename (f->dir, name, NULL);
      g_assert_cmpint (g_mkdir (dir, 0755), ==, 0);
      g_autofree char *third = g_build_filename (dir, "train_000002.bin", NULL);
      if (c == 0)
        {
          g_assert_cmpint (g_mkdir (third, 0755), ==, 0);
          g_autofree char *inside = g_build_filename (third, "keep", NULL);
          g_assert_true (g_file_set_contents (inside, "x", 1, NULL));
        }
      g_autofree char *out = g_build_filename (dir, "train.bin", NULL);
      TestEvents ev;
      g_autoptr (GError) error = NULL;
      g_assert_false (run_shard_writer (in, out, "llmc", 300, &ev, &error));
      g_assert_nonnull (error);
      const char *needle = c == 0 ? "it is a directory" : "does not fit in 16 bits";
      if (!strstr (error->message, needle) || !strstr (error->message, third))
        g_error ("error \"%s\" should name %s and say \"%s\"", error->message, third, needle);
      test_events_clear (&ev);

      g_autofree char *listing = list_dir (dir);
      g_assert_cmpstr (listing, ==,
                       c == 0 ? "train_000000.bin train_000001.bin train_000002.bin"
                              : "train_000000.bin train_000001.bin");
      for (guint s = 0; s < 2; s++)
        {
          g_autofree char *sname = g_strdup_printf ("train_%06u.bin", s);
          g_autofree char *spath = g_build_filename (dir, sname, NULL);
          check_llmc_shard (spath, ids, s * 300, 300);
        }
      g_autofree char *glob = g_build_filename (dir, "train_*.bin", NULL);
      if (c == 1)
        {
          g_autoptr (GArray) back = read_back (f, glob, "llmc", 2);
          g_assert_cmpuint (back->len, ==, 600);
          g_assert_cmpmem (back->data, 600 * 4, ids->data, 600 * 4);
        }
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  registry = test_registry ();
  g_assert_nonnull (gptd_registry_lookup (registry, "bpe-tokenizer"));
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/bpe-stages/tokenize-chunks", test_tokenize_chunks);
  ADD ("/bpe-stages/tokenize-large", test_tokenize_large);
  ADD ("/bpe-stages/llmc-roundtrip", test_llmc_roundtrip);
  ADD ("/bpe-stages/reader-errors", test_reader_errors);
  ADD ("/bpe-stages/special-error", test_special_error);
  ADD ("/bpe-stages/trainer", test_trainer);
  ADD ("/bpe-stages/shards-llmc", test_shards_llmc);
  ADD ("/bpe-stages/shards-u32", test_shards_u32);
  ADD ("/bpe-stages/shards-empty", test_shards_empty);
  ADD ("/bpe-stages/shards-stale", test_shards_stale);
  ADD ("/bpe-stages/shards-failure", test_shards_failure);
  ADD ("/bpe-stages/writer-not-regular", test_writer_not_regular);
  ADD ("/bpe-stages/nul", test_nul);
  int rc = g_test_run ();
  gptd_registry_free (registry);
  return rc;
}

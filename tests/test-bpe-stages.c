/* tests/test-bpe-stages.c: the bpe plugin's stages run in pipelines —
 * bpe-tokenizer (chunked documents encode as whole ones, on one thread or two,
 * output in input order, <|endoftext|> between documents, special-token errors
 * naming source and offset), token-writer and token-reader (llm.c shards and raw
 * ids, bad files), and bpe-trainer (a vocabulary the tokenizer then loads).
 *
 * They use GPT-2's vocabulary when $GPTD_DATA_DIR/gpt2 exists and a small
 * vocabulary written by the test otherwise.
 */
#include "config.h"

#include <string.h>

#include <json-glib/json-glib.h>

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

/* Three documents, read in small chunks, encoded on one or two threads: the ids
 * (as raw uint32) equal the library's for the whole documents. */
static void
test_tokenize_chunks (Fixture *f, gconstpointer data)
{
  g_autofree char *t0 = test_bpe_random_text (3000);
  const char *texts[] = {
    t0,
    "It's the end.<|endoftext|>  And then   there were\n\n\n none.    \t\n",
    "short",
  };
  g_autofree char *p0 = write_text (f, "a.txt", texts[0]);
  g_autofree char *p1 = write_text (f, "b.txt", texts[1]);
  g_autofree char *p2 = write_text (f, "c.txt", texts[2]);
  g_autoptr (GArray) want = expected_ids (f, texts, 3, TRUE);
  static const char *const chunk_sizes[] = { "16", "37", "1048576" };
  for (guint c = 0; c < G_N_ELEMENTS (chunk_sizes); c++)
    for (int threads = 1; threads <= 2; threads++)
      {
        g_autofree char *out = g_build_filename (f->dir, "out.u32", NULL);
        g_autofree char *text = g_strdup_printf (
          "[pipeline]\nname=t\n"
          "[stage read]\ntype=text-source\npath=%s,%s,%s\nchunk-size=%s\n"
          "[stage tok]\ntype=bpe-tokenizer\ninput=read\nvocab=%s\nspecial-tokens=allowed\n"
          "eot-between-documents=true\nthreads=%d\n"
          "[stage write]\ntype=token-writer\ninput=tok\npath=%s\nformat=u32\n",
          p0, p1, p2, chunk_sizes[c], f->vocab, threads, out);
        TestEvents ev;
        test_events_init (&ev);
        g_autoptr (GError) error = NULL;
        g_assert_true (run (text, &ev, &error));
        g_assert_no_error (error);
        g_autoptr (GArray) got = read_u32 (out, 0);
        g_assert_cmpmem (got->data, got->len * 4, want->data, want->len * 4);
        g_assert_cmpint (test_events_find_prefix (&ev, "tok: encoded 3 documents"), >=, 0);
        test_events_clear (&ev);
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
  struct {
    const char *path;
    const char *format;
    const char *needle;
  } cases[] = {
    { truncated, "llmc", "header says 10 tokens" },
    { badmagic, "llmc", "not an llm.c token shard" },
    { odd, "u16", "not a whole number" },
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
  int rc = g_test_run ();
  gptd_registry_free (registry);
  return rc;
}

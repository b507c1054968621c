/* tests/test-classification-dataset.c: the data set of the book's chapter 6 and the
 * classification-dataset stage:
 *
 *  - split sizes equal the book's random_split (int(len * frac), the test split
 *    taking the rest) for every size in tests/golden/classes/split-sizes.txt, made
 *    by make_goldens.py; a fraction of 0 leaves its split empty;
 *  - undersampling keeps as many examples of each class as the smallest has, all of
 *    the smallest, a seeded sample of the others;
 *  - every kept example lands in exactly one split; the length is the longest
 *    training example (or max-length=); rows are the example's ids truncated to it
 *    and padded with pad-id, with the class id and the unpadded length; validation
 *    and test examples longer than the training ones are truncated;
 *  - the stage serves seeded epochs (a pure function of seed, request seed and
 *    epoch; start and limit cut the same batches), drops the last incomplete batch
 *    of the train split only, and gives every batch the class names;
 *  - bad input stops the run naming the source or the class: a label not in
 *    labels=, a class with no example; bad keys are load-time errors;
 *  - with $GPTD_DATA_DIR, the SMS Spam Collection through table-source and GPT-2's
 *    tokenizer: 1,494 balanced messages split 1,045 / 149 / 300, and the shipped
 *    pipelines/sms-spam-data.pipeline runs.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include <gptd/plugin.h>

#include "test-pipeline-util.h"
#include "../plugins/train/classes.h"

/* ---- Synthetic examples --------------------------------------------------------- */

/* Example i: class (i * 7 + i / 5) % n_classes for most, so classes are uneven;
 * length 1 + (i * 13) % 17 (+ 20 for every 23rd, long ones); ids i * 100 + t. */
static guint
example_class (guint64 i, guint n_classes)
{
  return i % 4 == 3 ? 0 : (guint) ((i * 7 + i / 5) % n_classes);
}

static guint64
example_length (guint64 i)
{
  return 1 + (i * 13) % 17 + (i % 23 == 5 ? 20 : 0);
}

static guint32
example_id (guint64 i, guint64 t)
{
  return (guint32) ((i * 100 + t) % 50000);
}

static const char *const class_names[] = { "alpha", "beta", "gamma" };

/* A set of @n synthetic examples, each appended in parts of at most @part ids. */
static GptdClassesSet *
make_set (guint64 n, gsize part)
{
  GptdClassesSet *set = gptd__classes_new (class_names, 3);
  g_autofree guint32 *ids = g_new (guint32, 64);
  for (guint64 i = 0; i < n; i++)
    {
      guint64 len = example_length (i);
      for (guint64 t = 0; t < len; t++)
        ids[t] = example_id (i, t);
      for (guint64 t = 0; t < len; t += part)
        {
          g_autoptr (GError) error = NULL;
          gsize k = MIN (part, len - t);
          g_assert_true (gptd__classes_append (set, class_names[example_class (i, 3)],
                                               ids + t, k, t + k == len, "test", &error));
          g_assert_no_error (error);
        }
    }
  return set;
}

/* ---- Pure functions --------------------------------------------------------------- */

static void
test_split_sizes_golden (void)
{
  g_autofree char *path = g_test_build_filename (G_TEST_DIST, "golden", "classes",
                                                 "split-sizes.txt", NULL);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  guint checked = 0;
  for (guint i = 0; lines[i] && lines[i][0]; i++)
    {
      guint64 n, want[3];
      double tf, vf;
      g_assert_cmpint (sscanf (lines[i], "%" G_GUINT64_FORMAT " %lf %lf %" G_GUINT64_FORMAT
                               " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT, &n, &tf, &vf,
                               &want[0], &want[1], &want[2]), ==, 6);
      double fractions[3] = { tf, vf, 1.0 - tf - vf };
      guint64 got[3] = { 0 };
      gptd__classes_split_sizes (n, fractions, 3, got);
      if (got[0] != want[0] || got[1] != want[1] || got[2] != want[2])
        g_error ("n=%" G_GUINT64_FORMAT " split %g,%g: got %" G_GUINT64_FORMAT "/%"
                 G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT ", the book %s", n, tf, vf,
                 got[0], got[1], got[2], lines[i]);
      checked++;
    }
  g_assert_cmpuint (checked, >, 1300);

  /* A zero fraction leaves its split empty; fractions below 1 leave the rest out. */
  static const struct { guint64 n; double f[3]; guint nf; guint64 want[3]; } cases[] = {
    { 10, { 0.7, 0.3, 0.0 }, 3, { 7, 3, 0 } },
    { 10, { 0.7, 0.0, 0.3 }, 3, { 7, 0, 3 } },
    { 10, { 0.5, 0.2 }, 2, { 5, 2, 0 } },
    { 11, { 0.8, 0.2 }, 2, { 8, 3, 0 } },
    { 10, { 1.0 }, 1, { 10, 0, 0 } },
    { 10, { 0.0, 0.0, 1.0 }, 3, { 0, 0, 10 } },
    { 0, { 0.7, 0.1, 0.2 }, 3, { 0, 0, 0 } },
    { 90, { 0.7, 0.1, 0.2 }, 3, { 62, 9, 19 } },
  };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      guint64 got[3] = { 0 };
      gptd__classes_split_sizes (cases[c].n, cases[c].f, cases[c].nf, got);
      g_assert_cmpuint (got[0], ==, cases[c].want[0]);
      g_assert_cmpuint (got[1], ==, cases[c].want[1]);
      g_assert_cmpuint (got[2], ==, cases[c].want[2]);
    }
}

static void
test_undersample (void)
{
  /* 3 classes: 60, 9 and 31 examples, interleaved. */
  guint32 labels[100];
  for (guint i = 0; i < 100; i++)
    labels[i] = i % 10 == 4 ? 1 : (i % 3 == 0 ? 2 : 0);
  guint counts[3] = { 0 };
  for (guint i = 0; i < 100; i++)
    counts[labels[i]]++;
  g_assert_cmpuint (counts[1], ==, 10);
  guint64 kept[100], again[100], other[100];
  guint64 n = gptd__classes_undersample (labels, 100, 3, 123, kept);
  g_assert_cmpuint (n, ==, 30);
  guint per[3] = { 0 };
  for (guint64 k = 0; k < n; k++)
    {
      if (k > 0)
        g_assert_cmpuint (kept[k], >, kept[k - 1]);   /* ascending, no repeats */
      per[labels[kept[k]]]++;
    }
  g_assert_cmpuint (per[0], ==, 10);
  g_assert_cmpuint (per[1], ==, 10);
  g_assert_cmpuint (per[2], ==, 10);
  /* The smallest class is kept whole. */
  for (guint i = 0, k = 0; i < 100; i++)
    if (labels[i] == 1)
      {
        while (k < n && kept[k] < i)
          k++;
        g_assert_cmpuint (kept[k], ==, i);
      }
  /* The same seed gives the same sample; another seed another one. */
  g_assert_cmpuint (gptd__classes_undersample (labels, 100, 3, 123, again), ==, 30);
  g_assert_cmpmem (kept, sizeof kept[0] * 30, again, sizeof again[0] * 30);
  g_assert_cmpuint (gptd__classes_undersample (labels, 100, 3, 124, other), ==, 30);
  g_assert_true (memcmp (kept, other, sizeof kept[0] * 30) != 0);
  /* A class with no example is left alone: 2 classes of 60 and 40 -> 40 + 40. */
  for (guint i = 0; i < 100; i++)
    labels[i] = i < 60 ? 2 : 0;
  g_assert_cmpuint (gptd__classes_undersample (labels, 100, 3, 1, kept), ==, 80);
}

/* Checks the rows of every batch of every split against the examples; batches of 3,
 * the train split's last incomplete one dropped when @drop_last. */
static void
check_rows (GptdClassesSet *set, gint32 pad, gboolean drop_last)
{
  guint64 len = gptd__classes_max_length (set);
  guint64 bs = 3;
  g_autofree gint32 *inputs = g_new (gint32, bs * len);
  gint32 labels[3];
  guint32 lengths[3];
  for (guint k = 0; k < 3; k++)
    {
      const guint64 *order = gptd__classes_order (set, k, FALSE, 0);
      guint64 size = gptd__classes_split_size (set, k);
      guint64 rows_seen = 0;
      for (guint64 b = 0; b < gptd__classes_n_batches (set, k); b++)
        {
          guint rows = gptd__classes_fill (set, k, order, b, pad, inputs, labels, lengths);
          g_assert_cmpuint (rows, ==, MIN (bs, size - b * bs));
          for (guint r = 0; r < rows; r++)
            {
              guint64 ex = gptd__classes_example_index (set, k, b * bs + r);
              guint64 n = MIN (example_length (ex), len);
              g_assert_cmpint (labels[r], ==, (gint32) example_class (ex, 3));
              g_assert_cmpuint (lengths[r], ==, n);
              for (guint64 t = 0; t < len; t++)
                g_assert_cmpint (inputs[r * len + t], ==,
                                 t < n ? (gint32) example_id (ex, t) : pad);
            }
          rows_seen += rows;
        }
      /* drop-last: the train split loses its last incomplete batch, no other does. */
      g_assert_cmpuint (rows_seen, ==, k == 0 && drop_last ? size / bs * bs : size);
    }
}

static void
test_build (void)
{
  /* 200 examples in parts of 5 ids: alpha 110, beta 60, gamma 30. */
  g_autoptr (GptdClassesSet) set = make_set (200, 5);
  g_assert_cmpuint (gptd__classes_n_examples (set), ==, 200);
  guint64 counts[3] = { 0 };
  for (guint64 i = 0; i < 200; i++)
    counts[example_class (i, 3)]++;
  for (guint c = 0; c < 3; c++)
    g_assert_cmpuint (gptd__classes_class_count (set, c), ==, counts[c]);

  GptdClassesConfig config = { GPTD__CLASSES_BALANCE_NONE, { 0.7, 0.1, 0.2 }, 3, 5, 0, 3,
                               TRUE };
  g_autoptr (GError) error = NULL;
  g_assert_true (gptd__classes_build (set, &config, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (gptd__classes_n_kept (set), ==, 200);
  g_assert_cmpuint (gptd__classes_split_size (set, 0), ==, 140);
  g_assert_cmpuint (gptd__classes_split_size (set, 1), ==, 20);
  g_assert_cmpuint (gptd__classes_split_size (set, 2), ==, 40);
  g_assert_cmpuint (gptd__classes_n_batches (set, 0), ==, 46);   /* 140 / 3, dropped */
  g_assert_cmpuint (gptd__classes_n_batches (set, 1), ==, 7);    /* 20 / 3, kept */
  g_assert_cmpuint (gptd__classes_n_batches (set, 2), ==, 14);

  /* Every example exactly once, and shuffled (not in input order); the length is
   * the longest training example. */
  g_autofree guint *seen = g_new0 (guint, 200);
  guint64 longest = 0, in_order = 0, truncated[3] = { 0 };
  for (guint k = 0; k < 3; k++)
    for (guint64 i = 0; i < gptd__classes_split_size (set, k); i++)
      {
        guint64 ex = gptd__classes_example_index (set, k, i);
        seen[ex]++;
        in_order += k == 0 && ex == i;
        if (k == 0)
          longest = MAX (longest, example_length (ex));
      }
  for (guint i = 0; i < 200; i++)
    g_assert_cmpuint (seen[i], ==, 1);
  g_assert_cmpuint (in_order, <, 20);
  g_assert_cmpuint (gptd__classes_max_length (set), ==, longest);
  for (guint k = 0; k < 3; k++)
    for (guint64 i = 0; i < gptd__classes_split_size (set, k); i++)
      truncated[k] += example_length (gptd__classes_example_index (set, k, i)) > longest;
  g_assert_cmpuint (truncated[0], ==, 0);
  for (guint k = 0; k < 3; k++)
    g_assert_cmpuint (gptd__classes_n_truncated (set, k), ==, truncated[k]);
  check_rows (set, 50256, TRUE);

  /* The same seed builds the same data set. */
  g_autoptr (GptdClassesSet) same = make_set (200, 64);
  g_assert_true (gptd__classes_build (same, &config, &error));
  for (guint k = 0; k < 3; k++)
    for (guint64 i = 0; i < gptd__classes_split_size (set, k); i++)
      g_assert_cmpuint (gptd__classes_example_index (same, k, i), ==,
                        gptd__classes_example_index (set, k, i));
}

/* max-length below the longest example: every split is truncated to it; with
 * undersampling each class keeps 30 (as many as gamma has). */
static void
test_build_max_length (void)
{
  g_autoptr (GptdClassesSet) set = make_set (200, 7);
  GptdClassesConfig config = { GPTD__CLASSES_BALANCE_UNDERSAMPLE, { 0.7, 0.1, 0.2 }, 3, 9,
                               6, 3, FALSE };
  g_autoptr (GError) error = NULL;
  g_assert_true (gptd__classes_build (set, &config, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (gptd__classes_n_kept (set), ==, 90);
  g_assert_cmpuint (gptd__classes_max_length (set), ==, 6);
  /* The book's int(90 * 0.7) is 62. */
  g_assert_cmpuint (gptd__classes_split_size (set, 0), ==, 62);
  g_assert_cmpuint (gptd__classes_split_size (set, 1), ==, 9);
  g_assert_cmpuint (gptd__classes_split_size (set, 2), ==, 19);
  g_assert_cmpuint (gptd__classes_n_batches (set, 0), ==, 21);   /* 62 / 3, kept */
  guint per[3] = { 0 };
  for (guint k = 0; k < 3; k++)
    {
      guint64 trunc = 0;
      for (guint64 i = 0; i < gptd__classes_split_size (set, k); i++)
        {
          guint64 ex = gptd__classes_example_index (set, k, i);
          per[example_class (ex, 3)]++;
          trunc += example_length (ex) > 6;
        }
      g_assert_cmpuint (gptd__classes_n_truncated (set, k), ==, trunc);
      g_assert_cmpuint (trunc, >, 0);
    }
  g_assert_cmpuint (per[0], ==, 30);
  g_assert_cmpuint (per[1], ==, 30);
  g_assert_cmpuint (per[2], ==, 30);
  check_rows (set, 7, FALSE);

  /* The default length over a train split without the long examples: validation or
   * test examples longer than it are truncated to it. */
  g_autoptr (GptdClassesSet) small = make_set (60, 64);
  GptdClassesConfig c2 = { GPTD__CLASSES_BALANCE_NONE, { 0.5, 0.5 }, 2, 3, 0, 3, TRUE };
  g_assert_true (gptd__classes_build (small, &c2, &error));
  guint64 longest_train = 0, longest_val = 0;
  for (guint64 i = 0; i < 30; i++)
    {
      longest_train = MAX (longest_train,
                           example_length (gptd__classes_example_index (small, 0, i)));
      longest_val = MAX (longest_val,
                         example_length (gptd__classes_example_index (small, 1, i)));
    }
  g_assert_cmpuint (gptd__classes_max_length (small), ==, longest_train);
  g_assert_cmpuint (longest_val, >, longest_train);   /* seed 3 puts a long one there */
  g_assert_cmpuint (gptd__classes_n_truncated (small, 1), >, 0);
  check_rows (small, 0, TRUE);
}

static void
test_build_errors (void)
{
  g_autoptr (GError) error = NULL;
  guint32 ids[3] = { 1, 2, 3 };

  /* A class without examples is named. */
  g_autoptr (GptdClassesSet) set = gptd__classes_new (class_names, 3);
  g_assert_true (gptd__classes_append (set, "alpha", ids, 3, TRUE, "s1", NULL));
  g_assert_true (gptd__classes_append (set, "gamma", ids, 3, TRUE, "s2", NULL));
  GptdClassesConfig config = { GPTD__CLASSES_BALANCE_NONE, { 0.7, 0.1, 0.2 }, 3, 1, 0, 1,
                               TRUE };
  g_assert_false (gptd__classes_build (set, &config, &error));
  g_assert_cmpstr (error->message, ==, "class \"beta\" has no example "
                   "(labels=alpha,beta,gamma; 2 examples read)");
  g_clear_error (&error);

  /* Labels: not in the list, missing, changing within an example; no tokens. */
  g_autoptr (GptdClassesSet) s2 = gptd__classes_new (class_names, 3);
  g_assert_false (gptd__classes_append (s2, "delta", ids, 3, TRUE, "source f:7", &error));
  g_assert_cmpstr (error->message, ==,
                   "source f:7: label \"delta\" is not one of labels=alpha,beta,gamma");
  g_clear_error (&error);
  g_assert_false (gptd__classes_append (s2, "", ids, 3, TRUE, "source f:8", &error));
  g_assert_nonnull (strstr (error->message, "source f:8 has no label"));
  g_clear_error (&error);
  g_assert_true (gptd__classes_append (s2, "beta", ids, 3, FALSE, "source f:9", NULL));
  g_assert_false (gptd__classes_append (s2, "alpha", ids, 3, TRUE, "source f:9", &error));
  g_assert_nonnull (strstr (error->message, "source f:9: label \"alpha\" changes"));
  g_clear_error (&error);
  g_autoptr (GptdClassesSet) s3 = gptd__classes_new (class_names, 3);
  g_assert_false (gptd__classes_append (s3, "beta", ids, 0, TRUE, "source f:10", &error));
  g_assert_cmpstr (error->message, ==, "source f:10: the example has no token");
  g_clear_error (&error);

  /* An empty train split cannot give the length. */
  g_autoptr (GptdClassesSet) s4 = make_set (30, 64);
  GptdClassesConfig c4 = { GPTD__CLASSES_BALANCE_NONE, { 0.0, 0.5, 0.5 }, 3, 1, 0, 1, TRUE };
  g_assert_false (gptd__classes_build (s4, &c4, &error));
  g_assert_nonnull (strstr (error->message, "give max-length"));
}

/* ---- The stage ------------------------------------------------------------------ */

/* Sends the synthetic examples as labelled Tokens, each in parts of `part` ids. */
static const GptdParamSpec source_params[] = {
  { "n", GPTD_PARAM_INT, "100", 0, 1e6, NULL, "examples", 0 },
  { "part", GPTD_PARAM_INT, "64", 1, 1e6, NULL, "ids per message", 0 },
  { "classes", GPTD_PARAM_INT, "3", 1, 3, NULL, "classes used (of alpha, beta, gamma)", 0 },
  { NULL }
};
static const GptdPadSpec tokens_out[] = { { "default", "gptd.Tokens", 0 }, { NULL } };

typedef struct {
  guint64 n, part;
  guint classes;
} Source;

static gpointer
source_create (GptdStageContext *ctx, const GptdParams *p, GError **error)
{
  Source *s = g_new0 (Source, 1);
  s->n = gptd_params_get_int (p, "n");
  s->part = gptd_params_get_int (p, "part");
  s->classes = gptd_params_get_int (p, "classes");
  return s;
}

static gboolean
source_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  Source *s = data;
  guint32 ids[64];
  for (guint64 i = 0; i < s->n; i++)
    {
      guint64 len = example_length (i);
      g_autofree char *source = g_strdup_printf ("synthetic:%" G_GUINT64_FORMAT, i + 1);
      for (guint64 t = 0; t < len; t++)
        ids[t] = example_id (i, t);
      for (guint64 t = 0; t < len; t += s->part)
        {
          Gptd__Tokens tk = GPTD__TOKENS__INIT;
          guint64 k = MIN (s->part, len - t);
          tk.source = source;
          tk.index = i;
          tk.ids = ids + t;
          tk.n_ids = k;
          tk.last = t + k == len;
          tk.vocab_size = 50257;
          tk.label = (char *) class_names[example_class (i, 3) % s->classes];
          if (!gptd_stage_push (ctx, 0, &tk.base, error))
            return FALSE;
        }
    }
  return TRUE;
}

static const GptdStageType source_type = {
  .name = "test-labelled-source",
  .description = "labelled synthetic tokens",
  .params = source_params,
  .outputs = tokens_out,
  .create = source_create,
  .run = source_run,
  .destroy = g_free,
};

/* Records the batches answering requests "split:epoch:seed:shuffle:start:limit;...",
 * one line per batch: "B split epoch index batches rows seq | inputs | labels |
 * lengths | names", and "E split epoch batches total" per end of epoch. */
static const GptdParamSpec sink_params[] = {
  { "requests", GPTD_PARAM_STRING, NULL, 0, 0, NULL, "requests", GPTD_PARAM_REQUIRED },
  { "output", GPTD_PARAM_STRING, NULL, 0, 0, NULL, "file", GPTD_PARAM_REQUIRED },
  { NULL }
};
static const GptdPadSpec batch_in[] = { { "default", "gptd.Batch", GPTD_PAD_EPOCHS },
                                        { NULL } };

typedef struct {
  char *requests;
  char *output;
} Sink;

static gpointer
sink_create (GptdStageContext *ctx, const GptdParams *p, GError **error)
{
  Sink *s = g_new0 (Sink, 1);
  s->requests = g_strdup (gptd_params_get_string (p, "requests"));
  s->output = g_strdup (gptd_params_get_string (p, "output"));
  return s;
}

static void
sink_destroy (gpointer data)
{
  Sink *s = data;
  g_free (s->requests);
  g_free (s->output);
  g_free (s);
}

static gboolean
sink_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  Sink *s = data;
  g_autoptr (GString) out = g_string_new (NULL);
  g_auto (GStrv) reqs = g_strsplit (s->requests, ";", -1);
  for (guint r = 0; reqs[r]; r++)
    {
      g_auto (GStrv) f = g_strsplit (reqs[r], ":", -1);
      g_assert_cmpuint (g_strv_length (f), ==, 6);
      Gptd__EpochRequest req = GPTD__EPOCH_REQUEST__INIT;
      req.split = f[0];
      req.epoch = atoi (f[1]);
      req.seed = atoi (f[2]);
      req.shuffle = atoi (f[3]);
      req.start = atoi (f[4]);
      req.limit = atoi (f[5]);
      if (!gptd_stage_request_epoch (ctx, 0, &req, error))
        return FALSE;
      for (;;)
        {
          ProtobufCMessage *msg = NULL;
          GptdPullResult res = gptd_stage_pull (ctx, 0, &msg, error);
          if (res == GPTD_PULL_ERROR)
            return FALSE;
          g_assert_cmpint (res, !=, GPTD_PULL_END_OF_STREAM);
          if (res == GPTD_PULL_END_OF_EPOCH)
            {
              const Gptd__EndOfEpoch *e = (const Gptd__EndOfEpoch *) msg;
              g_string_append_printf (out, "E %s %u %" G_GUINT64_FORMAT " %"
                                      G_GUINT64_FORMAT "\n", e->split, e->epoch,
                                      e->batches, e->total);
              protobuf_c_message_free_unpacked (msg, NULL);
              break;
            }
          const Gptd__Batch *b = (const Gptd__Batch *) msg;
          g_assert_cmpuint (b->n_targets, ==, 0);
          g_assert_cmpuint (b->n_inputs, ==, (gsize) b->batch_size * b->seq_len);
          g_assert_cmpuint (b->n_labels, ==, b->batch_size);
          g_assert_cmpuint (b->n_lengths, ==, b->batch_size);
          g_string_append_printf (out, "B %s %u %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
                                  " %u %u |", b->split, b->epoch, b->index, b->batches,
                                  b->batch_size, b->seq_len);
          for (gsize i = 0; i < b->n_inputs; i++)
            g_string_append_printf (out, " %d", b->inputs[i]);
          g_string_append (out, " |");
          for (gsize i = 0; i < b->n_labels; i++)
            g_string_append_printf (out, " %d", b->labels[i]);
          g_string_append (out, " |");
          for (gsize i = 0; i < b->n_lengths; i++)
            g_string_append_printf (out, " %u", b->lengths[i]);
          g_string_append (out, " |");
          for (gsize i = 0; i < b->n_label_names; i++)
            g_string_append_printf (out, " %s", b->label_names[i]);
          g_string_append_c (out, '\n');
          protobuf_c_message_free_unpacked (msg, NULL);
        }
    }
  return g_file_set_contents (s->output, out->str, (gssize) out->len, error);
}

static const GptdStageType sink_type = {
  .name = "test-class-batch-sink",
  .description = "records classification batches",
  .params = sink_params,
  .inputs = batch_in,
  .create = sink_create,
  .run = sink_run,
  .destroy = sink_destroy,
};

static const GptdPluginDescriptor test_plugin = {
  GPTD_PLUGIN_ABI_MAJOR, GPTD_PLUGIN_ABI_MINOR, "test-classes", "test stages", "1", "MIT",
  (const GptdStageType *const[]){ &source_type, &sink_type, NULL },
  { NULL }
};

static GptdRegistry *registry;

static char *
make_dir (void)
{
  char *dir = g_dir_make_tmp ("gptd-test-classes-XXXXXX", NULL);
  g_assert_nonnull (dir);
  return dir;
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

/* Runs @pipeline (with @OUT@ for the sink's output) and returns the recorded lines. */
static GStrv
run_and_record (const char *dir, const char *pipeline, TestEvents *ev, GError **error)
{
  g_autofree char *out = g_build_filename (dir, "batches.txt", NULL);
  g_autoptr (GString) text = g_string_new (pipeline);
  g_string_replace (text, "@OUT@", out, 0);
  if (!test_run_pipeline (registry, text->str, 0, ev, error))
    return NULL;
  g_autofree char *data = NULL;
  g_assert_true (g_file_get_contents (out, &data, NULL, NULL));
  GStrv lines = g_strsplit (data, "\n", -1);
  return lines;
}

/* The line of batch @b of @split in @order, as the sink writes it, computed from
 * a data set built here with the stage's settings. */
static char *
expected_line (GptdClassesSet *set, guint split, guint epoch, const guint64 *order,
               guint64 b, gint32 pad)
{
  guint64 len = gptd__classes_max_length (set);
  g_autofree gint32 *inputs = g_new (gint32, 4 * len);
  gint32 labels[4];
  guint32 lengths[4];
  guint rows = gptd__classes_fill (set, split, order, b, pad, inputs, labels, lengths);
  GString *s = g_string_new (NULL);
  g_string_append_printf (s, "B %s %u %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %u %u |",
                          gptd__windows_split_name (split), epoch, b,
                          gptd__classes_n_batches (set, split), rows, (guint) len);
  for (guint64 i = 0; i < rows * len; i++)
    g_string_append_printf (s, " %d", inputs[i]);
  g_string_append (s, " |");
  for (guint r = 0; r < rows; r++)
    g_string_append_printf (s, " %d", labels[r]);
  g_string_append (s, " |");
  for (guint r = 0; r < rows; r++)
    g_string_append_printf (s, " %u", lengths[r]);
  g_string_append (s, " | alpha beta gamma");
  return g_string_free (s, FALSE);
}

static void
test_stage_epochs (void)
{
  g_autofree char *dir = make_dir ();
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  /* 150 examples in parts of 4 ids; split 0.6,0.2,0.2: 90 / 30 / 30, batches of 4:
   * train 22 (drop-last), validation 8, test 8. */
  g_auto (GStrv) lines = run_and_record (dir,
    "[pipeline]\nname=c\nlabels=alpha,beta,gamma\n"
    "[stage src]\ntype=test-labelled-source\nn=150\npart=4\n"
    "[stage data]\ntype=classification-dataset\ninput=src\nlabels=${labels}\n"
    "split=0.6,0.2,0.2\nbatch-size=4\nseed=9\npad-id=50000\n"
    "[stage sink]\ntype=test-class-batch-sink\ninput=data\noutput=@OUT@\n"
    "requests=train:0:11:1:0:0;train:0:11:1:5:3;train:1:11:1:0:0;validation:0:0:0:0:0;"
    "test:0:0:0:6:0;train:0:11:1:0:0;:0:0:0:0:0\n", &ev, &error);
  g_assert_no_error (error);
  g_assert_cmpint (test_events_find (&ev, "data: train: 90 examples, 22 batches, 0 truncated"),
                   >=, 0);

  /* The reference: the same examples, settings and seeds. */
  g_autoptr (GptdClassesSet) set = make_set (150, 64);
  GptdClassesConfig config = { GPTD__CLASSES_BALANCE_NONE, { 0.6, 0.2, 0.2 }, 3, 9, 0, 4,
                               TRUE };
  g_assert_true (gptd__classes_build (set, &config, &error));
  guint64 len = gptd__classes_max_length (set);
  g_autofree char *max_log = g_strdup_printf ("data: max-length %" G_GUINT64_FORMAT
                                              " (the longest training example)", len);
  g_assert_cmpint (test_events_find (&ev, max_log), >=, 0);
  g_autofree guint64 *order0 = g_memdup2 (gptd__classes_order (set, 0, TRUE,
                                          gptd__windows_shuffle_key (9, 11, 0, 0)),
                                          90 * sizeof (guint64));
  g_autofree guint64 *order1 = g_memdup2 (gptd__classes_order (set, 0, TRUE,
                                          gptd__windows_shuffle_key (9, 11, 1, 0)),
                                          90 * sizeof (guint64));
  g_assert_true (memcmp (order0, order1, 90 * sizeof (guint64)) != 0);
  g_autofree guint64 *plain_val = g_memdup2 (gptd__classes_order (set, 1, FALSE, 0),
                                             30 * sizeof (guint64));
  g_autofree guint64 *plain_test = g_memdup2 (gptd__classes_order (set, 2, FALSE, 0),
                                              30 * sizeof (guint64));
  g_autofree guint64 *plain_train = g_memdup2 (gptd__classes_order (set, 0, FALSE, 0),
                                               90 * sizeof (guint64));

  guint line = 0;
  /* Epoch 0 shuffled. */
  for (guint64 b = 0; b < 22; b++)
    {
      g_autofree char *want = expected_line (set, 0, 0, order0, b, 50000);
      g_assert_cmpstr (lines[line++], ==, want);
    }
  g_assert_cmpstr (lines[line++], ==, "E train 0 22 22");
  /* The same epoch from batch 5, 3 batches: the same batches. */
  for (guint64 b = 5; b < 8; b++)
    g_assert_cmpstr (lines[line++], ==, lines[b]);
  g_assert_cmpstr (lines[line++], ==, "E train 0 3 22");
  /* Epoch 1: another order. */
  for (guint64 b = 0; b < 22; b++)
    {
      g_autofree char *want = expected_line (set, 0, 1, order1, b, 50000);
      g_assert_cmpstr (lines[line++], ==, want);
    }
  g_assert_cmpstr (lines[line++], ==, "E train 1 22 22");
  /* Validation in order, its last batch kept (30 = 7 * 4 + 2). */
  for (guint64 b = 0; b < 8; b++)
    {
      g_autofree char *want = expected_line (set, 1, 0, plain_val, b, 50000);
      g_assert_cmpstr (lines[line++], ==, want);
    }
  g_assert_true (g_str_has_prefix (lines[line - 1], "B validation 0 7 8 2 "));
  g_assert_cmpstr (lines[line++], ==, "E validation 0 8 8");
  /* Test from batch 6. */
  for (guint64 b = 6; b < 8; b++)
    {
      g_autofree char *want = expected_line (set, 2, 0, plain_test, b, 50000);
      g_assert_cmpstr (lines[line++], ==, want);
    }
  g_assert_cmpstr (lines[line++], ==, "E test 0 2 8");
  /* Epoch 0 again: bit for bit the first answer. */
  for (guint64 b = 0; b < 22; b++)
    g_assert_cmpstr (lines[line++], ==, lines[b]);
  g_assert_cmpstr (lines[line++], ==, "E train 0 22 22");
  /* Every split in order: train 22, validation 8, test 8. */
  for (guint k = 0; k < 3; k++)
    for (guint64 b = 0; b < (k == 0 ? 22u : 8u); b++)
      {
        g_autofree char *want = expected_line (set, k, 0,
                                               k == 0 ? plain_train : k == 1 ? plain_val
                                                                             : plain_test,
                                               b, 50000);
        g_assert_cmpstr (lines[line++], ==, want);
      }
  g_assert_cmpstr (lines[line++], ==, "E  0 38 38");
  g_assert_cmpstr (lines[line], ==, "");

  /* A shuffled train epoch holds 88 distinct training examples (2 dropped). */
  g_autoptr (GHashTable) firsts = g_hash_table_new (g_direct_hash, g_direct_equal);
  for (guint64 b = 0; b < 22; b++)
    {
      g_auto (GStrv) parts = g_strsplit (lines[b], "|", -1);
      g_auto (GStrv) ids = g_strsplit (g_strstrip (parts[1]), " ", -1);
      for (guint r = 0; r < 4; r++)
        g_hash_table_add (firsts, GINT_TO_POINTER (atoi (ids[r * len]) / 100 + 1));
    }
  g_assert_cmpuint (g_hash_table_size (firsts), ==, 88);
  test_events_clear (&ev);
  remove_tree (dir);
}

static void
test_stage_errors (void)
{
  g_autofree char *dir = make_dir ();
  static const struct { const char *keys; const char *message; } runs[] = {
    /* the source sends gamma; the stage knows two classes */
    { "classes=3\n---labels=alpha,beta\n",
      "stage data: source synthetic:3 (index 2): label \"gamma\" is not one of "
      "labels=alpha,beta" },
    /* no gamma is sent */
    { "classes=2\n---labels=alpha,beta,gamma\n",
      "stage data: class \"gamma\" has no example (labels=alpha,beta,gamma; 40 examples "
      "read)" },
    { "classes=3\n---labels=alpha,beta,gamma\npad-id=60000\n",
      "stage data: pad-id: 60000 is not an id of the vocabulary of the tokens (50257 ids)" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (runs); i++)
    {
      g_auto (GStrv) keys = g_strsplit (runs[i].keys, "---", 2);
      g_autofree char *fmt = g_strdup_printf (
        "[pipeline]\nname=c\n"
        "[stage src]\ntype=test-labelled-source\nn=40\n%s"
        "[stage data]\ntype=classification-dataset\ninput=src\n%s"
        "[stage sink]\ntype=test-class-batch-sink\ninput=data\noutput=@OUT@\n"
        "requests=train:0:0:0:0:0\n", keys[0], keys[1]);
      TestEvents ev;
      test_events_init (&ev);
      g_autoptr (GError) error = NULL;
      g_auto (GStrv) lines = run_and_record (dir, fmt, &ev, &error);
      g_assert_null (lines);
      g_assert_nonnull (error);
      g_assert_cmpstr (error->message, ==, runs[i].message);
      test_events_clear (&ev);
    }

  /* Keys that cannot work are load-time errors naming the key. */
  static const struct { const char *keys; const char *message; } loads[] = {
    { "labels=spam\n", "labels: give at least two class names" },
    { "labels=ham,,spam\n", "labels: name 2 of \"ham,,spam\" is empty" },
    { "labels=ham,spam,ham\n", "labels: \"ham\" is given twice" },
    { "labels=ham,spam\nsplit=0.7,0.2,0.2\n", "split: the fractions sum to 1.1" },
    { "labels=ham,spam\nsplit=0.5,0.1,0.1,0.1\n", "split: give one to three fractions" },
    { "labels=ham,spam\nsplit=0,0.5,0.5\n", "split: with an empty train split, give "
      "max-length" },
  };
  for (guint i = 0; i < G_N_ELEMENTS (loads); i++)
    {
      g_autofree char *text = g_strdup_printf (
        "[pipeline]\nname=c\n[stage src]\ntype=test-labelled-source\n"
        "[stage data]\ntype=classification-dataset\ninput=src\n%s"
        "[stage sink]\ntype=test-class-batch-sink\ninput=data\noutput=x\nrequests=x\n",
        loads[i].keys);
      g_autoptr (GError) error = NULL;
      g_autoptr (GptdPipeline) p = gptd_pipeline_load_data (registry, text, -1, "c.pipeline",
                                                            NULL, NULL, &error);
      g_assert_null (p);
      g_assert_error (error, GPTD_PIPELINE_ERROR, GPTD_PIPELINE_ERROR_CHECK);
      if (strstr (error->message, loads[i].message) == NULL)
        g_error ("%s: no \"%s\"", error->message, loads[i].message);
      g_assert_nonnull (strstr (error->message, "stage data"));
    }
  /* An empty train split is fine with max-length. */
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdPipeline) p = gptd_pipeline_load_data (registry,
    "[pipeline]\nname=c\n[stage src]\ntype=test-labelled-source\n"
    "[stage data]\ntype=classification-dataset\ninput=src\nlabels=a,b\nsplit=0,0,1\n"
    "max-length=16\n"
    "[stage sink]\ntype=test-class-batch-sink\ninput=data\noutput=x\nrequests=x\n",
    -1, "c.pipeline", NULL, NULL, &error);
  g_assert_no_error (error);
  remove_tree (dir);
}

/* ---- The SMS Spam Collection ------------------------------------------------------ */

static char *
sms_path (void)
{
  const char *dd = g_getenv ("GPTD_DATA_DIR");
  g_autofree char *path = dd ? g_build_filename (dd, "sms-spam-collection",
                                                 "SMSSpamCollection", NULL) : NULL;
  g_autofree char *enc = dd ? g_build_filename (dd, "gpt2", "encoder.json", NULL) : NULL;
  if (path == NULL || !g_file_test (path, G_FILE_TEST_IS_REGULAR)
      || !g_file_test (enc, G_FILE_TEST_IS_REGULAR))
    {
      g_test_skip ("GPTD_DATA_DIR has no sms-spam-collection/SMSSpamCollection or gpt2/");
      return NULL;
    }
  return g_steal_pointer (&path);
}

static void
test_sms (void)
{
  g_autofree char *path = sms_path ();
  if (path == NULL)
    return;
  g_autofree char *dir = make_dir ();
  /* drop-last=false so that every kept message is counted. */
  g_autofree char *fmt = g_strdup_printf (
    "[pipeline]\nname=sms\nlabels=ham,spam\n"
    "[stage read]\ntype=table-source\npath=%s\nlabels=${labels}\n"
    "[stage tok]\ntype=bpe-tokenizer\ninput=read\nvocab=gpt2\n"
    "[stage data]\ntype=classification-dataset\ninput=tok\nlabels=${labels}\n"
    "balance=undersample\ndrop-last=false\n"
    "[stage sink]\ntype=test-class-batch-sink\ninput=data\noutput=@OUT@\n"
    "requests=train:0:0:1:0:0;validation:0:0:0:0:0;test:0:0:0:0:0\n", path);
  TestEvents ev;
  test_events_init (&ev);
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) lines = run_and_record (dir, fmt, &ev, &error);
  g_assert_no_error (error);
  g_assert_cmpint (test_events_find (&ev, "data: 5574 examples (ham 4827, spam 747), "
                                     "undersampled to 1494"), >=, 0);
  g_assert_cmpint (test_events_find (&ev, "data: train: 1045 examples, 131 batches, 0 "
                                     "truncated"), >=, 0);
  g_assert_cmpint (test_events_find_prefix (&ev, "data: validation: 149 examples, 19 "
                                            "batches"), >=, 0);
  g_assert_cmpint (test_events_find_prefix (&ev, "data: test: 300 examples, 38 batches"),
                   >=, 0);
  guint rows[3] = { 0 }, per_class[2] = { 0 }, seq = 0;
  guint64 ends = 0;
  for (guint i = 0; lines[i] && lines[i][0]; i++)
    {
      if (lines[i][0] == 'E')
        {
          ends++;
          continue;
        }
      g_auto (GStrv) parts = g_strsplit (lines[i], "|", -1);
      char split[16];
      guint r, s;
      g_assert_cmpint (sscanf (parts[0], "B %15s %*u %*u %*u %u %u", split, &r, &s), ==, 3);
      g_assert_cmpstr (g_strstrip (parts[4]), ==, "ham spam");
      seq = seq ? seq : s;
      g_assert_cmpuint (s, ==, seq);   /* one length for every split */
      rows[gptd__windows_split_lookup (split)] += r;
      g_auto (GStrv) labels = g_strsplit (g_strstrip (parts[2]), " ", -1);
      g_auto (GStrv) lengths = g_strsplit (g_strstrip (parts[3]), " ", -1);
      g_auto (GStrv) ids = g_strsplit (g_strstrip (parts[1]), " ", -1);
      for (guint k = 0; k < r; k++)
        {
          per_class[atoi (labels[k])]++;
          guint n = atoi (lengths[k]);
          g_assert_cmpuint (n, >=, 1);
          g_assert_cmpuint (n, <=, s);
          for (guint t = n; t < s; t++)
            g_assert_cmpstr (ids[k * s + t], ==, "50256");
        }
    }
  g_assert_cmpuint (ends, ==, 3);
  g_assert_cmpuint (rows[0], ==, 1045);
  g_assert_cmpuint (rows[1], ==, 149);
  g_assert_cmpuint (rows[2], ==, 300);
  g_assert_cmpuint (per_class[0], ==, 747);
  g_assert_cmpuint (per_class[1], ==, 747);
  test_events_clear (&ev);
  remove_tree (dir);
}

/* The shipped pipeline runs: table-source -> bpe-tokenizer -> classification-dataset
 * -> dump, 130 + 19 + 38 batches. */
static void
test_shipped_pipeline (void)
{
  g_autofree char *sms = sms_path ();
  if (sms == NULL)
    return;
  g_autofree char *dir = make_dir ();
  g_autofree char *out = g_build_filename (dir, "batches.jsonl", NULL);
  g_autofree char *set_out = g_strdup_printf ("print.path=%s", out);
  g_autofree char *file = g_build_filename (g_getenv ("GPTD_SRCDIR"), "pipelines",
                                            "sms-spam-data.pipeline", NULL);
  const char *settings[] = { set_out, NULL };
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdPipeline) p = gptd_pipeline_load_file (registry, file, settings, NULL,
                                                        &error);
  g_assert_no_error (error);
  g_autoptr (GptdRunner) runner = gptd_runner_new (p, dir, NULL, NULL);
  g_assert_true (gptd_runner_run (runner, &error));
  g_assert_no_error (error);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (out, &text, NULL, NULL));
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  guint batches[3] = { 0 };
  for (guint i = 0; lines[i] && lines[i][0]; i++)
    {
      g_autoptr (JsonNode) node = json_from_string (lines[i], NULL);
      JsonObject *o = json_node_get_object (node);
      int k = gptd__windows_split_lookup (json_object_get_string_member (o, "split"));
      g_assert_cmpint (k, >=, 0);
      batches[k]++;
      g_assert_cmpuint (json_array_get_length (json_object_get_array_member (o, "label_names")),
                        ==, 2);
    }
  g_assert_cmpuint (batches[0], ==, 130);
  g_assert_cmpuint (batches[1], ==, 19);
  g_assert_cmpuint (batches[2], ==, 38);
  remove_tree (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_autoptr (GError) error = NULL;
  registry = gptd_registry_new ();
  g_assert_true (gptd_registry_scan (registry, &error));
  g_assert_no_error (error);
  g_assert_nonnull (gptd_registry_lookup (registry, "classification-dataset"));
  g_assert_true (gptd_registry_add_descriptor (registry, &test_plugin, "(test)", &error));
  g_assert_no_error (error);

  g_test_add_func ("/classes/split-sizes", test_split_sizes_golden);
  g_test_add_func ("/classes/undersample", test_undersample);
  g_test_add_func ("/classes/build", test_build);
  g_test_add_func ("/classes/build-max-length", test_build_max_length);
  g_test_add_func ("/classes/build-errors", test_build_errors);
  g_test_add_func ("/classification-dataset/epochs", test_stage_epochs);
  g_test_add_func ("/classification-dataset/errors", test_stage_errors);
  g_test_add_func ("/classification-dataset/sms", test_sms);
  g_test_add_func ("/classification-dataset/shipped-pipeline", test_shipped_pipeline);
  int rc = g_test_run ();
  gptd_registry_free (registry);
  return rc;
}

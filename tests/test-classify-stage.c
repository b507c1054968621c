/* test-classify-stage.c: the classifier library (gptd/classify.h) and the
 * `classifier` stage, on a tiny classifier directory written by the test (a
 * 1-block GPT-2 with GPT-2's vocabulary size, so that <|endoftext|> pads, a
 * 3-class head with a bias, and the byte-level tokenizer of
 * tests/golden/generate):
 *
 *  - class names, pooling and the training length come from config.json;
 *  - pooling=last: the probabilities are, bit for bit, the softmax of the
 *    model's forward over the first max-length ids padded with 50256 to the
 *    training length (the book's classify_review, the rows the trainer saw);
 *    a longer text reads its first tokens only;
 *  - pooling=last-token: the forward of the padded row read at the last real
 *    token (the trainer's pooled forward), within float rounding;
 *  - the stage gives the library's predictions for documents (chunked) and
 *    text=, as JSON lines and pushed gptd.Prediction messages, from model= and
 *    from a Model message;
 *  - a directory without config.json, a language model, a max-length longer
 *    than the context, and no model at all are errors naming what is wrong.
 */
#include "config.h"

#include <math.h>
#include <string.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include <gptd/bpe.h>
#include <gptd/classify.h>
#include <gptd/quant.h>
#include <gptd/gpt2-file.h>
#include <gptd/pipeline.h>
#include <gptd/plugin.h>
#include <gptd/registry.h>
#include <gptd/runner.h>

#define SEQ_LEN 12

static char *lm_dir;      /* a language model (tests/golden/generate/model) */
static char *tmp_root;
static char *last_dir;    /* the classifier, pooling=last */
static char *token_dir;   /* the same weights, pooling=last-token */
static const char *const class_names[] = { "ham", "spam", "eggs", NULL };

/* ---- Test stages ------------------------------------------------------------ */

/* test-model-source: one gptd.Model naming dir. */
static const GptdParamSpec model_source_params[] = {
  { "dir", GPTD_PARAM_PATH, NULL, 0, 0, NULL, "model directory", GPTD_PARAM_REQUIRED },
  { NULL }
};
static const GptdPadSpec model_out[] = { { "default", "gptd.Model", 0 }, { NULL } };

static gpointer
model_source_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  return g_strdup (gptd_params_get_string (params, "dir"));
}

static gboolean
model_source_run (gpointer self, GptdStageContext *ctx, GError **error)
{
  Gptd__Model m = GPTD__MODEL__INIT;
  m.path = self;
  return gptd_stage_push (ctx, 0, &m.base, error);
}

static const GptdStageType model_source_type = {
  .name = "test-model-source",
  .description = "sends one model",
  .params = model_source_params,
  .outputs = model_out,
  .create = model_source_create,
  .run = model_source_run,
  .destroy = g_free,
};

/* test-doc-source: each `|`-separated text as a document in 3-byte chunks. */
static const GptdParamSpec doc_source_params[] = {
  { "texts", GPTD_PARAM_STRING, NULL, 0, 0, NULL, "texts separated by |", GPTD_PARAM_REQUIRED },
  { NULL }
};
static const GptdPadSpec doc_out[] = { { "default", "gptd.Document", 0 }, { NULL } };

static gpointer
doc_source_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  return g_strsplit (gptd_params_get_string (params, "texts"), "|", -1);
}

static gboolean
doc_source_run (gpointer self, GptdStageContext *ctx, GError **error)
{
  char **texts = self;
  for (guint i = 0; texts[i] != NULL; i++)
    {
      gsize len = strlen (texts[i]);
      g_autofree char *source = g_strdup_printf ("doc%u", i);
      for (gsize off = 0; off < len; off += 3)
        {
          Gptd__Document d = GPTD__DOCUMENT__INIT;
          d.source = source;
          d.index = i;
          d.offset = off;
          d.text.data = (guint8 *) texts[i] + off;
          d.text.len = MIN (3, len - off);
          d.last = off + 3 >= len;
          d.label = (char *) "spam";
          if (!gptd_stage_push (ctx, 0, &d.base, error))
            return FALSE;
        }
    }
  return TRUE;
}

static void
strv_free (gpointer p)
{
  g_strfreev (p);
}

static const GptdStageType doc_source_type = {
  .name = "test-doc-source",
  .description = "sends documents",
  .params = doc_source_params,
  .outputs = doc_out,
  .create = doc_source_create,
  .run = doc_source_run,
  .destroy = strv_free,
};

/* test-prediction-sink: keeps the predictions it receives. */
static const GptdPadSpec prediction_in[] = { { "default", "gptd.Prediction", 0 }, { NULL } };
static GPtrArray *sink_predictions; /* Gptd__Prediction * */

static gpointer
sink_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  return g_new0 (int, 1);
}

static gboolean
sink_process (gpointer self, GptdStageContext *ctx, guint input,
              const ProtobufCMessage *msg, GError **error)
{
  guint8 buf[4096];
  gsize len = protobuf_c_message_pack (msg, buf);
  g_ptr_array_add (sink_predictions, gptd__prediction__unpack (NULL, len, buf));
  return TRUE;
}

static const GptdStageType sink_type = {
  .name = "test-prediction-sink",
  .description = "records predictions",
  .inputs = prediction_in,
  .create = sink_create,
  .process = sink_process,
  .destroy = g_free,
};

static const GptdPluginDescriptor test_plugin = {
  GPTD_PLUGIN_ABI_MAJOR, GPTD_PLUGIN_ABI_MINOR, "test-classify", "test stages", "1", "MIT",
  (const GptdStageType *const[]){ &model_source_type, &doc_source_type, &sink_type, NULL },
  { NULL }
};

static GptdRegistry *registry;

static GptdRegistry *
get_registry (void)
{
  if (registry == NULL)
    {
      g_autoptr (GError) error = NULL;
      const char *builddir = g_getenv ("GPTD_BUILDDIR");
      g_assert_nonnull (builddir);
      registry = gptd_registry_new ();
      g_autofree char *so = g_build_filename (builddir, "plugins", "generate", ".libs",
                                              "generate.so", NULL);
      g_assert_true (gptd_registry_load_file (registry, so, &error));
      g_assert_no_error (error);
      g_assert_true (gptd_registry_add_descriptor (registry, &test_plugin, "(test)", &error));
      g_assert_no_error (error);
    }
  return registry;
}

static void
on_event (const Gptd__Event *ev, gpointer data)
{
  if (ev->body_case == GPTD__EVENT__BODY_LOG)
    {
      GString *log = data;
      g_string_append_printf (log, "%s\n", ev->log->message);
      if (g_test_verbose ())
        g_printerr ("# %s: %s\n", ev->log->stage, ev->log->message);
    }
}

static gboolean
run_pipeline (const char *text, const char *run_dir, GString *log, GError **error)
{
  g_autoptr (GptdPipeline) pipeline =
    gptd_pipeline_load_data (get_registry (), text, -1, "test.pipeline", NULL, NULL, error);
  if (pipeline == NULL)
    return FALSE;
  g_autoptr (GptdRunner) runner = gptd_runner_new (pipeline, run_dir, on_event, log);
  return gptd_runner_run (runner, error);
}

/* ---- The tiny classifier -------------------------------------------------------- */

static void
remove_tree (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  const char *name;
  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *p = g_build_filename (dir, name, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_DIR))
        remove_tree (p);
      else
        g_unlink (p);
    }
  if (d != NULL)
    g_dir_close (d);
  g_rmdir (dir);
}

static void
make_classifiers (void)
{
  g_autoptr (GError) error = NULL;
  GptdGptConfig c = { 0 };
  c.n_layer = 1;
  c.n_head = 2;
  c.n_embd = 8;
  c.context_length = 32;
  c.vocab_size = 50257;
  c.n_out = 3;
  c.qkv_bias = TRUE;
  c.head_bias = TRUE;
  c.layer_norm_epsilon = 1e-5f;
  g_autoptr (GptdGpt) m = gptd_gpt_new (&c, &error);
  g_assert_no_error (error);
  gptd_gpt_init_weights (m, 7);
  /* A head that is far from zero, so that positions give different answers. */
  const GptdNnTensor *head = gptd_gpt_lookup_tensor (m, "lm_head.weight");
  for (size_t i = 0; i < head->numel; i++)
    head->data[i] = (float) sin (1.0 + i) * 3.0f;

  tmp_root = g_dir_make_tmp ("gptd-classify-XXXXXX", &error);
  g_assert_no_error (error);
  last_dir = g_build_filename (tmp_root, "last", NULL);
  token_dir = g_build_filename (tmp_root, "last-token", NULL);
  g_autofree char *vocab = g_build_filename (lm_dir, "vocab.json", NULL);
  g_autofree char *merges = g_build_filename (lm_dir, "merges.txt", NULL);
  g_assert_true (gptd_gpt_dir_save_classifier (m, last_dir, vocab, merges, class_names,
                                               "last", SEQ_LEN, &error));
  g_assert_no_error (error);
  g_assert_true (gptd_gpt_dir_save_classifier (m, token_dir, vocab, merges, class_names,
                                               "last-token", SEQ_LEN, &error));
  g_assert_no_error (error);
}

/* The reference: the model's own forward over @row (T ids) read at @pos. */
static void
reference_probs (const char *dir, const gint32 *row, int T, int pos, double *probs)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGpt) m = gptd_gpt_dir_load (dir, &error);
  g_assert_no_error (error);
  gint32 position = pos;
  g_assert_true (gptd_gpt_forward_pooled (m, row, &position, NULL, 1, T,
                                          GPTD_GPT_FORWARD_NONE, NULL, &error));
  g_assert_no_error (error);
  int V = 0;
  const float *logits = gptd_gpt_get_logits (m, NULL, NULL, &V);
  g_assert_cmpint (V, ==, 3);
  double mx = MAX (logits[0], MAX (logits[1], logits[2])), sum = 0;
  for (int k = 0; k < 3; k++)
    sum += exp ((double) logits[k] - mx);
  for (int k = 0; k < 3; k++)
    probs[k] = exp ((double) logits[k] - mx) / sum;
}

/* The tokenizer's ids of @text. */
static GArray *
encode (const char *text)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdBpe) bpe = gptd_bpe_load (lm_dir, &error);
  g_assert_no_error (error);
  GArray *ids = g_array_new (FALSE, FALSE, sizeof (guint32));
  g_assert_true (gptd_bpe_encode (bpe, text, strlen (text), NULL, ids, &error));
  g_assert_no_error (error);
  return ids;
}

/* ---- Library tests ----------------------------------------------------------- */

static void
test_load (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdClassifier) c = gptd_classifier_load (last_dir, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (gptd_classifier_get_n_classes (c), ==, 3);
  g_assert_cmpstr (gptd_classifier_get_label (c, 0), ==, "ham");
  g_assert_cmpstr (gptd_classifier_get_label (c, 2), ==, "eggs");
  g_assert_cmpstr (gptd_classifier_get_pooling (c), ==, "last");
  g_assert_cmpint (gptd_classifier_get_sequence_length (c), ==, SEQ_LEN);
  g_assert_cmpint (gptd_classifier_get_max_length (c), ==, SEQ_LEN);

  /* max-length: 1 .. the context; 0 restores the default. */
  g_assert_false (gptd_classifier_set_max_length (c, 33, &error));
  g_assert_error (error, GPTD_CLASSIFY_ERROR, GPTD_CLASSIFY_ERROR_LENGTH);
  g_assert_nonnull (strstr (error->message, "32"));
  g_clear_error (&error);
  g_assert_cmpint (gptd_classifier_get_max_length (c), ==, SEQ_LEN);
  g_assert_true (gptd_classifier_set_max_length (c, 5, &error));
  g_assert_true (gptd_classifier_set_max_length (c, 0, &error));
  g_assert_cmpint (gptd_classifier_get_max_length (c), ==, SEQ_LEN);

  /* last-token reads up to the context. */
  g_autoptr (GptdClassifier) t = gptd_classifier_load (token_dir, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (gptd_classifier_get_pooling (t), ==, "last-token");
  g_assert_cmpint (gptd_classifier_get_max_length (t), ==, 32);
}

/* Converted weights: the texts go through the KV-cache path, giving nearly the
 * float32 probabilities (bf16 rounds the weights); back in fp32 they are
 * the float32 ones exactly. */
static void
test_weights (void)
{
  const char *texts[] = { "the cat", "a dog sat on the mat", NULL };
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdClassifier) c = gptd_classifier_load (last_dir, NULL, &error);
  g_assert_no_error (error);
  float ref[2][3], p[3];
  for (int i = 0; texts[i] != NULL; i++)
    g_assert_cmpint (gptd_classifier_classify (c, texts[i], -1, ref[i], &error), >=, 0);
  /* (The tiny classifier's width, 8, is too narrow for q8's blocks of 32.) */
  const GptdWeightFormat formats[] = { GPTD_WEIGHT_FORMAT_BF16, GPTD_WEIGHT_FORMAT_FP32 };
  for (gsize f = 0; f < G_N_ELEMENTS (formats); f++)
    {
      gboolean ok = gptd_classifier_set_weight_format (c, formats[f], &error);
      g_assert_no_error (error);
      g_assert_true (ok);
      g_assert_cmpint (gptd_gpt_get_weight_format (gptd_classifier_get_model (c)), ==,
                       formats[f]);
      for (int i = 0; texts[i] != NULL; i++)
        {
          g_assert_cmpint (gptd_classifier_classify (c, texts[i], -1, p, &error), >=, 0);
          g_assert_no_error (error);
          for (int k = 0; k < 3; k++)
            {
              if (formats[f] == GPTD_WEIGHT_FORMAT_FP32)
                g_assert_cmpfloat (p[k], ==, ref[i][k]);
              else
                g_assert_cmpfloat_with_epsilon (p[k], ref[i][k], 0.03);
            }
        }
    }
}

static void
test_pooling_last (void)
{
  const char *texts[] = { "the cat", "a dog sat on the mat and the cat sat on the dog", NULL };
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdClassifier) c = gptd_classifier_load (last_dir, NULL, &error);
  g_assert_no_error (error);
  for (guint i = 0; texts[i] != NULL; i++)
    {
      g_autoptr (GArray) ids = encode (texts[i]);
      if (i == 1)
        g_assert_cmpuint (ids->len, >, SEQ_LEN); /* truncated */
      gint32 row[SEQ_LEN];
      for (int k = 0; k < SEQ_LEN; k++)
        row[k] = k < (int) ids->len ? (gint32) g_array_index (ids, guint32, k) : 50256;
      double want[3];
      reference_probs (last_dir, row, SEQ_LEN, SEQ_LEN - 1, want);
      float probs[3];
      int label = gptd_classifier_classify (c, texts[i], -1, probs, &error);
      g_assert_no_error (error);
      int best = 0;
      for (int k = 0; k < 3; k++)
        {
          g_assert_cmpfloat (probs[k], ==, (float) want[k]);
          best = want[k] > want[best] ? k : best;
        }
      g_assert_cmpint (label, ==, best);
    }

  /* Padding matters: the same text unpadded gives other probabilities. */
  g_autoptr (GArray) ids = encode (texts[0]);
  double unpadded[3];
  reference_probs (last_dir, (const gint32 *) ids->data, ids->len, ids->len - 1, unpadded);
  float probs[3];
  gptd_classifier_classify (c, texts[0], -1, probs, &error);
  g_assert_cmpfloat (fabs (probs[0] - unpadded[0]), >, 1e-4);

  /* No token, a bad id. */
  g_assert_cmpint (gptd_classifier_classify (c, "", 0, probs, &error), ==, -1);
  g_assert_error (error, GPTD_CLASSIFY_ERROR, GPTD_CLASSIFY_ERROR_INPUT);
  g_clear_error (&error);
  const gint32 bad[] = { 1, 50257 };
  g_assert_cmpint (gptd_classifier_classify_ids (c, bad, 2, probs, &error), ==, -1);
  g_assert_error (error, GPTD_CLASSIFY_ERROR, GPTD_CLASSIFY_ERROR_INPUT);
  g_assert_nonnull (strstr (error->message, "50257"));
}

static void
test_pooling_last_token (void)
{
  const char *text = "the dog sat";
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdClassifier) c = gptd_classifier_load (token_dir, NULL, &error);
  g_assert_no_error (error);
  g_autoptr (GArray) ids = encode (text);
  g_assert_cmpuint (ids->len, <, SEQ_LEN);
  gint32 row[SEQ_LEN];
  for (int k = 0; k < SEQ_LEN; k++)
    row[k] = k < (int) ids->len ? (gint32) g_array_index (ids, guint32, k) : 50256;
  double want[3], at_end[3];
  reference_probs (token_dir, row, SEQ_LEN, ids->len - 1, want);
  reference_probs (token_dir, row, SEQ_LEN, SEQ_LEN - 1, at_end);
  float probs[3];
  g_assert_cmpint (gptd_classifier_classify (c, text, -1, probs, &error), >=, 0);
  g_assert_no_error (error);
  for (int k = 0; k < 3; k++)
    g_assert_cmpfloat_with_epsilon (probs[k], want[k], 1e-5);
  g_assert_cmpfloat (fabs (probs[0] - at_end[0]), >, 1e-4);
}

static void
test_bad_dirs (void)
{
  g_autoptr (GError) error = NULL;
  /* A language model is not a classifier. */
  g_autoptr (GptdClassifier) lm = gptd_classifier_load (lm_dir, NULL, &error);
  g_assert_null (lm);
  g_assert_error (error, GPTD_CLASSIFY_ERROR, GPTD_CLASSIFY_ERROR_MODEL);
  g_assert_nonnull (strstr (error->message, lm_dir));
  g_assert_nonnull (strstr (error->message, "not a classifier"));
  g_clear_error (&error);
  /* A directory without config.json. */
  g_autoptr (GptdClassifier) none = gptd_classifier_load (tmp_root, NULL, &error);
  g_assert_null (none);
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, "config.json"));
}

/* ---- Stage tests ----------------------------------------------------------------- */

static void
test_stage (void)
{
  const char *texts[] = { "the cat", "and the dog sat on the mat by the cat", NULL };
  const char *extra = "caf\xc3\xa9 and dog";
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdClassifier) c = gptd_classifier_load (last_dir, NULL, &error);
  g_assert_no_error (error);

  for (int via_input = 0; via_input < 2; via_input++)
    {
      g_autofree char *run_dir = g_dir_make_tmp ("gptd-classify-run-XXXXXX", &error);
      g_assert_no_error (error);
      g_autofree char *joined = g_strjoinv ("|", (char **) texts);
      g_autofree char *models = g_strdup_printf (
        "[stage models]\ntype=test-model-source\ndir=%s\n\n", last_dir);
      g_autofree char *text = g_strdup_printf (
        "[pipeline]\nname=cls\n\n%s"
        "[stage docs]\ntype=test-doc-source\ntexts=%s\n\n"
        "[stage cls]\ntype=classifier\ninput=docs\n%s%s\ntext=%s\n\n"
        "[stage sink]\ntype=test-prediction-sink\ninput=cls\n",
        via_input ? models : "", joined, via_input ? "input.model=models" : "model=",
        via_input ? "" : last_dir, extra);
      sink_predictions = g_ptr_array_new ();
      g_autoptr (GString) log = g_string_new (NULL);
      run_pipeline (text, run_dir, log, &error);
      g_assert_no_error (error);

      /* predictions.jsonl in the run directory, one line per text. */
      g_autofree char *out = g_build_filename (run_dir, "predictions.jsonl", NULL);
      g_autofree char *contents = NULL;
      g_assert_true (g_file_get_contents (out, &contents, NULL, &error));
      g_auto (GStrv) lines = g_strsplit (contents, "\n", -1);
      g_assert_cmpuint (g_strv_length (lines), ==, 4); /* 3 and the final newline */
      g_assert_cmpuint (sink_predictions->len, ==, 3);
      guint agree = 0;
      for (guint i = 0; i < 3; i++)
        {
          const char *t = i < 2 ? texts[i] : extra;
          float probs[3];
          int label = gptd_classifier_classify (c, t, -1, probs, &error);
          g_assert_no_error (error);
          Gptd__Prediction *p = sink_predictions->pdata[i];
          g_assert_cmpuint (p->label, ==, (guint) label);
          g_assert_cmpstr (p->label_name, ==, class_names[label]);
          g_assert_cmpstr (p->source, ==, i < 2 ? (i ? "doc1" : "doc0") : "");
          g_assert_cmpuint (p->n_probabilities, ==, 3);
          for (int k = 0; k < 3; k++)
            g_assert_cmpfloat (p->probabilities[k], ==, probs[k]);
          agree += i < 2 && label == 1;

          g_autoptr (JsonParser) parser = json_parser_new ();
          g_assert_true (json_parser_load_from_data (parser, lines[i], -1, &error));
          JsonObject *o = json_node_get_object (json_parser_get_root (parser));
          g_assert_cmpint (json_object_get_int_member (o, "label"), ==, label);
          g_assert_cmpstr (json_object_get_string_member (o, "label_name"), ==,
                           class_names[label]);
          JsonArray *a = json_object_get_array_member (o, "probabilities");
          g_assert_cmpuint (json_array_get_length (a), ==, 3);
          for (int k = 0; k < 3; k++)
            g_assert_cmpfloat ((float) json_array_get_double_element (a, k), ==, probs[k]);
          gptd__prediction__free_unpacked (p, NULL);
        }
      /* The documents were labelled spam: the agreement is logged. */
      g_autofree char *summary = g_strdup_printf ("%u of 2 labelled texts", agree);
      g_assert_nonnull (strstr (log->str, summary));
      g_ptr_array_unref (sink_predictions);
      remove_tree (run_dir);
    }
}

static void
test_stage_errors (void)
{
  g_autofree char *nowhere = g_build_filename (tmp_root, "nowhere", NULL);
  struct {
    const char *dir;
    const char *more;
    const char *what; /* a part of the message */
  } cases[] = {
    { lm_dir, "", "not a classifier" },              /* a language model */
    { nowhere, "", "nowhere" },                      /* no such directory */
    { last_dir, "max-length=33\n", "max-length" },   /* longer than the context */
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *keys = g_strdup_printf ("model=%s\n%s", cases[i].dir, cases[i].more);
      g_autofree char *text = g_strdup_printf (
        "[pipeline]\nname=bad\n\n[stage cls]\ntype=classifier\ntext=hi\n%s", keys);
      g_autofree char *run_dir = g_dir_make_tmp ("gptd-classify-run-XXXXXX", &error);
      g_autoptr (GString) log = g_string_new (NULL);
      g_assert_false (run_pipeline (text, run_dir, log, &error));
      g_assert_nonnull (error);
      if (strstr (error->message, cases[i].what) == NULL ||
          strstr (error->message, "cls") == NULL)
        g_error ("case %u: %s", i, error->message);
      remove_tree (run_dir);
    }

  /* No model: the run fails when a text needs one. */
  g_autoptr (GError) error = NULL;
  g_autofree char *run_dir = g_dir_make_tmp ("gptd-classify-run-XXXXXX", &error);
  g_autoptr (GString) log = g_string_new (NULL);
  g_assert_false (run_pipeline ("[pipeline]\nname=cls\n\n[stage cls]\ntype=classifier\n"
                                "text=hello\n", run_dir, log, &error));
  g_assert_nonnull (strstr (error->message, "no model"));
  remove_tree (run_dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  lm_dir = g_test_build_filename (G_TEST_DIST, "golden", "generate", "model", NULL);
  make_classifiers ();
  g_test_add_func ("/classify/library/load", test_load);
  g_test_add_func ("/classify/library/pooling-last", test_pooling_last);
  g_test_add_func ("/classify/library/pooling-last-token", test_pooling_last_token);
  g_test_add_func ("/classify/library/bad-dirs", test_bad_dirs);
  g_test_add_func ("/classify/library/weights", test_weights);
  g_test_add_func ("/classify/stage/predictions", test_stage);
  g_test_add_func ("/classify/stage/errors", test_stage_errors);
  int rc = g_test_run ();
  remove_tree (tmp_root);
  g_free (tmp_root);
  g_free (last_dir);
  g_free (token_dir);
  g_free (lm_dir);
  return rc;
}

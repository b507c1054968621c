/* tests/test-gpt2-file.c: GPT-2 model directories (config.json and
 * model.safetensors as Hugging Face writes them), training state files and
 * checkpoints: round trips, the reference logits of a Hugging Face-layout
 * directory, every kind of bad file giving its own error, and interrupted
 * checkpoint writes leaving the previous checkpoint loadable.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* memmem */
#endif

#include <gptd/atomic-file.h>
#include <gptd/gpt2-file.h>
#include <gptd/nn.h>
#include <gptd/safetensors.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

/* Writes a test file quickly, without the fsync that g_file_set_contents()
 * does when it replaces a file (loops of corruptions would be slow). */
static gboolean
set_contents (const char *path, const char *data, gssize length, GError **error)
{
  FILE *fp = fopen (path, "wb");
  g_assert_nonnull (fp);
  size_t n = length < 0 ? strlen (data) : (size_t) length;
  g_assert_cmpuint (fwrite (data, 1, n, fp), ==, n);
  g_assert_cmpint (fclose (fp), ==, 0);
  return TRUE;
}

typedef struct {
  char *dir;
} Fixture;

/* Removes a directory tree (the tests only create regular files and
 * directories). */
static void
rm_rf (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK))
    {
      g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
      const char *name;
      while (d != NULL && (name = g_dir_read_name (d)) != NULL)
        {
          g_autofree char *p = g_build_filename (path, name, NULL);
          rm_rf (p);
        }
      g_rmdir (path);
    }
  else
    g_unlink (path);
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  f->dir = g_dir_make_tmp ("gptd-gpt2-file-XXXXXX", &error);
  g_assert_no_error (error);
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  gptd_atomic_file_set_fault_func (NULL, NULL);
  rm_rf (f->dir);
  g_free (f->dir);
}

static GptdGptConfig
tiny_config (gboolean qkv_bias, gboolean tie)
{
  GptdGptConfig c = {
    .n_layer = 2,
    .n_head = 2,
    .n_embd = 8,
    .context_length = 16,
    .vocab_size = 20,
    .n_out = 0,
    .qkv_bias = qkv_bias,
    .tie_embeddings = tie,
    .head_bias = FALSE,
    .dropout = 0.0f,
    .layer_norm_epsilon = 1e-5f,
  };
  return c;
}

static GptdGpt *
tiny_model (gboolean qkv_bias, gboolean tie, guint64 seed)
{
  GptdGptConfig c = tiny_config (qkv_bias, tie);
  g_autoptr (GError) error = NULL;
  GptdGpt *m = gptd_gpt_new (&c, &error);
  g_assert_no_error (error);
  gptd_gpt_init_weights (m, seed);
  /* Make biases and LayerNorm parameters non-trivial too. */
  float *p = gptd_gpt_get_params (m);
  for (size_t i = 0; i < gptd_gpt_n_params (m); i += 7)
    p[i] += 0.001f * (float) (i % 13);
  return m;
}

static void
assert_same_params (GptdGpt *a, GptdGpt *b)
{
  g_assert_cmpuint (gptd_gpt_n_params (a), ==, gptd_gpt_n_params (b));
  g_assert_cmpuint (gptd_gpt_n_tensors (a), ==, gptd_gpt_n_tensors (b));
  for (guint i = 0; i < gptd_gpt_n_tensors (a); i++)
    {
      const GptdNnTensor *ta = gptd_gpt_get_tensor (a, i);
      const GptdNnTensor *tb = gptd_gpt_lookup_tensor (b, ta->name);
      g_assert_nonnull (tb);
      g_assert_cmpuint (ta->numel, ==, tb->numel);
      g_assert_cmpmem (ta->data, ta->numel * sizeof (float), tb->data, tb->numel * sizeof (float));
    }
}

static void
assert_same_config (const GptdGptConfig *a, const GptdGptConfig *b)
{
  g_assert_cmpint (a->n_layer, ==, b->n_layer);
  g_assert_cmpint (a->n_head, ==, b->n_head);
  g_assert_cmpint (a->n_embd, ==, b->n_embd);
  g_assert_cmpint (a->context_length, ==, b->context_length);
  g_assert_cmpint (a->vocab_size, ==, b->vocab_size);
  g_assert_cmpint (a->n_out ? a->n_out : a->vocab_size, ==, b->n_out ? b->n_out : b->vocab_size);
  g_assert_cmpint (!!a->qkv_bias, ==, !!b->qkv_bias);
  g_assert_cmpint (!!a->tie_embeddings, ==, !!b->tie_embeddings);
  g_assert_cmpint (!!a->head_bias, ==, !!b->head_bias);
  g_assert_cmpfloat (a->dropout, ==, b->dropout);
  g_assert_cmpfloat (a->layer_norm_epsilon, ==, b->layer_norm_epsilon);
}

static void
write_text (const char *path, const char *text)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (set_contents (path, text, -1, &error));
  g_assert_no_error (error);
}

/* ------------------------------------------------------------------------ */
/* config.json */

static void
expect_config_error (const char *json, GQuark domain, int code, const char *needle)
{
  GptdGptConfig c;
  g_autoptr (GError) error = NULL;
  g_assert_false (gptd_gpt_config_from_json (json, -1, "/x/config.json", &c, NULL, &error));
  g_assert_nonnull (error);
  g_test_message ("error: %s", error->message);
  g_assert_true (error->domain == domain);
  g_assert_cmpint (error->code, ==, code);
  g_assert_nonnull (strstr (error->message, "/x/config.json"));
  if (needle != NULL && strstr (error->message, needle) == NULL)
    g_error ("“%s” not in “%s”", needle, error->message);
}

static void
test_config (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  GptdGptConfig c;
  guint flags = 99;

  /* OpenAI's GPT-2 small as Hugging Face ships it. */
  const char *hf =
    "{\"activation_function\": \"gelu_new\", \"architectures\": [\"GPT2LMHeadModel\"],"
    " \"attn_pdrop\": 0.1, \"bos_token_id\": 50256, \"embd_pdrop\": 0.1,"
    " \"eos_token_id\": 50256, \"initializer_range\": 0.02, \"layer_norm_epsilon\": 1e-05,"
    " \"model_type\": \"gpt2\", \"n_ctx\": 1024, \"n_embd\": 768, \"n_head\": 12,"
    " \"n_layer\": 12, \"n_positions\": 1024, \"resid_pdrop\": 0.1,"
    " \"summary_activation\": null, \"task_specific_params\": {\"text-generation\":"
    " {\"do_sample\": true, \"max_length\": 50}}, \"vocab_size\": 50257}";
  g_assert_true (gptd_gpt_config_from_json (hf, -1, NULL, &c, &flags, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (flags, ==, 0);
  GptdGptConfig preset;
  g_assert_true (gptd_gpt_config_preset ("gpt2-small", &preset, &error));
  assert_same_config (&c, &preset);

  /* n_ctx alone is accepted. */
  g_assert_true (gptd_gpt_config_from_json (
    "{\"n_layer\":1,\"n_head\":1,\"n_embd\":4,\"n_ctx\":8,\"vocab_size\":5}", -1, NULL,
    &c, NULL, &error));
  g_assert_cmpint (c.context_length, ==, 8);
  g_assert_true (c.qkv_bias);
  g_assert_true (c.tie_embeddings);

  /* gptd's own configuration round-trips, every option stated. */
  GptdGptConfig mine = tiny_config (FALSE, FALSE);
  mine.n_out = 3;
  mine.head_bias = TRUE;
  mine.dropout = 0.25f;
  mine.layer_norm_epsilon = 3e-6f;
  g_autofree char *json = gptd_gpt_config_to_json (&mine);
  g_assert_true (gptd_gpt_config_from_json (json, -1, NULL, &c, &flags, &error));
  g_assert_no_error (error);
  assert_same_config (&c, &mine);
  g_assert_cmpuint (flags, ==, GPTD_GPT_CONFIG_EXPLICIT_QKV_BIAS | GPTD_GPT_CONFIG_EXPLICIT_TIE
                                 | GPTD_GPT_CONFIG_EXPLICIT_HEAD_BIAS);
  /* It is plain JSON that other tools read. */
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_assert_true (json_parser_load_from_data (parser, json, -1, &error));
  JsonObject *obj = json_node_get_object (json_parser_get_root (parser));
  g_assert_cmpstr (json_object_get_string_member (obj, "model_type"), ==, "gpt2");
  g_assert_cmpint (json_object_get_int_member (obj, "n_positions"), ==, 16);

  GQuark fe = GPTD_GPT_FILE_ERROR;
  expect_config_error ("{\"n_head\":1,\"n_embd\":4,\"n_ctx\":8,\"vocab_size\":5}",
                       fe, GPTD_GPT_FILE_ERROR_CONFIG, "“n_layer”");
  expect_config_error ("{\"n_layer\":1,\"n_head\":1,\"n_embd\":4,\"vocab_size\":5}",
                       fe, GPTD_GPT_FILE_ERROR_CONFIG, "“n_positions”");
  expect_config_error ("{\"n_layer\":\"2\",\"n_head\":1,\"n_embd\":4,\"n_ctx\":8,\"vocab_size\":5}",
                       fe, GPTD_GPT_FILE_ERROR_CONFIG, "“n_layer”");
  expect_config_error ("{\"n_layer\":1.5,\"n_head\":1,\"n_embd\":4,\"n_ctx\":8,\"vocab_size\":5}",
                       fe, GPTD_GPT_FILE_ERROR_CONFIG, "“n_layer”");
  expect_config_error ("{\"n_layer\":1,\"n_head\":1,\"n_embd\":4,\"n_ctx\":8,\"vocab_size\":5,"
                       "\"activation_function\":\"relu\"}",
                       fe, GPTD_GPT_FILE_ERROR_CONFIG, "“activation_function”");
  expect_config_error ("{\"n_layer\":1,\"n_head\":1,\"n_embd\":4,\"n_ctx\":8,\"vocab_size\":5,"
                       "\"n_inner\":5}",
                       fe, GPTD_GPT_FILE_ERROR_CONFIG, "“n_inner”");
  /* 4 * n_embd is shown as it is, not wrapped around 32 bits. */
  expect_config_error ("{\"n_layer\":1,\"n_head\":1,\"n_embd\":1000000000,\"n_ctx\":8,"
                       "\"vocab_size\":5,\"n_inner\":5}",
                       fe, GPTD_GPT_FILE_ERROR_CONFIG, "5 is not 4 * n_embd (4000000000)");
  expect_config_error ("{\"n_layer\":1,\"n_head\":1,\"n_embd\":4,\"n_ctx\":8,\"vocab_size\":5,"
                       "\"model_type\":\"llama\"}",
                       fe, GPTD_GPT_FILE_ERROR_CONFIG, "“model_type”");
  expect_config_error ("{\"n_layer\":1,\"n_head\":1,\"n_embd\":4,\"n_ctx\":8,\"vocab_size\":5,"
                       "\"tie_word_embeddings\":1}",
                       fe, GPTD_GPT_FILE_ERROR_CONFIG, "“tie_word_embeddings”");
  expect_config_error ("{\"n_layer\":1,", fe, GPTD_GPT_FILE_ERROR_CONFIG, "JSON");
  expect_config_error ("[]", fe, GPTD_GPT_FILE_ERROR_CONFIG, "object");
  /* Parsed, but not a valid model: 3 heads do not divide 4. */
  expect_config_error ("{\"n_layer\":1,\"n_head\":3,\"n_embd\":4,\"n_ctx\":8,\"vocab_size\":5}",
                       GPTD_NN_ERROR, GPTD_NN_ERROR_CONFIG, NULL);
}

/* ------------------------------------------------------------------------ */
/* Save and load */

static void
check_save_load (Fixture *f, gboolean qkv_bias, gboolean tie)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGpt) m = tiny_model (qkv_bias, tie, 42);
  g_autofree char *dir = g_build_filename (f->dir, "sub", "model", NULL);
  g_autofree char *enc = g_build_filename (f->dir, "encoder.json", NULL);
  g_autofree char *bpe = g_build_filename (f->dir, "vocab.bpe", NULL);
  write_text (enc, "{\"!\": 0, \"\\\"\": 1}");
  write_text (bpe, "#version: 0.2\nĠ t\n");

  g_assert_true (gptd_gpt_dir_save (m, dir, enc, bpe, &error));
  g_assert_no_error (error);

  g_autoptr (GptdGpt) back = gptd_gpt_dir_load (dir, &error);
  g_assert_no_error (error);
  assert_same_config (gptd_gpt_get_config (back), gptd_gpt_get_config (m));
  assert_same_params (m, back);

  /* Floats are written in the fewest digits that read back the same: epsilon 1e-5f
   * as 1e-05, not 9.99999975e-06. */
  g_autofree char *cfg_path = g_build_filename (dir, "config.json", NULL);
  g_autofree char *cfg = NULL;
  g_assert_true (g_file_get_contents (cfg_path, &cfg, NULL, NULL));
  g_assert_nonnull (strstr (cfg, "\"dropout\": 0\n"));
  g_assert_nonnull (strstr (cfg, "\"layer_norm_epsilon\": 1e-05,"));
  g_assert_null (strstr (cfg, "00000"));

  /* The tokenizer files are copies. */
  g_autofree char *vocab = g_build_filename (dir, "vocab.json", NULL);
  g_autofree char *merges = g_build_filename (dir, "merges.txt", NULL);
  g_autofree char *a = NULL, *b = NULL;
  g_assert_true (g_file_get_contents (vocab, &a, NULL, NULL));
  g_assert_true (g_file_get_contents (merges, &b, NULL, NULL));
  g_assert_cmpstr (a, ==, "{\"!\": 0, \"\\\"\": 1}");
  g_assert_cmpstr (b, ==, "#version: 0.2\nĠ t\n");

  /* The weights file holds Hugging Face names, no head when tied. */
  g_autofree char *weights = g_build_filename (dir, "model.safetensors", NULL);
  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (weights, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (gptd_safetensors_get_n_tensors (st), ==, gptd_gpt_n_tensors (m));
  g_assert_nonnull (gptd_safetensors_lookup (st, "h.1.mlp.c_proj.weight"));
  g_assert_true ((gptd_safetensors_lookup (st, "lm_head.weight") == NULL) == tie);
  g_assert_true ((gptd_safetensors_lookup (st, "h.0.attn.c_attn.bias") != NULL) == qkv_bias);
  g_assert_cmpstr (gptd_safetensors_get_metadata (st, "format"), ==, "pt");

  /* The same logits. */
  const gint32 tokens[6] = { 1, 5, 19, 0, 7, 7 };
  g_assert_true (gptd_gpt_forward (m, tokens, NULL, 1, 6, GPTD_GPT_FORWARD_NONE, NULL, &error));
  g_assert_true (gptd_gpt_forward (back, tokens, NULL, 1, 6, GPTD_GPT_FORWARD_NONE, NULL, &error));
  int V;
  const float *la = gptd_gpt_get_logits (m, NULL, NULL, &V);
  const float *lb = gptd_gpt_get_logits (back, NULL, NULL, NULL);
  g_assert_cmpmem (la, 6 * V * sizeof (float), lb, 6 * V * sizeof (float));
}

static void
test_save_load_untied (Fixture *f, gconstpointer data)
{
  check_save_load (f, FALSE, FALSE);
}

static void
test_save_load_tied_qkv (Fixture *f, gconstpointer data)
{
  check_save_load (f, TRUE, TRUE);
}

static void
test_save_classifier (Fixture *f, gconstpointer data)
{
  GptdGptConfig c = tiny_config (TRUE, FALSE);
  c.n_out = 2;
  c.head_bias = TRUE;
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGpt) m = gptd_gpt_new (&c, &error);
  gptd_gpt_init_weights (m, 3);
  g_assert_true (gptd_gpt_dir_save (m, f->dir, NULL, NULL, &error));
  g_autoptr (GptdGpt) back = gptd_gpt_dir_load (f->dir, &error);
  g_assert_no_error (error);
  assert_same_config (gptd_gpt_get_config (back), &c);
  assert_same_params (m, back);
  g_autofree char *vocab = g_build_filename (f->dir, "vocab.json", NULL);
  g_assert_false (g_file_test (vocab, G_FILE_TEST_EXISTS));

  /* Hugging Face's GPT2ForSequenceClassification layout: score.*, no lm_head. */
  g_autofree char *weights = g_build_filename (f->dir, "model.safetensors", NULL);
  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (weights, &error);
  g_assert_no_error (error);
  g_assert_nonnull (gptd_safetensors_lookup (st, "score.weight"));
  g_assert_nonnull (gptd_safetensors_lookup (st, "score.bias"));
  g_assert_null (gptd_safetensors_lookup (st, "lm_head.weight"));
  g_autofree char *config = NULL;
  g_autofree char *config_path = g_build_filename (f->dir, "config.json", NULL);
  g_assert_true (g_file_get_contents (config_path, &config, NULL, NULL));
  g_assert_nonnull (strstr (config, "\"GPT2ForSequenceClassification\""));
  g_assert_nonnull (strstr (config, "\"num_labels\": 2"));

  /* Class names and pooling; without them LABEL_i. */
  g_auto (GStrv) labels = NULL;
  g_autofree char *pooling = NULL;
  g_assert_true (gptd_gpt_dir_read_labels (f->dir, &labels, &pooling, &error));
  g_assert_cmpstr (labels[0], ==, "LABEL_0");
  g_assert_null (pooling);
  g_clear_pointer (&labels, g_strfreev);
  const char *const names[] = { "ham", "sp\"am", NULL };
  g_assert_true (gptd_gpt_dir_save_classifier (m, f->dir, NULL, NULL, names, "last-token", 0,
                                               &error));
  g_assert_true (gptd_gpt_dir_read_labels (f->dir, &labels, &pooling, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (g_strv_length (labels), ==, 2);
  g_assert_cmpstr (labels[1], ==, "sp\"am");
  g_assert_cmpstr (pooling, ==, "last-token");
  g_clear_pointer (&back, gptd_gpt_free);
  back = gptd_gpt_dir_load (f->dir, &error);
  g_assert_no_error (error);
  assert_same_params (m, back);

  /* A config.json with only Hugging Face's keys and no score.bias. */
  g_autofree char *hf = g_strdup_printf (
      "{\"model_type\": \"gpt2\", \"architectures\": [\"GPT2ForSequenceClassification\"], "
      "\"n_layer\": %d, \"n_head\": %d, \"n_embd\": %d, \"n_positions\": %d, "
      "\"vocab_size\": %d, \"id2label\": {\"0\": \"a\", \"1\": \"b\"}}",
      c.n_layer, c.n_head, c.n_embd, c.context_length, c.vocab_size);
  GptdGptConfig parsed;
  g_assert_true (gptd_gpt_config_from_json (hf, -1, "config.json", &parsed, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (parsed.n_out, ==, 2);
  g_assert_false (parsed.tie_embeddings);
}

/* ------------------------------------------------------------------------ */
/* Hugging Face layout */

/* Writes DIR/config.json (HF keys only) and DIR/model.safetensors from the
 * model's tensors, renamed and converted as @dtype, with the attention
 * buffers and an optional prefix; @expected receives the values as loaded. */
typedef enum { AS_F32, AS_F16, AS_BF16 } StoreAs;

static void
write_hf_dir (const char *dir, GptdGpt *m, const char *prefix, StoreAs as,
              gboolean with_buffers, gboolean state_options)
{
  const GptdGptConfig *c = gptd_gpt_get_config (m);
  g_autofree char *json = g_strdup_printf (
    "{\"model_type\":\"gpt2\",\"activation_function\":\"gelu_new\",\"n_layer\":%d,"
    "\"n_head\":%d,\"n_embd\":%d,\"n_positions\":%d,\"n_ctx\":%d,\"vocab_size\":%d,"
    "\"layer_norm_epsilon\":1e-05,\"resid_pdrop\":0.0,\"n_inner\":null%s}",
    c->n_layer, c->n_head, c->n_embd, c->context_length, c->context_length, c->vocab_size,
    state_options ? (c->tie_embeddings ? ",\"tie_word_embeddings\":true"
                                       : ",\"tie_word_embeddings\":false") : "");
  g_autofree char *config_path = g_build_filename (dir, "config.json", NULL);
  write_text (config_path, json);

  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < gptd_gpt_n_tensors (m); i++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (m, i);
      char *name = g_strconcat (g_str_has_prefix (t->name, "lm_head.") ? "" : prefix,
                                t->name, NULL);
      g_ptr_array_add (keep, name);
      if (as == AS_F32)
        gptd_safetensors_writer_add_f32 (w, name, (guint) t->ndim, t->shape, t->data);
      else
        {
          guint16 *h = g_new (guint16, t->numel);
          g_ptr_array_add (keep, h);
          for (size_t k = 0; k < t->numel; k++)
            {
              guint32 bits;
              memcpy (&bits, &t->data[k], 4);
              if (as == AS_BF16)
                h[k] = (guint16) (bits >> 16); /* the model holds bf16 values */
              else
                {
                  /* The model holds f16-representable normal values or zero. */
                  guint32 sign = (bits >> 16) & 0x8000;
                  int e = (int) ((bits >> 23) & 0xff) - 127 + 15;
                  guint32 mant = (bits >> 13) & 0x3ff;
                  h[k] = (bits & 0x7fffffff) == 0 ? (guint16) sign
                                                  : (guint16) (sign | ((guint32) e << 10) | mant);
                }
            }
          gptd_safetensors_writer_add (w, name,
                                       as == AS_BF16 ? GPTD_SAFETENSORS_DTYPE_BF16
                                                     : GPTD_SAFETENSORS_DTYPE_F16,
                                       (guint) t->ndim, t->shape, h);
        }
    }
  g_autofree float *tril = NULL;
  if (with_buffers)
    {
      size_t n = (size_t) c->context_length;
      tril = g_new0 (float, n * n);
      for (size_t r = 0; r < n; r++)
        for (size_t k = 0; k <= r; k++)
          tril[r * n + k] = 1;
      size_t shape[4] = { 1, 1, n, n };
      static const float masked_bias = -1e4f;
      for (int l = 0; l < c->n_layer; l++)
        {
          char *name = g_strdup_printf ("%sh.%d.attn.bias", prefix, l);
          g_ptr_array_add (keep, name);
          gptd_safetensors_writer_add_f32 (w, name, 4, shape, tril);
          name = g_strdup_printf ("%sh.%d.attn.masked_bias", prefix, l);
          g_ptr_array_add (keep, name);
          gptd_safetensors_writer_add_f32 (w, name, 0, NULL, &masked_bias);
        }
    }
  gptd_safetensors_writer_set_metadata (w, "format", "pt");
  g_autofree char *path = g_build_filename (dir, "model.safetensors", NULL);
  g_autoptr (GError) error = NULL;
  g_assert_true (gptd_safetensors_writer_write (w, path, &error));
  g_assert_no_error (error);
}

static void
test_hf_layout (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  /* Tied head with qkv bias (as OpenAI's GPT-2), untied without. Options are
   * inferred from the stored tensors. */
  for (int variant = 0; variant < 2; variant++)
    {
      gboolean tied = variant == 0;
      g_autoptr (GptdGpt) m = tiny_model (tied, tied, 5 + variant);
      write_hf_dir (f->dir, m, "transformer.", AS_F32, TRUE, FALSE);
      g_autoptr (GptdGpt) back = gptd_gpt_dir_load (f->dir, &error);
      g_assert_no_error (error);
      assert_same_config (gptd_gpt_get_config (back), gptd_gpt_get_config (m));
      assert_same_params (m, back);
    }
}

static void
test_hf_f16_bf16 (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  for (int as = AS_F16; as <= AS_BF16; as++)
    {
      g_autoptr (GptdGpt) m = tiny_model (TRUE, TRUE, 9);
      /* Round the parameters to values the narrow type holds exactly. */
      float *p = gptd_gpt_get_params (m);
      for (size_t i = 0; i < gptd_gpt_n_params (m); i++)
        {
          guint32 bits;
          memcpy (&bits, &p[i], 4);
          if (as == AS_BF16)
            bits &= 0xffff0000u;
          else
            {
              float a = fabsf (p[i]);
              if (a < 1e-4f)
                bits = 0;
              else
                bits &= 0xffffe000u;
            }
          memcpy (&p[i], &bits, 4);
        }
      write_hf_dir (f->dir, m, "", (StoreAs) as, FALSE, TRUE);
      g_autoptr (GptdGpt) back = gptd_gpt_dir_load (f->dir, &error);
      g_assert_no_error (error);
      assert_same_params (m, back);
    }
}

/* The directory written by the reference script (tests/golden/nn/
 * make_goldens.py) loads and gives PyTorch's logits. */
static void
test_hf_tiny_golden (void)
{
  g_autofree char *dir = g_test_build_filename (G_TEST_DIST, "golden", "nn", "hf-tiny", NULL);
  g_autofree char *expected_path =
    g_test_build_filename (G_TEST_DIST, "golden", "nn", "hf-tiny-expected.json", NULL);
  g_autofree char *config = g_build_filename (dir, "config.json", NULL);
  if (!g_file_test (config, G_FILE_TEST_EXISTS) || !g_file_test (expected_path, G_FILE_TEST_EXISTS))
    {
      g_test_skip ("tests/golden/nn/hf-tiny is not there");
      return;
    }

  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGpt) m = gptd_gpt_dir_load (dir, &error);
  g_assert_no_error (error);
  const GptdGptConfig *c = gptd_gpt_get_config (m);
  g_assert_true (c->tie_embeddings);
  g_assert_true (c->qkv_bias);

  g_autoptr (JsonParser) parser = json_parser_new ();
  g_assert_true (json_parser_load_from_file (parser, expected_path, &error));
  JsonObject *obj = json_node_get_object (json_parser_get_root (parser));
  JsonArray *tokens = json_object_get_array_member (obj, "tokens");
  JsonArray *logits = json_object_get_array_member (obj, "logits");
  int T = (int) json_array_get_length (tokens);
  g_assert_cmpint ((int) json_array_get_length (logits), ==, T);
  g_autofree gint32 *ids = g_new (gint32, T);
  for (int t = 0; t < T; t++)
    ids[t] = (gint32) json_array_get_int_element (tokens, (guint) t);

  g_assert_true (gptd_gpt_forward (m, ids, NULL, 1, T, GPTD_GPT_FORWARD_NONE, NULL, &error));
  g_assert_no_error (error);
  int V;
  const float *out = gptd_gpt_get_logits (m, NULL, NULL, &V);
  double max_diff = 0;
  for (int t = 0; t < T; t++)
    {
      JsonArray *row = json_array_get_array_element (logits, (guint) t);
      g_assert_cmpint ((int) json_array_get_length (row), ==, V);
      for (int v = 0; v < V; v++)
        {
          double want = json_array_get_double_element (row, (guint) v);
          double got = out[(size_t) t * V + v];
          double diff = fabs (got - want);
          max_diff = MAX (max_diff, diff);
          if (diff > 1e-4 * MAX (1.0, fabs (want)))
            g_error ("logit [%d, %d] is %.7g, PyTorch gives %.7g", t, v, got, want);
        }
    }
  g_test_message ("hf-tiny: %d x %d logits, largest difference %.3g", T, V, max_diff);
}

/* ------------------------------------------------------------------------ */
/* Bad model directories: each gives its own error */

static void
expect_load_error (const char *dir, GQuark domain, int code, ...)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGpt) m = gptd_gpt_dir_load (dir, &error);
  g_assert_null (m);
  g_assert_nonnull (error);
  g_test_message ("error: %s", error->message);
  if (error->domain != domain || error->code != code)
    g_error ("expected %s %d, got %s %d: %s", g_quark_to_string (domain), code,
             g_quark_to_string (error->domain), error->code, error->message);
  g_assert_nonnull (strstr (error->message, dir));
  va_list args;
  va_start (args, code);
  const char *s;
  while ((s = va_arg (args, const char *)) != NULL)
    if (strstr (error->message, s) == NULL)
      g_error ("“%s” not in error message “%s”", s, error->message);
  va_end (args);
}

/* Rewrites model.safetensors of @dir through a writer, leaving out @drop,
 * adding @extra, replacing the shape of @reshape, or storing @as_int as I32. */
static void
rewrite_weights (const char *dir, GptdGpt *m, const char *drop, const char *extra,
                 const char *reshape, const char *as_int)
{
  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  static float extra_data[3];
  static size_t extra_shape[1] = { 3 };
  for (guint i = 0; i < gptd_gpt_n_tensors (m); i++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (m, i);
      if (drop != NULL && strcmp (t->name, drop) == 0)
        continue;
      if (reshape != NULL && strcmp (t->name, reshape) == 0)
        {
          size_t shape[2] = { t->numel / 2, 2 };
          gptd_safetensors_writer_add_f32 (w, t->name, 2, shape, t->data);
        }
      else if (as_int != NULL && strcmp (t->name, as_int) == 0)
        gptd_safetensors_writer_add (w, t->name, GPTD_SAFETENSORS_DTYPE_I32, (guint) t->ndim,
                                     t->shape, t->data);
      else
        gptd_safetensors_writer_add_f32 (w, t->name, (guint) t->ndim, t->shape, t->data);
    }
  if (extra != NULL)
    gptd_safetensors_writer_add_f32 (w, extra, 1, extra_shape, extra_data);
  g_autofree char *path = g_build_filename (dir, "model.safetensors", NULL);
  g_assert_true (gptd_safetensors_writer_write (w, path, NULL));
}

/* Replaces the first occurrence of @from in the file with @to (same length). */
static void
patch_file (const char *path, const char *from, const char *to)
{
  g_autofree char *content = NULL;
  gsize len;
  g_assert_cmpuint (strlen (from), ==, strlen (to));
  g_assert_true (g_file_get_contents (path, &content, &len, NULL));
  char *p = memmem (content, len, from, strlen (from));
  g_assert_nonnull (p);
  memcpy (p, to, strlen (to));
  g_assert_true (set_contents (path, content, (gssize) len, NULL));
}

static void
test_bad_dirs (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGpt) m = tiny_model (TRUE, FALSE, 1);
  g_autofree char *weights = g_build_filename (f->dir, "model.safetensors", NULL);
  g_autofree char *config = g_build_filename (f->dir, "config.json", NULL);
  GQuark fe = GPTD_GPT_FILE_ERROR, se = GPTD_SAFETENSORS_ERROR;
  g_assert_true (gptd_gpt_dir_save (m, f->dir, NULL, NULL, &error));

  /* Missing tensor. */
  rewrite_weights (f->dir, m, "h.1.mlp.c_fc.bias", NULL, NULL, NULL);
  expect_load_error (f->dir, fe, GPTD_GPT_FILE_ERROR_MISSING, "“h.1.mlp.c_fc.bias”", NULL);
  /* Unexpected tensor. */
  rewrite_weights (f->dir, m, NULL, "h.0.attn.rotary", NULL, NULL);
  expect_load_error (f->dir, fe, GPTD_GPT_FILE_ERROR_UNEXPECTED, "“h.0.attn.rotary”", NULL);
  /* A layer more than the configuration has. */
  rewrite_weights (f->dir, m, NULL, "h.2.ln_1.bias", NULL, NULL);
  expect_load_error (f->dir, fe, GPTD_GPT_FILE_ERROR_UNEXPECTED, "“h.2.ln_1.bias”", NULL);
  /* Wrong shape against the configuration. */
  rewrite_weights (f->dir, m, NULL, NULL, "h.0.attn.c_proj.bias", NULL);
  expect_load_error (f->dir, fe, GPTD_GPT_FILE_ERROR_SHAPE, "“h.0.attn.c_proj.bias”",
                     "[4, 2]", "[8]", NULL);
  /* A parameter stored as integers. */
  rewrite_weights (f->dir, m, NULL, NULL, NULL, "ln_f.weight");
  expect_load_error (f->dir, se, GPTD_SAFETENSORS_ERROR_DTYPE, "“ln_f.weight”", "I32", NULL);
  /* Unknown dtype in the header. */
  rewrite_weights (f->dir, m, NULL, NULL, NULL, NULL);
  patch_file (weights, "\"F32\"", "\"X32\"");
  expect_load_error (f->dir, se, GPTD_SAFETENSORS_ERROR_DTYPE, "X32", NULL);
  /* Truncated weights. */
  rewrite_weights (f->dir, m, NULL, NULL, NULL, NULL);
  {
    g_autofree char *raw = NULL;
    gsize len;
    g_assert_true (g_file_get_contents (weights, &raw, &len, NULL));
    g_assert_true (set_contents (weights, raw, (gssize) (len - 100), NULL));
  }
  expect_load_error (f->dir, se, GPTD_SAFETENSORS_ERROR_TRUNCATED, NULL);
  /* Header length beyond the file. */
  rewrite_weights (f->dir, m, NULL, NULL, NULL, NULL);
  {
    g_autofree char *raw = NULL;
    gsize len;
    g_assert_true (g_file_get_contents (weights, &raw, &len, NULL));
    guint64 big = GUINT64_TO_LE ((guint64) len);
    memcpy (raw, &big, 8);
    g_assert_true (set_contents (weights, raw, (gssize) len, NULL));
  }
  expect_load_error (f->dir, se, GPTD_SAFETENSORS_ERROR_HEADER_SIZE, NULL);
  /* Offsets pointing into another tensor. */
  rewrite_weights (f->dir, m, NULL, NULL, NULL, NULL);
  {
    g_autoptr (GptdSafetensors) st = gptd_safetensors_open (weights, NULL);
    const GptdSafetensorsTensor *t = gptd_safetensors_lookup (st, "ln_f.bias");
    g_autofree char *from = g_strdup_printf ("[%" G_GUINT64_FORMAT ",", t->offset);
    g_autofree char *to = g_strdup_printf ("[%" G_GUINT64_FORMAT ",", t->offset - 4);
    g_autofree char *from_end = g_strdup_printf (",%" G_GUINT64_FORMAT "]", t->offset + 32);
    g_autofree char *to_end = g_strdup_printf (",%" G_GUINT64_FORMAT "]", t->offset + 28);
    g_clear_pointer (&st, gptd_safetensors_free);
    if (strlen (from) == strlen (to) && strlen (from_end) == strlen (to_end))
      {
        patch_file (weights, from, to);
        patch_file (weights, from_end, to_end);
        expect_load_error (f->dir, se, GPTD_SAFETENSORS_ERROR_OVERLAP, "“ln_f.bias”", NULL);
      }
  }
  /* No weights at all. */
  g_unlink (weights);
  expect_load_error (f->dir, se, GPTD_SAFETENSORS_ERROR_IO, "model.safetensors", NULL);
  rewrite_weights (f->dir, m, NULL, NULL, NULL, NULL);

  /* A tied configuration with a different head stored. */
  write_text (config, "{\"n_layer\":2,\"n_head\":2,\"n_embd\":8,\"n_positions\":16,"
                      "\"vocab_size\":20,\"tie_word_embeddings\":true}");
  expect_load_error (f->dir, fe, GPTD_GPT_FILE_ERROR_UNEXPECTED, "“lm_head.weight”", NULL);
  /* An untied configuration without a head. */
  write_hf_dir (f->dir, m, "", AS_F32, FALSE, FALSE); /* untied: head stored */
  rewrite_weights (f->dir, m, "lm_head.weight", NULL, NULL, NULL);
  write_text (config, "{\"n_layer\":2,\"n_head\":2,\"n_embd\":8,\"n_positions\":16,"
                      "\"vocab_size\":20,\"tie_word_embeddings\":false}");
  expect_load_error (f->dir, fe, GPTD_GPT_FILE_ERROR_MISSING, "“lm_head.weight”", NULL);
  /* qkv_bias false stated, bias stored. */
  rewrite_weights (f->dir, m, NULL, NULL, NULL, NULL);
  write_text (config, "{\"n_layer\":2,\"n_head\":2,\"n_embd\":8,\"n_positions\":16,"
                      "\"vocab_size\":20,\"qkv_bias\":false}");
  expect_load_error (f->dir, fe, GPTD_GPT_FILE_ERROR_UNEXPECTED, "“h.0.attn.c_attn.bias”", NULL);
  /* Config of another size. */
  write_text (config, "{\"n_layer\":2,\"n_head\":2,\"n_embd\":8,\"n_positions\":16,"
                      "\"vocab_size\":21}");
  expect_load_error (f->dir, fe, GPTD_GPT_FILE_ERROR_SHAPE, "“wte.weight”", "[20, 8]",
                     "[21, 8]", NULL);
  /* Broken config.json. */
  write_text (config, "{\"n_layer\":2,");
  expect_load_error (f->dir, fe, GPTD_GPT_FILE_ERROR_CONFIG, "config.json", NULL);
  g_unlink (config);
  expect_load_error (f->dir, fe, GPTD_GPT_FILE_ERROR_IO, "config.json", NULL);
}

/* A small config.json naming a model far larger than model.safetensors beside it
 * is refused from the safetensors header, before any parameter is allocated. */
/* A NaN or infinite weight is refused at load, naming the file, the tensor and
 * the position. */
static void
test_not_finite (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  const float bad[] = { NAN, INFINITY, -INFINITY };
  const char *shown[] = { "holds nan at [1, 2]", "holds inf at [1, 2]", "holds -inf at [1, 2]" };
  for (guint c = 0; c < G_N_ELEMENTS (bad); c++)
    {
      g_autoptr (GptdGpt) m = tiny_model (FALSE, FALSE, 5);
      const GptdNnTensor *t = gptd_gpt_lookup_tensor (m, "h.1.mlp.c_fc.weight");
      t->data[1 * t->shape[1] + 2] = bad[c];
      g_assert_true (gptd_gpt_dir_save (m, f->dir, NULL, NULL, &error));
      g_assert_no_error (error);
      expect_load_error (f->dir, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_NOT_FINITE,
                         "“h.1.mlp.c_fc.weight”", shown[c], "must be finite", NULL);
    }
}

static void
test_config_larger_than_weights (Fixture *f, gconstpointer data)
{
  g_autoptr (GptdGpt) m = tiny_model (TRUE, FALSE, 1);
  g_autofree char *config = g_build_filename (f->dir, "config.json", NULL);
  g_autoptr (GError) error = NULL;
  g_assert_true (gptd_gpt_dir_save (m, f->dir, NULL, NULL, &error));
  g_assert_no_error (error);

  /* 300 layers of the tiny model's width: the layers are named. */
  write_text (config, "{\"n_layer\":300,\"n_head\":2,\"n_embd\":8,\"n_positions\":16,"
                      "\"vocab_size\":20}");
  expect_load_error (f->dir, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_MISSING, "config.json",
                     "n_layer is 300", "holds 2 layers", "“h.2.ln_1.weight”", NULL);

  /* GPT-2 small's width and 300 layers: 2.2 billion parameters, 17 GB with their
   * gradients. Refused from the header, in a child whose address space could
   * not hold them; under AddressSanitizer (which reserves terabytes) without the
   * limit. */
  write_text (config, "{\"n_layer\":300,\"n_head\":12,\"n_embd\":768,\"n_positions\":1024,"
                      "\"vocab_size\":50257}");
  if (!g_test_subprocess ())
    {
      g_test_trap_subprocess (NULL, 60 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_INHERIT_STDERR);
      g_test_trap_assert_passed ();
      return;
    }
#if !defined(__SANITIZE_ADDRESS__)
  struct rlimit limit = { (rlim_t) 4 << 30, (rlim_t) 4 << 30 };
  g_assert_cmpint (setrlimit (RLIMIT_AS, &limit), ==, 0);
#endif
  g_autoptr (GTimer) timer = g_timer_new ();
  expect_load_error (f->dir, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_MISSING, "config.json",
                     "n_layer is 300", NULL);
  g_assert_cmpfloat (g_timer_elapsed (timer, NULL), <, 1.0);
  write_text (config, "{\"n_layer\":2,\"n_head\":12,\"n_embd\":768,\"n_positions\":1024,"
                      "\"vocab_size\":50257}");
  expect_load_error (f->dir, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_SHAPE, "“wte.weight”",
                     "[20, 8]", "[50257, 768]", NULL);
}

/* Deeply nested JSON in each file of a model directory or checkpoint is refused
 * with an error naming the file, instead of crashing in json-glib's recursion. */
static void
test_deep_json (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGpt) m = tiny_model (TRUE, FALSE, 1);
  g_autofree char *config = g_build_filename (f->dir, "config.json", NULL);
  g_autofree char *opens = g_strnfill (100000, '[');
  g_autofree char *deep = g_strdup_printf ("{\"n_layer\":%s", opens);
  g_assert_true (gptd_gpt_dir_save (m, f->dir, NULL, NULL, &error));
  g_assert_no_error (error);

  /* config.json */
  write_text (config, deep);
  expect_load_error (f->dir, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CONFIG, "config.json",
                     "deeper than 64", "(byte 74)", NULL);
  g_assert_false (gptd_gpt_config_from_json (deep, -1, NULL, &(GptdGptConfig) { 0 }, NULL,
                                             &error));
  g_assert_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CONFIG);
  g_clear_error (&error);

  /* checkpoint.json */
  g_autofree char *root = g_build_filename (f->dir, "run", NULL);
  g_assert_cmpint (g_mkdir_with_parents (root, 0755), ==, 0);
  g_autofree char *index = g_build_filename (root, GPTD_CHECKPOINT_INDEX, NULL);
  write_text (index, deep);
  g_assert_null (gptd_checkpoint_get_latest (root, &error));
  g_assert_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CHECKPOINT);
  g_assert_nonnull (strstr (error->message, index));
  g_assert_nonnull (strstr (error->message, "deeper than 64"));
  g_clear_error (&error);
  g_assert_null (gptd_checkpoint_load (root, NULL, NULL, &error));
  g_assert_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CHECKPOINT);
  g_clear_error (&error);

  /* The training state is a safetensors file: its header. */
  g_autofree char *state = g_build_filename (f->dir, "state.safetensors", NULL);
  g_autofree char *header = g_strdup_printf ("{\"__metadata__\":%s", opens);
  guint64 le = GUINT64_TO_LE ((guint64) strlen (header));
  g_autoptr (GString) raw = g_string_new_len ((const char *) &le, 8);
  g_string_append (raw, header);
  g_assert_true (set_contents (state, raw->str, (gssize) raw->len, NULL));
  GptdAdamWParams params;
  gptd_adamw_params_init (&params);
  g_autoptr (GptdAdamW) opt = gptd_adamw_new (m, &params, &error);
  g_assert_no_error (error);
  GptdTrainingInfo info = { 0 };
  g_assert_false (gptd_training_state_load (state, m, opt, &info, &error));
  g_assert_error (error, GPTD_SAFETENSORS_ERROR, GPTD_SAFETENSORS_ERROR_JSON);
  g_assert_nonnull (strstr (error->message, "deeper than 64"));
  gptd_training_info_clear (&info);
}

static void
test_tied_copy_accepted (Fixture *f, gconstpointer data)
{
  /* Some exports store the tied head as a copy of wte: accepted. */
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGpt) m = tiny_model (TRUE, TRUE, 2);
  write_hf_dir (f->dir, m, "transformer.", AS_F32, FALSE, TRUE);
  g_autofree char *weights = g_build_filename (f->dir, "model.safetensors", NULL);
  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  for (guint i = 0; i < gptd_gpt_n_tensors (m); i++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (m, i);
      gptd_safetensors_writer_add_f32 (w, t->name, (guint) t->ndim, t->shape, t->data);
    }
  const GptdNnTensor *wte = gptd_gpt_lookup_tensor (m, "wte.weight");
  gptd_safetensors_writer_add_f32 (w, "lm_head.weight", 2, wte->shape, wte->data);
  g_assert_true (gptd_safetensors_writer_write (w, weights, &error));
  g_autoptr (GptdGpt) back = gptd_gpt_dir_load (f->dir, &error);
  g_assert_no_error (error);
  g_assert_true (gptd_gpt_get_config (back)->tie_embeddings);
  assert_same_params (m, back);

  /* The same names with and without the prefix are one tensor twice. */
  g_autoptr (GptdSafetensorsWriter) w2 = gptd_safetensors_writer_new ();
  for (guint i = 0; i < gptd_gpt_n_tensors (m); i++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (m, i);
      gptd_safetensors_writer_add_f32 (w2, t->name, (guint) t->ndim, t->shape, t->data);
    }
  gptd_safetensors_writer_add_f32 (w2, "transformer.ln_f.bias", 1, wte->shape + 1,
                                   gptd_gpt_lookup_tensor (m, "ln_f.bias")->data);
  g_assert_true (gptd_safetensors_writer_write (w2, weights, &error));
  expect_load_error (f->dir, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_UNEXPECTED,
                     "“ln_f.bias”", "twice", NULL);
}

/* ------------------------------------------------------------------------ */
/* Training state */

/* Takes @n AdamW steps with made-up gradients. */
static void
fake_steps (GptdGpt *m, GptdAdamW *opt, int n, int salt)
{
  for (int s = 0; s < n; s++)
    {
      float *g = gptd_gpt_get_grads (m);
      size_t base = gptd_gpt_get_grads_offset (m);
      for (size_t i = base; i < gptd_gpt_n_params (m); i++)
        g[i - base] = sinf ((float) (i * 0.37 + s + salt)) * 0.01f;
      gptd_adamw_step (opt, m, 1e-3f);
    }
}

static void
assert_same_opt (GptdAdamW *a, GptdAdamW *b)
{
  g_assert_cmpint (gptd_adamw_get_step (a), ==, gptd_adamw_get_step (b));
  g_assert_cmpuint (gptd_adamw_n_tensors (a), ==, gptd_adamw_n_tensors (b));
  for (guint i = 0; i < gptd_adamw_n_tensors (a); i++)
    {
      const GptdNnTensor *ta = gptd_adamw_get_tensor (a, i);
      const GptdNnTensor *tb = gptd_adamw_lookup_tensor (b, ta->name);
      g_assert_nonnull (tb);
      g_assert_cmpmem (ta->data, ta->numel * sizeof (float), tb->data, tb->numel * sizeof (float));
    }
  const GptdAdamWParams *pa = gptd_adamw_get_params (a), *pb = gptd_adamw_get_params (b);
  g_assert_cmpfloat (pa->beta1, ==, pb->beta1);
  g_assert_cmpfloat (pa->beta2, ==, pb->beta2);
  g_assert_cmpfloat (pa->eps, ==, pb->eps);
  g_assert_cmpfloat (pa->weight_decay, ==, pb->weight_decay);
  g_assert_cmpint (!!pa->decay_1d, ==, !!pb->decay_1d);
}

static void
test_training_state (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGpt) m = tiny_model (FALSE, FALSE, 11);
  GptdAdamWParams params;
  gptd_adamw_params_init (&params);
  params.weight_decay = 0.1f;
  params.beta2 = 0.95f;
  params.decay_1d = FALSE;
  g_autoptr (GptdAdamW) opt = gptd_adamw_new (m, &params, &error);
  fake_steps (m, opt, 3, 0);

  GptdTrainingInfo info = { 0 };
  info.step = 3;
  info.epoch = 2;
  info.batch_index = 17;
  info.rng.seed = G_MAXUINT64 - 5;
  info.rng.counter = 123456789012345ULL;
  info.hparams = g_hash_table_new (g_str_hash, g_str_equal);
  g_hash_table_insert (info.hparams, "lr", "0.0004");
  g_hash_table_insert (info.hparams, "schedule", "warmup-cosine");
  g_autofree char *path = g_build_filename (f->dir, "training_state.safetensors", NULL);
  g_assert_true (gptd_training_state_save (path, m, opt, &info, &error));
  g_assert_no_error (error);
  g_hash_table_unref (info.hparams);

  /* The moments are stored under the optimizer's names. */
  {
    g_autoptr (GptdSafetensors) st = gptd_safetensors_open (path, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (gptd_safetensors_get_n_tensors (st), ==, gptd_adamw_n_tensors (opt));
    g_assert_nonnull (gptd_safetensors_lookup (st, gptd_adamw_get_tensor (opt, 0)->name));
    g_assert_cmpstr (gptd_safetensors_get_metadata (st, "step"), ==, "3");
    g_assert_cmpstr (gptd_safetensors_get_metadata (st, "hparams.lr"), ==, "0.0004");
  }

  /* A fresh model and optimizer resume exactly. */
  g_autofree char *dir = g_build_filename (f->dir, "m", NULL);
  g_assert_true (gptd_gpt_dir_save (m, dir, NULL, NULL, &error));
  g_autoptr (GptdGpt) m2 = gptd_gpt_dir_load (dir, &error);
  GptdAdamWParams defaults;
  gptd_adamw_params_init (&defaults);
  g_autoptr (GptdAdamW) opt2 = gptd_adamw_new (m2, &defaults, &error);
  GptdTrainingInfo got;
  g_assert_true (gptd_training_state_load (path, m2, opt2, &got, &error));
  g_assert_no_error (error);
  g_assert_cmpint (got.step, ==, 3);
  g_assert_cmpint (got.epoch, ==, 2);
  g_assert_cmpint (got.batch_index, ==, 17);
  g_assert_cmpuint (got.rng.seed, ==, G_MAXUINT64 - 5);
  g_assert_cmpuint (got.rng.counter, ==, 123456789012345ULL);
  g_assert_cmpuint (g_hash_table_size (got.hparams), ==, 2);
  g_assert_cmpstr (g_hash_table_lookup (got.hparams, "schedule"), ==, "warmup-cosine");
  gptd_training_info_clear (&got);
  GptdRngState rng;
  gptd_gpt_get_rng (m2, &rng);
  g_assert_cmpuint (rng.seed, ==, G_MAXUINT64 - 5);
  assert_same_opt (opt, opt2);

  fake_steps (m, opt, 2, 3);
  fake_steps (m2, opt2, 2, 3);
  assert_same_params (m, m2);
  assert_same_opt (opt, opt2);

  /* A state for another model size is refused, naming the tensor. */
  GptdGptConfig wider = tiny_config (FALSE, FALSE);
  wider.vocab_size = 21;
  g_autoptr (GptdGpt) m3 = gptd_gpt_new (&wider, &error);
  g_autoptr (GptdAdamW) opt3 = gptd_adamw_new (m3, &defaults, &error);
  g_assert_false (gptd_training_state_load (path, m3, opt3, NULL, &error));
  g_assert_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_SHAPE);
  g_assert_nonnull (strstr (error->message, "wte.weight"));
  g_clear_error (&error);
  /* ... and one with qkv bias lacks tensors. */
  g_autoptr (GptdGpt) m4 = tiny_model (TRUE, FALSE, 1);
  g_autoptr (GptdAdamW) opt4 = gptd_adamw_new (m4, &defaults, &error);
  g_assert_false (gptd_training_state_load (path, m4, opt4, NULL, &error));
  g_assert_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_MISSING);
  g_assert_nonnull (strstr (error->message, "c_attn.bias"));
  g_clear_error (&error);
  /* A model file is not a training state. */
  g_autofree char *weights = g_build_filename (dir, "model.safetensors", NULL);
  g_assert_false (gptd_training_state_load (weights, m2, opt2, NULL, &error));
  g_assert_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_STATE);
  g_assert_nonnull (strstr (error->message, weights));
  g_clear_error (&error);
  /* Bad metadata. */
  patch_file (path, "\"epoch\":\"2\"", "\"epoch\":\"x\"");
  g_assert_false (gptd_training_state_load (path, m2, opt2, NULL, &error));
  g_assert_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_STATE);
  g_assert_nonnull (strstr (error->message, "“epoch”"));
}

/* Every field of a training state is range-checked on load: a state saved with a
 * negative step, epoch, batch index or optimizer step, an epoch beyond 32 bits,
 * optimizer hyper-parameters that cannot work, or a moment that is not finite (or
 * a negative second moment) is refused with an error naming the file and field. */
static void
test_training_state_ranges (Fixture *f, gconstpointer data)
{
  static const struct {
    const char *what;  /* the field made bad */
    const char *want;  /* a substring of the error */
  } cases[] = {
    { "step", "metadata “step” is -1, out of range [0, " },
    { "epoch", "metadata “epoch” is -2, out of range [0, 2147483647]" },
    { "epoch-big", "metadata “epoch” is 4294967296, out of range" },
    { "batch_index", "metadata “batch_index” is -3, out of range" },
    { "adamw.step", "metadata “adamw.step” is -4, out of range" },
    { "beta1", "metadata “adamw.beta1” is 1, out of range [0, 1)" },
    { "beta2", "metadata “adamw.beta2” is -0.5, out of range [0, 1)" },
    { "eps", "metadata “adamw.eps” is 0, out of range (0, inf)" },
    { "weight_decay", "metadata “adamw.weight_decay” is -0.1, out of range [0, inf)" },
    { "m-nan", "tensor “adamw.m.wte.weight” holds nan at index 5: a moment must be finite" },
    { "v-negative", "tensor “adamw.v.wpe.weight” holds -1 at index 0: a second moment" },
  };
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGpt) m = tiny_model (FALSE, FALSE, 3);
  g_autofree char *path = g_build_filename (f->dir, "training_state.safetensors", NULL);
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      const char *what = cases[c].what;
      GptdAdamWParams params;
      gptd_adamw_params_init (&params);
      if (strcmp (what, "beta1") == 0)
        params.beta1 = 1.0f;
      if (strcmp (what, "beta2") == 0)
        params.beta2 = -0.5f;
      if (strcmp (what, "eps") == 0)
        params.eps = 0.0f;
      if (strcmp (what, "weight_decay") == 0)
        params.weight_decay = -0.1f;
      g_autoptr (GptdAdamW) opt = gptd_adamw_new (m, &params, &error);
      g_assert_no_error (error);
      fake_steps (m, opt, 1, (int) c);
      if (strcmp (what, "adamw.step") == 0)
        gptd_adamw_set_step (opt, 10);  /* made -4 below */
      if (strcmp (what, "m-nan") == 0)
        gptd_adamw_lookup_tensor (opt, "adamw.m.wte.weight")->data[5] = NAN;
      if (strcmp (what, "v-negative") == 0)
        gptd_adamw_lookup_tensor (opt, "adamw.v.wpe.weight")->data[0] = -1.0f;
      GptdTrainingInfo info = { .step = 1, .epoch = 0, .batch_index = 1 };
      if (strcmp (what, "step") == 0)
        info.step = -1;
      if (strcmp (what, "epoch") == 0)
        info.epoch = -2;
      if (strcmp (what, "epoch-big") == 0)
        info.epoch = G_GINT64_CONSTANT (4294967296);
      if (strcmp (what, "batch_index") == 0)
        info.batch_index = -3;
      g_assert_true (gptd_training_state_save (path, m, opt, &info, &error));
      g_assert_no_error (error);
      if (strcmp (what, "adamw.step") == 0)
        patch_file (path, "\"adamw.step\":\"10\"", "\"adamw.step\":\"-4\"");

      GptdAdamWParams defaults;
      gptd_adamw_params_init (&defaults);
      g_autoptr (GptdAdamW) opt2 = gptd_adamw_new (m, &defaults, &error);
      GptdTrainingInfo got = { 0 };
      g_assert_false (gptd_training_state_load (path, m, opt2, &got, &error));
      g_assert_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_STATE);
      if (!strstr (error->message, cases[c].want) || !strstr (error->message, path))
        g_error ("%s: error \"%s\" should name %s and say \"%s\"", what, error->message,
                 path, cases[c].want);
      g_clear_error (&error);
      gptd_training_info_clear (&got);
    }
}

/* ------------------------------------------------------------------------ */
/* Checkpoints */

static void
test_checkpoints (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *root = g_build_filename (f->dir, "run", NULL);
  g_autoptr (GptdGpt) m = tiny_model (TRUE, TRUE, 21);
  GptdAdamWParams params;
  gptd_adamw_params_init (&params);
  g_autoptr (GptdAdamW) opt = gptd_adamw_new (m, &params, &error);

  /* Nothing saved yet. */
  g_assert_null (gptd_checkpoint_load (root, NULL, NULL, &error));
  g_assert_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CHECKPOINT);
  g_clear_error (&error);

  GptdTrainingInfo info = { .step = 1 };
  GptdCheckpointOptions options = { NULL, NULL, 2 };
  for (int step = 1; step <= 3; step++)
    {
      fake_steps (m, opt, 1, step);
      info.step = step;
      info.batch_index = step * 10;
      g_autofree char *saved = NULL;
      g_assert_true (gptd_checkpoint_save (root, m, opt, &info, &options, &saved, &error));
      g_assert_no_error (error);
      g_autofree char *expect = g_strdup_printf ("%s/step-%08d", root, step);
      g_assert_cmpstr (saved, ==, expect);
      g_autofree char *latest = gptd_checkpoint_get_latest (root, &error);
      g_assert_cmpstr (latest, ==, expect);

      GptdAdamW *opt2 = NULL;
      GptdTrainingInfo got;
      g_autoptr (GptdGpt) back = gptd_checkpoint_load (root, &opt2, &got, &error);
      g_assert_no_error (error);
      assert_same_params (m, back);
      assert_same_opt (opt, opt2);
      g_assert_cmpint (got.step, ==, step);
      g_assert_cmpint (got.batch_index, ==, step * 10);
      gptd_training_info_clear (&got);
      gptd_adamw_free (opt2);
    }
  /* Two kept. */
  g_autofree char *s1 = g_build_filename (root, "step-00000001", NULL);
  g_autofree char *s2 = g_build_filename (root, "step-00000002", NULL);
  g_assert_false (g_file_test (s1, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (s2, G_FILE_TEST_IS_DIR));

  /* The same step again goes to a new directory, never over the latest. */
  fake_steps (m, opt, 1, 9);
  g_autofree char *saved = NULL;
  g_assert_true (gptd_checkpoint_save (root, m, opt, &info, &options, &saved, &error));
  g_autofree char *expect = g_strdup_printf ("%s/step-00000003.1", root);
  g_assert_cmpstr (saved, ==, expect);
  g_assert_false (g_file_test (s2, G_FILE_TEST_EXISTS));

  /* A checkpoint root loads as a model directory. */
  g_autoptr (GptdGpt) back = gptd_gpt_dir_load (root, &error);
  g_assert_no_error (error);
  assert_same_params (m, back);

  /* A corrupt index is an error, not a silent fallback. */
  g_autofree char *index = g_build_filename (root, "checkpoint.json", NULL);
  write_text (index, "{\"format\":\"gptd-checkpoint\",\"version\":1,\"latest\":\"../x\"}");
  g_assert_null (gptd_checkpoint_get_latest (root, &error));
  g_assert_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CHECKPOINT);
  g_assert_nonnull (strstr (error->message, "latest"));
  g_clear_error (&error);
  g_assert_false (gptd_checkpoint_save (root, m, opt, &info, &options, NULL, &error));
  g_assert_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CHECKPOINT);
  g_clear_error (&error);
  write_text (index, "{\"format\":\"gptd-checkpoint\",\"version\":1,\"latest\":\"step-00000099\"}");
  g_assert_null (gptd_checkpoint_get_latest (root, &error));
  g_assert_error (error, GPTD_GPT_FILE_ERROR, GPTD_GPT_FILE_ERROR_CHECKPOINT);
}

/* An optimizer made after freezing keeps moments for the trainable tensors only;
 * a state of all the moments (as written before) still loads into it, and a
 * checkpoint of it loads with the same tensors frozen. */
static void
test_frozen_moments (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGpt) m = tiny_model (FALSE, FALSE, 31);
  GptdAdamWParams params;
  gptd_adamw_params_init (&params);
  g_autoptr (GptdAdamW) full = gptd_adamw_new (m, &params, &error);
  fake_steps (m, full, 2, 0);
  GptdTrainingInfo info = { .step = 2 };
  g_autofree char *path = g_build_filename (f->dir, "full.safetensors", NULL);
  g_assert_true (gptd_training_state_save (path, m, full, &info, &error));
  g_assert_no_error (error);

  gptd_gpt_set_frozen (m, "*", TRUE);
  gptd_gpt_set_frozen (m, "h.1.*", FALSE);
  gptd_gpt_set_frozen (m, "ln_f.*", FALSE);
  gptd_gpt_set_frozen (m, "lm_head.*", FALSE);
  const GptdNnTensor *first = gptd_gpt_lookup_tensor (m, "h.1.ln_1.weight");
  g_assert_cmpuint (gptd_gpt_get_grads_offset (m), ==,
                    (size_t) (first->data - gptd_gpt_get_params (m)));
  g_assert_null (gptd_gpt_lookup_tensor (m, "h.0.mlp.c_fc.weight")->grad);
  g_autoptr (GptdAdamW) part = gptd_adamw_new (m, &params, &error);
  guint unfrozen = 0;
  for (guint i = 0; i < gptd_gpt_n_tensors (m); i++)
    unfrozen += !gptd_gpt_get_tensor (m, i)->frozen;
  g_assert_cmpuint (gptd_adamw_n_tensors (part), ==, 2 * unfrozen);
  g_assert_null (gptd_adamw_lookup_tensor (part, "adamw.m.wte.weight"));

  /* The old, complete state: the trainable moments are restored. */
  g_assert_true (gptd_training_state_load (path, m, part, NULL, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < gptd_adamw_n_tensors (part); i++)
    {
      const GptdNnTensor *t = gptd_adamw_get_tensor (part, i);
      const GptdNnTensor *u = gptd_adamw_lookup_tensor (full, t->name);
      g_assert_cmpmem (t->data, t->numel * 4, u->data, u->numel * 4);
    }

  /* A checkpoint of the partial optimizer: loading freezes the rest again. */
  fake_steps (m, part, 1, 5);
  g_autofree char *root = g_build_filename (f->dir, "run", NULL);
  info.step = 3;
  g_assert_true (gptd_checkpoint_save (root, m, part, &info, NULL, NULL, &error));
  g_assert_no_error (error);
  GptdAdamW *back_opt = NULL;
  g_autoptr (GptdGpt) back = gptd_checkpoint_load (root, &back_opt, NULL, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < gptd_gpt_n_tensors (m); i++)
    g_assert_cmpint (gptd_gpt_get_tensor (back, i)->frozen, ==,
                     gptd_gpt_get_tensor (m, i)->frozen);
  assert_same_opt (part, back_opt);
  gptd_adamw_free (back_opt);
}

/* Fault hook: fail the n-th step of any atomic write. */
typedef struct {
  guint calls;
  guint fail_at;
  int result;
  GptdAtomicFileOp failed_op;
  char *failed_path;
} NthFault;

static int
nth_fault (GptdAtomicFileOp op, const char *path, guint64 offset, size_t *length,
           gpointer user_data)
{
  NthFault *nf = user_data;
  if (++nf->calls != nf->fail_at)
    return 0;
  nf->failed_op = op;
  g_free (nf->failed_path);
  nf->failed_path = g_strdup (path);
  if (op == GPTD_ATOMIC_FILE_OP_WRITE)
    *length /= 2;
  return nf->result;
}

/* Lists the files under @dir, recursively, relative to it. */
static void
list_files (const char *dir, const char *rel, GPtrArray *out)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *p = g_build_filename (dir, name, NULL);
      g_autofree char *r = rel ? g_build_filename (rel, name, NULL) : g_strdup (name);
      if (g_file_test (p, G_FILE_TEST_IS_DIR))
        list_files (p, r, out);
      else
        g_ptr_array_add (out, g_steal_pointer (&r));
    }
}

static void
test_interrupted_checkpoint (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *root = g_build_filename (f->dir, "run", NULL);
  g_autofree char *enc = g_build_filename (f->dir, "encoder.json", NULL);
  g_autofree char *bpe = g_build_filename (f->dir, "vocab.bpe", NULL);
  write_text (enc, "{\"a\": 0}");
  write_text (bpe, "#version: 0.2\n");
  GptdCheckpointOptions options = { enc, bpe, 1 };

  /* Checkpoint A at step 10. */
  g_autoptr (GptdGpt) m = tiny_model (TRUE, FALSE, 31);
  GptdAdamWParams params;
  gptd_adamw_params_init (&params);
  g_autoptr (GptdAdamW) opt = gptd_adamw_new (m, &params, &error);
  fake_steps (m, opt, 2, 0);
  GptdTrainingInfo info = { .step = 10, .epoch = 1 };
  g_assert_true (gptd_checkpoint_save (root, m, opt, &info, &options, NULL, &error));
  g_autoptr (GptdGpt) a = gptd_checkpoint_load (root, NULL, NULL, &error);
  g_assert_no_error (error);

  /* Model B at step 20; count the steps of a whole save of it. */
  fake_steps (m, opt, 2, 5);
  GptdTrainingInfo info_b = { .step = 20, .epoch = 2 };
  g_autofree char *scratch = g_build_filename (f->dir, "scratch", NULL);
  NthFault count = { 0, G_MAXUINT, 0, 0, NULL };
  gptd_atomic_file_set_fault_func (nth_fault, &count);
  g_assert_true (gptd_checkpoint_save (scratch, m, opt, &info_b, &options, NULL, &error));
  gptd_atomic_file_set_fault_func (NULL, NULL);
  guint n_steps = count.calls;
  g_assert_cmpuint (n_steps, >, 10);

  /* Interrupt the save of B at every step, in turn by a full disk, an I/O
   * error or a crash; each time a checkpoint must load and be A or (only once
   * the index has been renamed) B. */
  static const int results[] = { ENOSPC, EIO, GPTD_ATOMIC_FILE_FAULT_CRASH };
  guint n_a = 0, n_b = 0;
  for (guint r = 0; r < 2; r++)
    for (guint k = 1; k <= n_steps; k++)
      {
        NthFault nf = { 0, k, results[(k + r) % G_N_ELEMENTS (results)], 0, NULL };
        gptd_atomic_file_set_fault_func (nth_fault, &nf);
        gboolean ok = gptd_checkpoint_save (root, m, opt, &info_b, &options, NULL, &error);
        gptd_atomic_file_set_fault_func (NULL, NULL);
        g_assert_false (ok);
        g_assert_nonnull (error);
        g_assert_nonnull (strstr (error->message, nf.failed_path));
        g_clear_error (&error);

        GptdTrainingInfo got;
        g_autoptr (GptdAdamW) opt2 = NULL;
        g_autoptr (GptdGpt) back = gptd_checkpoint_load (root, &opt2, &got, &error);
        g_assert_no_error (error);
        gboolean index_renamed = g_str_has_suffix (nf.failed_path, "checkpoint.json")
                                 && nf.failed_op == GPTD_ATOMIC_FILE_OP_FSYNC_DIR;
        if (index_renamed)
          {
            g_assert_cmpint (got.step, ==, 20);
            assert_same_params (m, back);
            assert_same_opt (opt, opt2);
            n_b++;
            /* Put A back for the next round. */
            g_autofree char *index = g_build_filename (root, "checkpoint.json", NULL);
            write_text (index, "{\"format\":\"gptd-checkpoint\",\"version\":1,"
                               "\"latest\":\"step-00000010\",\"step\":10}");
          }
        else
          {
            g_assert_cmpint (got.step, ==, 10);
            g_assert_cmpint (got.epoch, ==, 1);
            assert_same_params (a, back);
            n_a++;
          }
        gptd_training_info_clear (&got);
        g_free (nf.failed_path);
      }
  g_assert_cmpuint (n_b, ==, 2);
  g_assert_cmpuint (n_a, ==, 2 * (n_steps - 1));

  /* A clean save after all that succeeds, prunes A and leaves no debris. */
  g_assert_true (gptd_checkpoint_save (root, m, opt, &info_b, &options, NULL, &error));
  g_assert_no_error (error);
  g_autoptr (GptdGpt) b = gptd_checkpoint_load (root, NULL, NULL, &error);
  assert_same_params (m, b);
  g_autoptr (GPtrArray) files = g_ptr_array_new_with_free_func (g_free);
  list_files (root, NULL, files);
  GString *all = g_string_new (NULL);
  for (guint i = 0; i < files->len; i++)
    g_string_append_printf (all, "%s;", (const char *) files->pdata[i]);
  g_test_message ("files: %s", all->str);
  g_assert_cmpuint (files->len, ==, 6);
  for (guint i = 0; i < files->len; i++)
    {
      const char *p = files->pdata[i];
      g_assert_true (strcmp (p, "checkpoint.json") == 0 || g_str_has_prefix (p, "step-00000020/"));
      g_assert_null (strstr (p, ".tmp-"));
    }
  g_string_free (all, TRUE);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  gptd_nn_set_num_threads (1);
#define ADD(path, func) \
  g_test_add ("/nn/gpt2-file/" path, Fixture, NULL, fixture_setup, func, fixture_teardown)
  ADD ("config", test_config);
  ADD ("save-load/untied", test_save_load_untied);
  ADD ("save-load/tied-qkv-bias", test_save_load_tied_qkv);
  ADD ("save-load/classifier", test_save_classifier);
  ADD ("hf/layout", test_hf_layout);
  ADD ("hf/f16-bf16", test_hf_f16_bf16);
  g_test_add_func ("/nn/gpt2-file/hf/tiny-golden", test_hf_tiny_golden);
  ADD ("hf/tied-copy", test_tied_copy_accepted);
  ADD ("bad-dirs", test_bad_dirs);
  ADD ("deep-json", test_deep_json);
  ADD ("config-larger-than-weights", test_config_larger_than_weights);
  ADD ("not-finite", test_not_finite);
  ADD ("training-state", test_training_state);
  ADD ("training-state/ranges", test_training_state_ranges);
  ADD ("checkpoint/save-load", test_checkpoints);
  ADD ("training-state/frozen-moments", test_frozen_moments);
  ADD ("checkpoint/interrupted", test_interrupted_checkpoint);
#undef ADD
  return g_test_run ();
}

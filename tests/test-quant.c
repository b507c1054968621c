/* test-quant.c: bf16 and q8 weights (gptd/quant.h, lib/nn/quant*.c,
 * lib/nn/gpt2-kv-quant.c): the number conversions, every kernel this CPU runs
 * against the scalar reference and a float64 product, a tiny model's logits
 * against PyTorch (tests/golden/nn/make_quant_goldens.py) and against fp32,
 * the save-load round trip, corrupt files, and generation.
 */
#include "config.h"

#include "nn/quant-private.h"

#include <gptd/generate.h>
#include <gptd/gpt2-file.h>
#include <gptd/quant.h>
#include <gptd/safetensors.h>

#include <glib/gstdio.h>
#include <math.h>

#include "test-nn-util.h"

/* A golden file of make_quant_goldens.py. */
static char *
golden_path (const char *variant)
{
  g_autofree char *file = g_strdup_printf ("quant-%s.bin", variant);
  return g_test_build_filename (G_TEST_DIST, "golden", "nn", file, NULL);
}

static const char *const kernel_names[] = { "scalar", "avx2", "avx512",
                                            "avx512-vnni" };

/* ---- conversions -------------------------------------------------------- */

static void
test_bf16_rounding (void)
{
  /* Exact values stay; ties go to even; NaN stays NaN. */
  g_assert_cmphex (gptd__f32_to_bf16 (1.0f), ==, 0x3f80);
  g_assert_cmphex (gptd__f32_to_bf16 (-2.5f), ==, 0xc020);
  /* 1 + 2^-8 is halfway between 1 and 1 + 2^-7: to even (1). */
  g_assert_cmphex (gptd__f32_to_bf16 (1.0f + 0x1p-8f), ==, 0x3f80);
  /* 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: to even. */
  g_assert_cmphex (gptd__f32_to_bf16 (1.0f + 3 * 0x1p-8f), ==, 0x3f82);
  g_assert_cmphex (gptd__f32_to_bf16 (1.0f + 0x1p-8f + 0x1p-20f), ==, 0x3f81);
  g_assert_true (isnan (gptd__bf16_to_f32 (gptd__f32_to_bf16 (NAN))));
  /* Relative error at most half a unit in the last of 8 bits: 2^-8. */
  GRand *r = g_rand_new_with_seed (1);
  for (int i = 0; i < 100000; i++)
    {
      float x = (float) (g_rand_double_range (r, -1, 1) *
                         pow (10, g_rand_int_range (r, -30, 30)));
      float y = gptd__bf16_to_f32 (gptd__f32_to_bf16 (x));
      g_assert_cmpfloat (fabsf (x - y), <=, fabsf (x) * 0x1p-8f);
    }
  g_rand_free (r);
}

static void
test_f16 (void)
{
  /* Every half that is a number survives half -> float -> half. */
  for (guint h = 0; h < 65536; h++)
    {
      float f = gptd__f16_to_f32 ((uint16_t) h);
      if (isnan (f))
        continue;
      g_assert_cmphex (gptd__f32_to_f16 (f), ==, h);
    }
  g_assert_cmpfloat (gptd__f16_to_f32 (0x3c00), ==, 1.0f);
  g_assert_cmpfloat (gptd__f16_to_f32 (0x7bff), ==, 65504.0f);
  g_assert_cmpfloat (gptd__f16_to_f32 (0x0001), ==, 0x1p-24f);
  g_assert_cmphex (gptd__f32_to_f16 (1e6f), ==, 0x7c00);
  g_assert_cmphex (gptd__f32_to_f16 (0x1p-26f), ==, 0);
  /* Ties to even: 1 + 2^-11 lies between 1 and 1 + 2^-10. */
  g_assert_cmphex (gptd__f32_to_f16 (1.0f + 0x1p-11f), ==, 0x3c00);
  g_assert_cmphex (gptd__f32_to_f16 (1.0f + 3 * 0x1p-11f), ==, 0x3c02);
  g_assert_cmphex (gptd__f32_to_f16 (1.5f * 0x1p-24f), ==, 0x0002);
}

static void
test_q8_round_trip (void)
{
  enum { N = 32 * 64 };
  float x[N], y[N];
  int8_t q[N];
  uint16_t d[N / 32];
  GRand *r = g_rand_new_with_seed (2);
  for (int i = 0; i < N; i++)
    x[i] = (float) g_rand_double_range (r, -1, 1) * (1 + (i / 32) * 10);
  for (int i = 64; i < 96; i++)
    x[i] = 0.0f; /* a zero block */
  x[200] = 1e4f;  /* one large value in its block */
  g_rand_free (r);
  gptd__quant_to_q8 (x, N, q, d);
  gptd__quant_from_q8 (q, d, N, y);
  for (int b = 0; b < N / 32; b++)
    {
      float amax = 0;
      int qmax = 0;
      for (int i = 0; i < 32; i++)
        {
          amax = fmaxf (amax, fabsf (x[b * 32 + i]));
          qmax = MAX (qmax, abs (q[b * 32 + i]));
        }
      /* Half a step, and the rounding of the scale to half precision. */
      float bound = 0.5f * amax / 127 * 1.001f + amax * 0x1p-11f;
      for (int i = 0; i < 32; i++)
        g_assert_cmpfloat (fabsf (x[b * 32 + i] - y[b * 32 + i]), <=, bound);
      g_assert_cmpint (qmax, ==, amax > 0 ? 127 : 0);
    }
  g_assert_cmpfloat (y[70], ==, 0.0f);
}

/* ---- kernels ------------------------------------------------------------ */

typedef enum { DATA_RANDOM, DATA_ZEROS, DATA_LARGE, DATA_MIXED } DataKind;

static void
fill (float *v, size_t n, DataKind kind, GRand *r)
{
  for (size_t i = 0; i < n; i++)
    {
      double u = g_rand_double_range (r, -1, 1);
      switch (kind)
        {
        case DATA_ZEROS:
          v[i] = 0.0f;
          break;
        case DATA_LARGE:
          v[i] = (float) (u * 1e15);
          break;
        case DATA_MIXED:
          v[i] = i % 7 == 0 ? 0.0f : (float) (u * pow (10, (int) (i % 9) - 4));
          break;
        default:
          v[i] = (float) u;
        }
    }
}

/* Checks @got against the float64 product @want within @rel of the sum of
 * the absolute terms @mag. */
static void
check_close (const char *what, const float *got, const double *want,
             const double *mag, size_t n, double rel)
{
  for (size_t i = 0; i < n; i++)
    if (!(fabs (got[i] - want[i]) <= rel * mag[i] + 1e-30))
      {
        g_test_fail_printf ("%s: output %zu is %.9g, expected %.9g (terms "
                            "%.3g)",
                            what, i, got[i], want[i], mag[i]);
        return;
      }
}

static void
test_kernels_bf16 (gconstpointer data)
{
  const GptdQuantKernels *k = gptd__quant_kernels_lookup (data);
  if (k == NULL)
    {
      g_test_skip ("this CPU does not run these kernels");
      return;
    }
  static const size_t Ks[] = { 1, 7, 16, 31, 32, 33, 63, 64, 95, 200, 768 };
  static const size_t ns[] = { 1, 3, 4, 5, 16, 17, 35 };
  GRand *r = g_rand_new_with_seed (3);
  for (int kind = DATA_RANDOM; kind <= DATA_MIXED; kind++)
    for (guint a = 0; a < G_N_ELEMENTS (Ks); a++)
      for (guint b = 0; b < G_N_ELEMENTS (ns); b++)
        for (size_t m = 1; m <= 3; m++)
          {
            size_t K = Ks[a], n = ns[b];
            g_autofree float *w = g_new (float, n * K);
            g_autofree float *x = g_new (float, m * K);
            g_autofree float *xp = g_new (float, m * K);
            g_autofree uint16_t *wb = g_new (uint16_t, n * K);
            g_autofree float *y = g_new (float, m * n);
            g_autofree double *want = g_new (double, m * n);
            g_autofree double *mag = g_new (double, m * n);
            fill (w, n * K, kind, r);
            fill (x, m * K, kind == DATA_LARGE ? DATA_RANDOM : kind, r);
            gptd__quant_to_bf16 (w, n * K, wb);
            for (size_t i = 0; i < m; i++)
              gptd__quant_prepare_bf16 (x + i * K, K, xp + i * K);
            for (size_t i = 0; i < m; i++)
              for (size_t j = 0; j < n; j++)
                {
                  double s = 0, t = 0;
                  for (size_t c = 0; c < K; c++)
                    {
                      double p = (double) gptd__bf16_to_f32 (wb[j * K + c]) *
                                 x[i * K + c];
                      s += p;
                      t += fabs (p);
                    }
                  want[i * n + j] = s;
                  mag[i * n + j] = t;
                }
            k->matmul_bf16 (wb, n, K, xp, m, y, n);
            g_autofree char *what = g_strdup_printf (
              "%s bf16 n %zu K %zu m %zu data %d", k->name, n, K, m, kind);
            check_close (what, y, want, mag, m * n, 1e-5);
          }
  g_rand_free (r);
}

static void
test_kernels_q8 (gconstpointer data)
{
  const GptdQuantKernels *k = gptd__quant_kernels_lookup (data);
  if (k == NULL)
    {
      g_test_skip ("this CPU does not run these kernels");
      return;
    }
  const GptdQuantKernels *ref = &gptd__quant_kernels_scalar;
  static const size_t Ks[] = { 32, 64, 96, 160, 768, 3072 };
  static const size_t ns[] = { 1, 3, 4, 5, 16, 17, 35 };
  GRand *r = g_rand_new_with_seed (4);
  for (int kind = DATA_RANDOM; kind <= DATA_MIXED; kind++)
    for (guint a = 0; a < G_N_ELEMENTS (Ks); a++)
      for (guint b = 0; b < G_N_ELEMENTS (ns); b++)
        for (size_t m = 1; m <= 3; m++)
          {
            size_t K = Ks[a], n = ns[b], nb = K / 32;
            g_autofree float *w = g_new (float, n * K);
            g_autofree float *x = g_new (float, m * K);
            g_autofree int8_t *wq = g_new (int8_t, n * K);
            g_autofree uint16_t *wd = g_new (uint16_t, n * nb);
            g_autofree int8_t *xq = g_new (int8_t, m * K);
            g_autofree int8_t *xq_ref = g_new (int8_t, m * K);
            g_autofree float *xd = g_new (float, m * nb);
            g_autofree float *xd_ref = g_new (float, m * nb);
            g_autofree float *y = g_new (float, m * n);
            g_autofree double *want = g_new (double, m * n);
            g_autofree double *mag = g_new (double, m * n);
            fill (w, n * K, kind == DATA_LARGE ? DATA_RANDOM : kind, r);
            fill (x, m * K, kind, r);
            if (kind == DATA_LARGE)
              for (size_t i = 0; i < m * K; i++)
                x[i] *= 1e-5f; /* large, but the sums stay finite */
            gptd__quant_to_q8 (w, n * K, wq, wd);
            for (size_t i = 0; i < m; i++)
              {
                k->quantize_row_q8 (x + i * K, K, xq + i * K, xd + i * nb);
                ref->quantize_row_q8 (x + i * K, K, xq_ref + i * K,
                                      xd_ref + i * nb);
              }
            g_assert_cmpmem (xq, m * K, xq_ref, m * K);
            g_assert_cmpmem (xd, m * nb * 4, xd_ref, m * nb * 4);
            for (size_t i = 0; i < m; i++)
              for (size_t j = 0; j < n; j++)
                {
                  double s = 0, t = 0;
                  for (size_t c = 0; c < nb; c++)
                    {
                      long acc = 0, abs_acc = 0;
                      for (int e = 0; e < 32; e++)
                        {
                          int p = wq[j * K + c * 32 + e] * xq[i * K + c * 32 + e];
                          acc += p;
                          abs_acc += abs (p);
                        }
                      double d = (double) gptd__f16_to_f32 (wd[j * nb + c]) *
                                 xd[i * nb + c];
                      s += d * acc;
                      t += fabs (d) * abs_acc;
                    }
                  want[i * n + j] = s;
                  mag[i * n + j] = t;
                }
            k->matmul_q8 (wq, wd, n, K, xq, xd, m, y, n);
            g_autofree char *what = g_strdup_printf (
              "%s q8 n %zu K %zu m %zu data %d", k->name, n, K, m, kind);
            check_close (what, y, want, mag, m * n, 1e-5);
          }
  g_rand_free (r);
}

/* ---- tiny models -------------------------------------------------------- */

static GptdGpt *
golden_model (const TnnGolden *g)
{
  const TnnRecord *rc = tnn_golden_get (g, "config");
  const gint32 *c = rc->data;
  GptdGptConfig cfg = { 0 };
  cfg.n_layer = c[0];
  cfg.n_head = c[1];
  cfg.n_embd = c[2];
  cfg.context_length = c[3];
  cfg.vocab_size = c[4];
  cfg.qkv_bias = c[5];
  cfg.tie_embeddings = c[6];
  cfg.head_bias = c[7];
  cfg.layer_norm_epsilon = 1e-5f;
  g_autoptr (GError) error = NULL;
  GptdGpt *m = gptd_gpt_new (&cfg, &error);
  g_assert_no_error (error);
  tnn_init_weights (m, (guint32) c[8]);
  return m;
}

/* The logits of every position: token by token through the KV cache
 * (@prefill: the first half at once). */
static float *
cached_logits (GptdGpt *m, const gint32 *tokens, int T, gboolean prefill)
{
  const int V = gptd_gpt_get_config (m)->vocab_size;
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGptKvCache) c = gptd_gpt_kv_cache_new (m, 0, &error);
  g_assert_no_error (error);
  float *out = g_new0 (float, (size_t) T * V);
  int start = 0;
  if (prefill)
    {
      start = T / 2;
      const float *l = gptd_gpt_forward_cached (m, c, tokens, start, &error);
      g_assert_no_error (error);
      memcpy (out + (size_t) (start - 1) * V, l, sizeof (float) * V);
    }
  for (int t = start; t < T; t++)
    {
      const float *l = gptd_gpt_forward_cached (m, c, tokens + t, 1, &error);
      g_assert_no_error (error);
      memcpy (out + (size_t) t * V, l, sizeof (float) * V);
    }
  return out;
}

static void
test_model_golden (gconstpointer data)
{
  g_autofree char *path = golden_path (data);
  TnnGolden *g = tnn_golden_load (path);
  g_autoptr (GptdGpt) m = golden_model (g);
  const TnnRecord *tok = tnn_golden_get (g, "tokens");
  const int T = (int) tok->numel;
  const int V = gptd_gpt_get_config (m)->vocab_size;
  const float *fp32 = tnn_golden_get (g, "logits.fp32")->data;
  g_autoptr (GError) error = NULL;
  for (int f = GPTD_WEIGHT_FORMAT_FP32; f <= GPTD_WEIGHT_FORMAT_Q8; f++)
    {
      const char *name = gptd_weight_format_to_string (f);
      g_autofree char *key = g_strconcat ("logits.", name, NULL);
      const float *want = tnn_golden_get (g, key)->data;
      gptd_gpt_set_weight_format (m, f, &error);
      g_assert_no_error (error);
      g_assert_cmpint (gptd_gpt_get_weight_format (m), ==, f);
      for (int prefill = 0; prefill <= 1; prefill++)
        {
          g_autofree float *got = cached_logits (m, tok->data, T, prefill);
          int from = prefill ? T / 2 - 1 : 0;
          g_autofree char *what = g_strdup_printf ("%s %s logits%s",
                                                   (const char *) data, name,
                                                   prefill ? " (prefill)" : "");
          /* Against PyTorch with the same format: float32 against float64
           * (and q8's activation rounding, which can flip a value at a
           * half step). */
          tnn_assert_close (what, got + (size_t) from * V,
                            want + (size_t) from * V, (size_t) (T - from) * V,
                            f == GPTD_WEIGHT_FORMAT_Q8 ? 2e-3 : 2e-5);
          /* Against fp32: the stated tolerance of each format. */
          g_autofree char *what32 = g_strconcat (what, " against fp32", NULL);
          tnn_assert_close (what32, got + (size_t) from * V,
                            fp32 + (size_t) from * V, (size_t) (T - from) * V,
                            f == GPTD_WEIGHT_FORMAT_FP32 ? 2e-5
                            : f == GPTD_WEIGHT_FORMAT_BF16 ? 2e-2 : 5e-2);
        }
    }
  tnn_golden_free (g);
}

/* fp32 after a conversion and back is bit-identical to never converting. */
static void
test_model_fp32_unchanged (void)
{
  g_autofree char *path = golden_path ("tied");
  TnnGolden *g = tnn_golden_load (path);
  g_autoptr (GptdGpt) m = golden_model (g);
  const TnnRecord *tok = tnn_golden_get (g, "tokens");
  const int T = (int) tok->numel, V = gptd_gpt_get_config (m)->vocab_size;
  g_autofree float *before = cached_logits (m, tok->data, T, TRUE);
  g_autoptr (GError) error = NULL;
  gptd_gpt_set_weight_format (m, GPTD_WEIGHT_FORMAT_Q8, &error);
  g_assert_no_error (error);
  g_autofree float *q8 = cached_logits (m, tok->data, T, TRUE);
  g_assert_true (memcmp (before, q8, sizeof (float) * T * V) != 0);
  gptd_gpt_set_weight_format (m, GPTD_WEIGHT_FORMAT_FP32, &error);
  g_assert_no_error (error);
  g_autofree float *after = cached_logits (m, tok->data, T, TRUE);
  g_assert_cmpmem (before, sizeof (float) * T * V, after,
                   sizeof (float) * T * V);
  tnn_golden_free (g);
}

static void
test_model_q8_shape (void)
{
  GptdGptConfig cfg = { 0 };
  cfg.n_layer = 1;
  cfg.n_head = 2;
  cfg.n_embd = 48;
  cfg.context_length = 8;
  cfg.vocab_size = 10;
  cfg.layer_norm_epsilon = 1e-5f;
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGpt) m = gptd_gpt_new (&cfg, &error);
  g_assert_no_error (error);
  g_assert_false (gptd_gpt_set_weight_format (m, GPTD_WEIGHT_FORMAT_Q8, &error));
  g_assert_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_SHAPE);
  g_assert_nonnull (strstr (error->message, "multiple of 32"));
  g_clear_error (&error);
  g_assert_cmpint (gptd_gpt_get_weight_format (m), ==, GPTD_WEIGHT_FORMAT_FP32);
  /* bf16 has no such limit. */
  g_assert_true (gptd_gpt_set_weight_format (m, GPTD_WEIGHT_FORMAT_BF16, &error));
  g_assert_no_error (error);
  /* A weight that is not finite is refused. */
  const GptdNnTensor *t = gptd_gpt_lookup_tensor (m, "h.0.mlp.c_fc.weight");
  t->data[5] = INFINITY;
  g_assert_false (gptd_gpt_set_weight_format (m, GPTD_WEIGHT_FORMAT_BF16, &error));
  g_assert_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_VALUE);
  g_assert_nonnull (strstr (error->message, "h.0.mlp.c_fc.weight"));
  g_assert_cmpint (gptd_gpt_get_weight_format (m), ==, GPTD_WEIGHT_FORMAT_BF16);

  GptdWeightFormat f;
  g_clear_error (&error);
  g_assert_false (gptd_weight_format_from_string ("q4", &f, &error));
  g_assert_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_FORMAT);
  g_assert_true (gptd_weight_format_from_string ("q8", &f, NULL));
  g_assert_cmpint (f, ==, GPTD_WEIGHT_FORMAT_Q8);
}

/* ---- files -------------------------------------------------------------- */

typedef struct {
  char *dir;
} Tmp;

static void
tmp_setup (Tmp *t, gconstpointer data)
{
  (void) data;
  g_autoptr (GError) error = NULL;
  t->dir = g_dir_make_tmp ("gptd-quant-XXXXXX", &error);
  g_assert_no_error (error);
}

static void
rm_rf (const char *path)
{
  GDir *d = g_dir_open (path, 0, NULL);
  if (d != NULL)
    {
      const char *name;
      while ((name = g_dir_read_name (d)) != NULL)
        {
          g_autofree char *p = g_build_filename (path, name, NULL);
          rm_rf (p);
        }
      g_dir_close (d);
    }
  g_remove (path);
}

static void
tmp_teardown (Tmp *t, gconstpointer data)
{
  (void) data;
  rm_rf (t->dir);
  g_free (t->dir);
}

static void
test_file_round_trip (Tmp *tmp, gconstpointer data)
{
  (void) data;
  for (int v = 0; v < 2; v++)
    for (int f = GPTD_WEIGHT_FORMAT_BF16; f <= GPTD_WEIGHT_FORMAT_Q8; f++)
      {
        g_autofree char *path = golden_path (v ? "untied" : "tied");
        TnnGolden *g = tnn_golden_load (path);
        g_autoptr (GptdGpt) m = golden_model (g);
        const TnnRecord *tok = tnn_golden_get (g, "tokens");
        const int T = (int) tok->numel;
        const int V = gptd_gpt_get_config (m)->vocab_size;
        g_autoptr (GError) error = NULL;
        gptd_gpt_set_weight_format (m, f, &error);
        g_assert_no_error (error);
        g_autofree float *want = cached_logits (m, tok->data, T, TRUE);
        g_autofree char *dir = g_strdup_printf ("%s/m%d%d", tmp->dir, v, f);
        g_assert_true (gptd_gpt_quant_dir_save (m, dir, NULL, NULL, &error));
        g_assert_no_error (error);

        GptdWeightFormat stored;
        g_assert_true (gptd_gpt_dir_get_weight_format (dir, &stored, &error));
        g_assert_cmpint (stored, ==, f);
        g_autoptr (GptdGpt) back = gptd_gpt_dir_load_with_format (dir, -1, &error);
        g_assert_no_error (error);
        g_assert_cmpint (gptd_gpt_get_weight_format (back), ==, f);
        g_assert_cmpuint (gptd_gpt_get_weight_bytes (back), ==,
                          gptd_gpt_get_weight_bytes (m));
        g_autofree float *got = cached_logits (back, tok->data, T, TRUE);
        /* The stored values are the converted ones: identical logits. */
        g_assert_cmpmem (got, sizeof (float) * T * V, want,
                         sizeof (float) * T * V);
        /* Asking for another format than the stored one is an error. */
        int other = f == GPTD_WEIGHT_FORMAT_Q8 ? GPTD_WEIGHT_FORMAT_BF16
                                               : GPTD_WEIGHT_FORMAT_Q8;
        g_assert_null (gptd_gpt_dir_load_with_format (dir, other, &error));
        g_assert_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_FORMAT);
        tnn_golden_free (g);
      }
}

/* Rewrites @src (a saved q8 model.safetensors) into @dst, dropping tensor
 * @drop, adding @extra, changing @retype's dtype to F32 (same shape),
 * @reshape's second dimension by one, a scale to infinity (@inf_scale) and
 * the metadata @meta_key to @meta_value. */
typedef struct {
  const char *what;
  const char *drop, *extra, *retype, *reshape, *inf_scale;
  const char *meta_key, *meta_value;
  const char *expect; /* in the message */
} Corruption;

static void
rewrite (const char *src, const char *dst, const Corruption *c)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdSafetensors) st = gptd_safetensors_open (src, &error);
  g_assert_no_error (error);
  g_autoptr (GptdSafetensorsWriter) w = gptd_safetensors_writer_new ();
  g_autoptr (GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < gptd_safetensors_get_n_tensors (st); i++)
    {
      const GptdSafetensorsTensor *t = gptd_safetensors_get_tensor (st, i);
      if (c->drop && strcmp (t->name, c->drop) == 0)
        continue;
      void *copy = g_memdup2 (t->data, t->n_bytes + 64);
      g_ptr_array_add (keep, copy);
      size_t shape[4];
      memcpy (shape, t->shape, sizeof (size_t) * t->n_dims);
      GptdSafetensorsDtype dt = t->dtype;
      if (c->retype && strcmp (t->name, c->retype) == 0)
        {
          dt = GPTD_SAFETENSORS_DTYPE_F32;
          copy = g_malloc0 (t->n_elements * 4);
          g_ptr_array_add (keep, copy);
        }
      if (c->reshape && strcmp (t->name, c->reshape) == 0)
        {
          shape[1] -= 1;
        }
      if (c->inf_scale && strcmp (t->name, c->inf_scale) == 0)
        ((uint16_t *) copy)[3] = 0x7c00;
      gptd_safetensors_writer_add (w, t->name, dt, t->n_dims, shape, copy);
    }
  if (c->extra)
    {
      static const float z[4];
      size_t shape[1] = { 4 };
      gptd_safetensors_writer_add_f32 (w, c->extra, 1, shape, z);
    }
  GHashTable *meta = gptd_safetensors_get_metadata_table (st);
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init (&it, meta);
  while (g_hash_table_iter_next (&it, &k, &v))
    gptd_safetensors_writer_set_metadata (w, k, v);
  if (c->meta_key)
    gptd_safetensors_writer_set_metadata (w, c->meta_key, c->meta_value);
  g_assert_true (gptd_safetensors_writer_write (w, dst, &error));
  g_assert_no_error (error);
}

static void
test_file_corrupt (Tmp *tmp, gconstpointer data)
{
  (void) data;
  static const Corruption cases[] = {
    /* A matrix's scales are gone. */
    { "missing scales", .drop = "h.1.mlp.c_fc.weight.scale",
      .expect = "h.1.mlp.c_fc.weight.scale is missing" },
    /* A tensor the model does not have. */
    { "unexpected", .extra = "h.7.attn.c_attn.weight.q8",
      .expect = "h.7.attn.c_attn.weight.q8 is not part" },
    /* Scales stored as float32 instead of half. */
    { "scale dtype", .retype = "wte.weight.scale",
      .expect = "wte.weight.scale is F32, expected F16" },
    /* One block too few per row. */
    { "block count", .reshape = "h.0.attn.c_proj.weight.scale",
      .expect = "one scale per block of 32" },
    /* The int8 values have the wrong shape. */
    { "values shape", .reshape = "h.0.mlp.c_proj.weight.q8",
      .expect = "h.0.mlp.c_proj.weight.q8 has shape" },
    /* A scale that is infinite. */
    { "infinite scale", .inf_scale = "h.1.attn.c_attn.weight.scale",
      .expect = "not a finite" },
    /* An unknown format. */
    { "format", .meta_key = "gptd.weights", .meta_value = "q4",
      .expect = "unknown weight format \"q4\"" },
    /* Another block size. */
    { "block size", .meta_key = "gptd.block", .meta_value = "64",
      .expect = "gptd.block is \"64\"" },
  };
  g_autofree char *path = golden_path ("tied");
  TnnGolden *g = tnn_golden_load (path);
  g_autoptr (GptdGpt) m = golden_model (g);
  tnn_golden_free (g);
  g_autoptr (GError) error = NULL;
  gptd_gpt_set_weight_format (m, GPTD_WEIGHT_FORMAT_Q8, &error);
  g_assert_no_error (error);
  g_autofree char *good = g_build_filename (tmp->dir, "good", NULL);
  g_assert_true (gptd_gpt_quant_dir_save (m, good, NULL, NULL, &error));
  g_autofree char *good_st = g_build_filename (good, GPTD_GPT_DIR_WEIGHTS, NULL);
  g_autofree char *good_cfg = g_build_filename (good, GPTD_GPT_DIR_CONFIG, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      const Corruption *c = &cases[i];
      g_autofree char *dir = g_strdup_printf ("%s/bad%u", tmp->dir, i);
      g_mkdir (dir, 0755);
      g_autofree char *cfg = g_build_filename (dir, GPTD_GPT_DIR_CONFIG, NULL);
      g_autofree char *json = NULL;
      g_assert_true (g_file_get_contents (good_cfg, &json, NULL, NULL));
      g_assert_true (g_file_set_contents (cfg, json, -1, NULL));
      g_autofree char *st = g_build_filename (dir, GPTD_GPT_DIR_WEIGHTS, NULL);
      rewrite (good_st, st, c);
      GptdGpt *bad = gptd_gpt_dir_load_with_format (dir, -1, &error);
      if (bad != NULL || error == NULL ||
          strstr (error->message, c->expect) == NULL)
        {
          g_test_fail_printf ("%s: expected an error with \"%s\", got %s",
                              c->what, c->expect,
                              error ? error->message : "a model");
          gptd_gpt_free (bad);
        }
      g_test_message ("%s: %s", c->what, error ? error->message : "");
      g_clear_error (&error);
    }
  /* The untouched copy loads. */
  g_autoptr (GptdGpt) ok = gptd_gpt_dir_load_with_format (good, -1, &error);
  g_assert_no_error (error);
}

/* ---- generation --------------------------------------------------------- */

static void
test_generate (void)
{
  g_autofree char *path = golden_path ("tied");
  TnnGolden *g = tnn_golden_load (path);
  const TnnRecord *tok = tnn_golden_get (g, "tokens");
  g_autoptr (GError) error = NULL;
  GptdGenerateOptions o;
  gptd_generate_options_init (&o);
  o.max_new_tokens = 40;
  gint32 *ids[3];
  for (int f = GPTD_WEIGHT_FORMAT_FP32; f <= GPTD_WEIGHT_FORMAT_Q8; f++)
    {
      GptdGpt *m = golden_model (g);
      gptd_gpt_set_weight_format (m, f, &error);
      g_assert_no_error (error);
      g_autoptr (GptdGenerator) gen = gptd_generator_new (m, 0, &error);
      g_assert_no_error (error);
      GptdGenerateResult *r = gptd_generator_generate_ids (gen, tok->data, 4,
                                                           &o, NULL, &error);
      g_assert_no_error (error);
      g_assert_cmpint (r->n_ids, ==, 40);
      ids[f] = g_memdup2 (r->ids, sizeof (gint32) * 40);
      gptd_generate_result_free (r);
      /* Without the KV cache the converted weights are not used: refused. */
      if (f != GPTD_WEIGHT_FORMAT_FP32)
        {
          o.use_kv_cache = FALSE;
          g_assert_null (gptd_generator_generate_ids (gen, tok->data, 4, &o,
                                                      NULL, &error));
          g_assert_error (error, GPTD_GENERATE_ERROR,
                          GPTD_GENERATE_ERROR_OPTIONS);
          g_clear_error (&error);
          o.use_kv_cache = TRUE;
        }
    }
  /* Greedy tokens of bf16 agree with fp32 on most steps at least at the
   * start (a random tiny model's logits are close together). */
  g_assert_cmpint (ids[1][0], ==, ids[0][0]);
  for (int f = 0; f < 3; f++)
    g_free (ids[f]);
  tnn_golden_free (g);
}

/* With a tokenizer: a quantized directory generates text. */
static void
test_generate_text (Tmp *tmp, gconstpointer data)
{
  (void) data;
  g_autoptr (GError) error = NULL;
  GptdGenerateOptions o;
  gptd_generate_options_init (&o);
  const char *data_dir = g_getenv ("GPTD_DATA_DIR");
  if (data_dir == NULL)
    {
      g_test_skip ("GPTD_DATA_DIR is not set: text generation not tested");
      return;
    }
  g_autofree char *vocab = g_build_filename (data_dir, "gpt2", "encoder.json",
                                             NULL);
  g_autofree char *merges = g_build_filename (data_dir, "gpt2", "vocab.bpe",
                                              NULL);
  GptdGptConfig cfg = { 0 };
  cfg.n_layer = 2;
  cfg.n_head = 2;
  cfg.n_embd = 64;
  cfg.context_length = 64;
  cfg.vocab_size = 50257;
  cfg.tie_embeddings = TRUE;
  cfg.qkv_bias = TRUE;
  cfg.layer_norm_epsilon = 1e-5f;
  g_autoptr (GptdGpt) m = gptd_gpt_new (&cfg, &error);
  g_assert_no_error (error);
  gptd_gpt_init_weights (m, 5);
  gptd_gpt_set_weight_format (m, GPTD_WEIGHT_FORMAT_Q8, &error);
  g_assert_no_error (error);
  g_autofree char *dir = g_build_filename (tmp->dir, "text", NULL);
  g_assert_true (gptd_gpt_quant_dir_save (m, dir, vocab, merges, &error));
  g_assert_no_error (error);
  GptdGeneratorLoadOptions lo;
  gptd_generator_load_options_init (&lo);
  g_autoptr (GptdGenerator) gen = gptd_generator_load_full (dir, &lo, &error);
  g_assert_no_error (error);
  g_assert_cmpint (gptd_gpt_get_weight_format (gptd_generator_get_model (gen)),
                   ==, GPTD_WEIGHT_FORMAT_Q8);
  o.max_new_tokens = 10;
  o.temperature = 1.0;
  GptdGenerateResult *r = gptd_generator_generate (gen, "Every effort moves",
                                                   &o, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (r->n_ids, ==, 10);
  g_assert_nonnull (r->text);
  g_assert_cmpuint (r->text_len, >, 0);
  gptd_generate_result_free (r);
  /* Asking a q8 directory for bf16 is refused. */
  lo.weights = GPTD_WEIGHT_FORMAT_BF16;
  g_assert_null (gptd_generator_load_full (dir, &lo, &error));
  g_assert_error (error, GPTD_QUANT_ERROR, GPTD_QUANT_ERROR_FORMAT);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_message ("quantized kernels chosen here: %s",
                  gptd_quant_get_kernels_name ());
  g_test_add_func ("/quant/convert/bf16", test_bf16_rounding);
  g_test_add_func ("/quant/convert/f16", test_f16);
  g_test_add_func ("/quant/convert/q8", test_q8_round_trip);
  for (guint i = 0; i < G_N_ELEMENTS (kernel_names); i++)
    {
      g_autofree char *a = g_strdup_printf ("/quant/kernels/%s/bf16",
                                            kernel_names[i]);
      g_autofree char *b = g_strdup_printf ("/quant/kernels/%s/q8",
                                            kernel_names[i]);
      g_test_add_data_func (a, kernel_names[i], test_kernels_bf16);
      g_test_add_data_func (b, kernel_names[i], test_kernels_q8);
    }
  g_test_add_data_func ("/quant/model/golden-tied", "tied", test_model_golden);
  g_test_add_data_func ("/quant/model/golden-untied", "untied",
                        test_model_golden);
  g_test_add_func ("/quant/model/fp32-unchanged", test_model_fp32_unchanged);
  g_test_add_func ("/quant/model/bad", test_model_q8_shape);
  g_test_add ("/quant/file/round-trip", Tmp, NULL, tmp_setup,
              test_file_round_trip, tmp_teardown);
  g_test_add ("/quant/file/corrupt", Tmp, NULL, tmp_setup, test_file_corrupt,
              tmp_teardown);
  g_test_add_func ("/quant/generate/ids", test_generate);
  g_test_add ("/quant/generate/text", Tmp, NULL, tmp_setup, test_generate_text,
              tmp_teardown);
  return g_test_run ();
}

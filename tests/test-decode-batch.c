/* test-decode-batch.c: tests of batched decoding (gptd_gpt_forward_batch(),
 * lib/nn/gpt2-kv-batch.c): the float32 matrix-vector kernels give bitwise the
 * same sums for any number of rows and on every kernel this CPU runs (scalar,
 * AVX2, AVX-512); a decoding step over 1 to 8 sequences of different lengths
 * gives each row bitwise the logits of the one-sequence path, for float32,
 * bf16 and q8 weights, odd sizes and 1 to 3 threads, with sequences joining
 * and leaving between steps; chunked prefill against the whole prompt at once;
 * bad input.
 */
#include "config.h"

#include "nn/matvec-private.h"

#include <gptd/nn.h>
#include <gptd/quant.h>

#include <math.h>
#include <string.h>

#include "test-nn-util.h"

static void
fill (float *x, size_t n, guint32 seed)
{
  for (size_t i = 0; i < n; i++)
    x[i] = (float) (tnn_hash32 (seed, (guint32) i) / 4294967296.0 * 2.0 - 1.0);
}

/* ---- the kernels --------------------------------------------------------------- */

static void
test_kernels (void)
{
  static const char *const names[] = { "scalar", "avx2", "avx512" };
  const GptdMatvecKernels *ref = gptd__matvec_kernels_lookup ("scalar");
  g_assert_nonnull (ref);
  /* Odd sizes: whole vectors, tails and chunks that are not whole. */
  static const size_t Ks[] = { 1, 7, 8, 16, 37, 100 };
  static const size_t Ns[] = { 1, 7, 13, 16, 40, 99 };
  const size_t ldx = 111, ldw = 123, ldy = 131;
  g_autofree float *X = g_new (float, 8 * ldx);
  g_autofree float *W = g_new (float, 123 * ldw);
  g_autofree float *want = g_new0 (float, 8 * ldy);
  g_autofree float *one = g_new0 (float, ldy);
  g_autofree float *got = g_new0 (float, 8 * ldy);
  fill (X, 8 * ldx, 1);
  fill (W, 123 * ldw, 2);
  guint tested = 0;
  for (gsize v = 0; v < G_N_ELEMENTS (names); v++)
    {
      const GptdMatvecKernels *k = gptd__matvec_kernels_lookup (names[v]);
      if (k == NULL)
        {
          g_test_message ("kernels %s: not on this CPU", names[v]);
          continue;
        }
      tested++;
      for (gsize a = 0; a < G_N_ELEMENTS (Ks); a++)
        for (gsize b = 0; b < G_N_ELEMENTS (Ns); b++)
          for (int B = 1; B <= 8; B++)
            {
              const size_t K = Ks[a], N = Ns[b];
              /* matvec_kn: against the scalar kernel, every row against the
               * row alone. */
              ref->matvec_kn (X, ldx, B, W, ldw, K, N, want, ldy);
              k->matvec_kn (X, ldx, B, W, ldw, K, N, got, ldy);
              for (int r = 0; r < B; r++)
                {
                  k->matvec_kn (X + r * ldx, ldx, 1, W, ldw, K, N, one, ldy);
                  if (memcmp (got + r * ldy, want + r * ldy, N * sizeof (float)) != 0 ||
                      memcmp (one, want + r * ldy, N * sizeof (float)) != 0)
                    g_error ("matvec_kn %s K %zu N %zu B %d row %d: not bitwise the "
                             "scalar sums (%.9g / %.9g against %.9g)", names[v], K, N,
                             B, r, got[r * ldy], one[0], want[r * ldy]);
                }
              /* dot_rows: N rows of W (K long) against B rows of X. */
              ref->dot_rows (W, ldw, N, K, X, ldx, B, want, ldy);
              k->dot_rows (W, ldw, N, K, X, ldx, B, got, ldy);
              for (int r = 0; r < B; r++)
                {
                  k->dot_rows (W, ldw, N, K, X + r * ldx, ldx, 1, one, ldy);
                  if (memcmp (got + r * ldy, want + r * ldy, N * sizeof (float)) != 0 ||
                      memcmp (one, want + r * ldy, N * sizeof (float)) != 0)
                    g_error ("dot_rows %s K %zu n %zu B %d row %d: not bitwise the "
                             "scalar sums", names[v], K, N, B, r);
                }
            }
      /* And the sums are right (double precision reference). */
      const size_t K = 100, N = 40;
      k->matvec_kn (X, ldx, 3, W, ldw, K, N, got, ldy);
      for (int r = 0; r < 3; r++)
        for (size_t j = 0; j < N; j++)
          {
            double s = 0;
            for (size_t i = 0; i < K; i++)
              s += (double) X[r * ldx + i] * W[i * ldw + j];
            g_assert_cmpfloat_with_epsilon (got[r * ldy + j], s, 1e-4);
          }
      k->dot_rows (W, ldw, N, K, X, ldx, 3, got, ldy);
      for (int r = 0; r < 3; r++)
        for (size_t j = 0; j < N; j++)
          {
            double s = 0;
            for (size_t i = 0; i < K; i++)
              s += (double) W[j * ldw + i] * X[r * ldx + i];
            g_assert_cmpfloat_with_epsilon (got[r * ldy + j], s, 1e-4);
          }
    }
  g_assert_cmpuint (tested, >=, 1);
}

/* ---- a model ------------------------------------------------------------------ */

typedef struct {
  GptdWeightFormat format;
  int n_embd, n_head, vocab, context;
  gboolean tie, qkv_bias, head_bias;
} Shape;

static GptdGpt *
make_model (const Shape *sh)
{
  GptdGptConfig cfg = { 0 };
  cfg.n_layer = 2;
  cfg.n_head = sh->n_head;
  cfg.n_embd = sh->n_embd;
  cfg.context_length = sh->context;
  cfg.vocab_size = sh->vocab;
  cfg.qkv_bias = sh->qkv_bias;
  cfg.tie_embeddings = sh->tie;
  cfg.head_bias = sh->head_bias;
  cfg.layer_norm_epsilon = 1e-5f;
  g_autoptr (GError) error = NULL;
  GptdGpt *m = gptd_gpt_new (&cfg, &error);
  g_assert_no_error (error);
  tnn_init_weights (m, 7);
  g_assert_true (gptd_gpt_set_weight_format (m, sh->format, &error));
  g_assert_no_error (error);
  return m;
}

/* The logits per row: n_out, or the vocabulary when n_out is 0. */
static int
n_out_of (const GptdGpt *m)
{
  const GptdGptConfig *cfg = gptd_gpt_get_config ((GptdGpt *) m);
  g_assert_cmpint (cfg->vocab_size, >, 0);
  return cfg->n_out > 0 ? cfg->n_out : cfg->vocab_size;
}

#define MAX_B 8
#define STEPS 5

/* The prompt of sequence @i: 1 to 9 tokens. */
static int
prompt_of (int i, int vocab, gint32 *out)
{
  int len = (i * 5) % 9 + 1;
  for (int k = 0; k < len; k++)
    out[k] = (gint32) (tnn_hash32 (100 + i, k) % (guint32) vocab);
  return len;
}

/* Greedy decoding of sequence @i alone, one token at a time through
 * gptd_gpt_forward_cached(): the logits of each step in @logits (STEPS, V) and
 * the tokens fed in @fed (STEPS). */
static void
decode_alone (GptdGpt *m, int i, float *logits, gint32 *fed)
{
  const int V = n_out_of (m);
  g_autoptr (GError) error = NULL;
  g_autoptr (GptdGptKvCache) c = gptd_gpt_kv_cache_new (m, 0, &error);
  g_assert_no_error (error);
  gint32 prompt[16];
  int len = prompt_of (i, gptd_gpt_get_config (m)->vocab_size, prompt);
  const float *l = gptd_gpt_forward_cached (m, c, prompt, len, &error);
  g_assert_no_error (error);
  for (int s = 0; s < STEPS; s++)
    {
      int best = 0;
      for (int v = 1; v < V; v++)
        if (l[v] > l[best])
          best = v;
      fed[s] = best;
      l = gptd_gpt_forward_cached (m, c, &fed[s], 1, &error);
      g_assert_no_error (error);
      memcpy (logits + (size_t) s * V, l, sizeof (float) * V);
    }
}

/* Sequences 0..B-1 decoded together: sequence i joins at step i % 3 (its
 * prompt prefilled alone), odd sequences leave after step 3; each step's
 * row must be bitwise the sequence's logits alone. */
static void
check_batch (const Shape *sh, int threads)
{
  gptd_nn_set_num_threads (threads);
  g_autoptr (GptdGpt) m = make_model (sh);
  const int V = n_out_of (m);
  g_autofree float *want = g_new (float, (size_t) MAX_B * STEPS * V);
  gint32 fed[MAX_B][STEPS];
  for (int i = 0; i < MAX_B; i++)
    decode_alone (m, i, want + (size_t) i * STEPS * V, fed[i]);

  for (int B = 1; B <= MAX_B; B++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (GptdGptDecodeBatch) batch = gptd_gpt_decode_batch_new (m, B, &error);
      g_assert_no_error (error);
      GptdGptKvCache *caches[MAX_B] = { 0 };
      int done[MAX_B] = { 0 };
      for (int i = 0; i < B; i++)
        {
          caches[i] = gptd_gpt_kv_cache_new (m, 0, &error);
          g_assert_no_error (error);
          gint32 prompt[16];
          int len = prompt_of (i, sh->vocab, prompt);
          g_assert_nonnull (gptd_gpt_forward_cached (m, caches[i], prompt, len, &error));
        }
      for (int step = 0; step < STEPS + 3; step++)
        {
          GptdGptKvCache *active[MAX_B];
          gint32 tokens[MAX_B];
          int who[MAX_B], n = 0;
          for (int i = 0; i < B; i++)
            {
              gboolean joined = step >= i % 3;
              gboolean left = (i & 1) && done[i] >= 3;
              if (!joined || left || done[i] >= STEPS)
                continue;
              who[n] = i;
              active[n] = caches[i];
              tokens[n] = fed[i][done[i]];
              n++;
            }
          if (n == 0)
            continue;
          const float *l = gptd_gpt_forward_batch (batch, active, tokens, n, &error);
          g_assert_no_error (error);
          for (int r = 0; r < n; r++)
            {
              int i = who[r];
              const float *w = want + ((size_t) i * STEPS + done[i]) * V;
              if (memcmp (l + (size_t) r * V, w, sizeof (float) * V) != 0)
                {
                  int v = 0;
                  while (l[(size_t) r * V + v] == w[v])
                    v++;
                  g_error ("%s, %d thread(s), batch %d (%d rows), sequence %d step %d: "
                           "logit %d is %.9g, alone %.9g",
                           gptd_weight_format_to_string (sh->format), threads, B, n, i,
                           done[i], v, l[(size_t) r * V + v], w[v]);
                }
              done[i]++;
            }
        }
      for (int i = 0; i < B; i++)
        gptd_gpt_kv_cache_free (caches[i]);
    }
}

static void
test_batch (gconstpointer data)
{
  const Shape *sh = data;
  for (int threads = 1; threads <= 3; threads++)
    check_batch (sh, threads);
  gptd_nn_set_num_threads (2);
}

/* ---- chunked prefill ------------------------------------------------------------ */

/* A prompt fed in chunks of at most C tokens against the whole prompt at once:
 * the last logits within a tolerance (the prefill's matrix products may sum in
 * another order for another number of rows), the greedy continuation equal. */
static void
test_chunked_prefill (gconstpointer data)
{
  const Shape *sh = data;
  g_autoptr (GptdGpt) m = make_model (sh);
  const int V = n_out_of (m);
  g_autoptr (GError) error = NULL;
  gint32 prompt[20];
  for (int k = 0; k < 20; k++)
    prompt[k] = (gint32) (tnn_hash32 (55, k) % (guint32) sh->vocab);
  g_autoptr (GptdGptKvCache) whole = gptd_gpt_kv_cache_new (m, 0, &error);
  g_autofree float *ref = g_new (float, V);
  memcpy (ref, gptd_gpt_forward_cached (m, whole, prompt, 20, &error), sizeof (float) * V);
  g_assert_no_error (error);
  double worst = 0;
  for (int chunk = 1; chunk <= 8; chunk++)
    {
      g_autoptr (GptdGptKvCache) c = gptd_gpt_kv_cache_new (m, 0, &error);
      const float *l = NULL;
      for (int p = 0; p < 20; p += chunk)
        l = gptd_gpt_forward_cached (m, c, prompt + p, MIN (chunk, 20 - p), &error);
      g_assert_no_error (error);
      for (int v = 0; v < V; v++)
        {
          worst = MAX (worst, fabs (l[v] - ref[v]));
          g_assert_cmpfloat_with_epsilon (l[v], ref[v], 1e-4 * (1 + fabs (ref[v])));
        }
      /* The greedy continuation is the same token for token. */
      gptd_gpt_kv_cache_reset (whole);
      const float *a = gptd_gpt_forward_cached (m, whole, prompt, 20, &error);
      for (int s = 0; s < 3; s++)
        {
          gint32 ta = 0, tb = 0;
          for (int v = 1; v < V; v++)
            {
              if (a[v] > a[ta])
                ta = v;
              if (l[v] > l[tb])
                tb = v;
            }
          g_assert_cmpint (ta, ==, tb);
          a = gptd_gpt_forward_cached (m, whole, &ta, 1, &error);
          l = gptd_gpt_forward_cached (m, c, &tb, 1, &error);
          g_assert_no_error (error);
        }
    }
  g_test_message ("%s: chunked prefill differs from the whole prompt by at most %.3g",
                  gptd_weight_format_to_string (sh->format), worst);
}

/* ---- bad input ---------------------------------------------------------------- */

static void
test_bad (void)
{
  const Shape sh = { GPTD_WEIGHT_FORMAT_FP32, 32, 4, 50, 8, TRUE, TRUE, FALSE };
  g_autoptr (GptdGpt) m = make_model (&sh);
  g_autoptr (GptdGpt) other = make_model (&sh);
  g_autoptr (GError) error = NULL;
  g_assert_null (gptd_gpt_decode_batch_new (m, 0, &error));
  g_assert_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_CONFIG);
  g_clear_error (&error);
  g_autoptr (GptdGptDecodeBatch) b = gptd_gpt_decode_batch_new (m, 2, &error);
  g_autoptr (GptdGptKvCache) c1 = gptd_gpt_kv_cache_new (m, 2, &error);
  g_autoptr (GptdGptKvCache) c2 = gptd_gpt_kv_cache_new (m, 0, &error);
  g_autoptr (GptdGptKvCache) co = gptd_gpt_kv_cache_new (other, 0, &error);
  g_assert_no_error (error);
  gint32 t[3] = { 1, 2, 3 };
  const struct {
    GptdGptKvCache *caches[3];
    gint32 tokens[3];
    int n;
    int code;
    const char *message;
  } cases[] = {
    { { c1, c2, c2 }, { 1, 2, 3 }, 3, GPTD_NN_ERROR_CONFIG, "at most 2" },
    { { c1 }, { 1 }, 0, GPTD_NN_ERROR_CONFIG, "0 sequences" },
    { { c1, c1 }, { 1, 2 }, 2, GPTD_NN_ERROR_STATE, "share one KV cache" },
    { { c1, co }, { 1, 2 }, 2, GPTD_NN_ERROR_STATE, "another model" },
    { { c1, c2 }, { 1, 50 }, 2, GPTD_NN_ERROR_INPUT, "token id 50 of sequence 1" },
    { { c1, c2 }, { -1, 2 }, 2, GPTD_NN_ERROR_INPUT, "token id -1 of sequence 0" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_assert_null (gptd_gpt_forward_batch (b, cases[i].caches, cases[i].tokens,
                                             cases[i].n, &error));
      g_assert_error (error, GPTD_NN_ERROR, cases[i].code);
      g_assert_nonnull (strstr (error->message, cases[i].message));
      g_clear_error (&error);
      /* Nothing was appended. */
      g_assert_cmpint (gptd_gpt_kv_cache_get_length (c1), ==, 0);
      g_assert_cmpint (gptd_gpt_kv_cache_get_length (c2), ==, 0);
    }
  /* A full cache. */
  GptdGptKvCache *both[2] = { c1, c2 };
  for (int s = 0; s < 2; s++)
    g_assert_nonnull (gptd_gpt_forward_batch (b, both, t, 2, &error));
  g_assert_null (gptd_gpt_forward_batch (b, both, t, 2, &error));
  g_assert_error (error, GPTD_NN_ERROR, GPTD_NN_ERROR_STATE);
  g_assert_nonnull (strstr (error->message, "sequence 0 of the decoding step: its KV cache "
                                            "holds 2 of 2 positions"));
  g_assert_cmpint (gptd_gpt_kv_cache_get_length (c2), ==, 2);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  gptd_nn_set_num_threads (2);
  /* Odd widths (44: neither 8 nor 16 divides it; heads of 11), an odd
   * vocabulary; q8 needs the width a multiple of 32. */
  static const Shape fp32 = { GPTD_WEIGHT_FORMAT_FP32, 44, 4, 101, 24, FALSE, TRUE, TRUE };
  static const Shape fp32_tied = { GPTD_WEIGHT_FORMAT_FP32, 36, 3, 77, 24, TRUE, FALSE, FALSE };
  static const Shape bf16 = { GPTD_WEIGHT_FORMAT_BF16, 44, 4, 101, 24, FALSE, TRUE, TRUE };
  static const Shape q8 = { GPTD_WEIGHT_FORMAT_Q8, 64, 4, 97, 24, TRUE, TRUE, FALSE };
  g_test_add_func ("/nn/decode-batch/kernels", test_kernels);
  g_test_add_data_func ("/nn/decode-batch/fp32", &fp32, test_batch);
  g_test_add_data_func ("/nn/decode-batch/fp32-tied", &fp32_tied, test_batch);
  g_test_add_data_func ("/nn/decode-batch/bf16", &bf16, test_batch);
  g_test_add_data_func ("/nn/decode-batch/q8", &q8, test_batch);
  g_test_add_data_func ("/nn/decode-batch/chunked-prefill/fp32", &fp32,
                        test_chunked_prefill);
  g_test_add_data_func ("/nn/decode-batch/chunked-prefill/q8", &q8, test_chunked_prefill);
  g_test_add_func ("/nn/decode-batch/bad", test_bad);
  return g_test_run ();
}

/* test-nn-util.h: helpers shared by the lib/nn tests: the deterministic
 * weights of tests/golden/nn/make_goldens.py, the golden file reader and
 * tensor comparison.
 */
#pragma once

#include <gptd/nn.h>

#include <glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static inline guint32
tnn_hash32 (guint32 key, guint32 i)
{
  guint32 h = i * 0x9E3779B1u ^ key;
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}

static inline guint32
tnn_fnv1a (const char *s)
{
  guint32 h = 0x811C9DC5u;
  for (; *s; s++)
    {
      h ^= (guint8) *s;
      h *= 0x01000193u;
    }
  return h;
}

/* The weights of make_goldens.py's init_tensor(). */
static inline void
tnn_init_weights (GptdGpt *model, guint32 seed)
{
  for (guint k = 0; k < gptd_gpt_n_tensors (model); k++)
    {
      const GptdNnTensor *t = gptd_gpt_get_tensor (model, k);
      double center = 0.0, scale = 0.3;
      if (g_str_has_suffix (t->name, "ln_1.weight") ||
          g_str_has_suffix (t->name, "ln_2.weight") ||
          strcmp (t->name, "ln_f.weight") == 0)
        center = 1.0, scale = 0.1;
      else if (t->ndim == 1)
        scale = 0.1;
      else if (strcmp (t->name, "wte.weight") == 0 ||
               strcmp (t->name, "wpe.weight") == 0)
        scale = 0.5;
      guint32 key = tnn_fnv1a (t->name) ^ seed;
      for (size_t i = 0; i < t->numel; i++)
        {
          double u = tnn_hash32 (key, (guint32) i) / 4294967296.0;
          t->data[i] = (float) (center + scale * (2.0 * u - 1.0));
        }
    }
}

typedef struct {
  char *name;
  int dtype; /* 0 float32, 1 int32 */
  int ndim;
  size_t dims[8];
  size_t numel;
  void *data;
} TnnRecord;

typedef struct {
  GPtrArray *records;
} TnnGolden;

static inline void
tnn_golden_free (TnnGolden *g)
{
  if (g == NULL)
    return;
  for (guint i = 0; i < g->records->len; i++)
    {
      TnnRecord *r = g_ptr_array_index (g->records, i);
      g_free (r->name);
      g_free (r->data);
      g_free (r);
    }
  g_ptr_array_unref (g->records);
  g_free (g);
}

static inline guint32
tnn_u32 (const guint8 *p)
{
  return (guint32) p[0] | (guint32) p[1] << 8 | (guint32) p[2] << 16 |
         (guint32) p[3] << 24;
}

/* Reads a GPTDGLD1 file (see make_goldens.py); fails the test on a bad
 * file. */
static inline TnnGolden *
tnn_golden_load (const char *path)
{
  gchar *buf = NULL;
  gsize len = 0;
  GError *error = NULL;
  g_file_get_contents (path, &buf, &len, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (len, >=, 12);
  g_assert_cmpmem (buf, 8, "GPTDGLD1", 8);
  TnnGolden *g = g_new0 (TnnGolden, 1);
  g->records = g_ptr_array_new ();
  const guint8 *p = (const guint8 *) buf + 8, *end = (const guint8 *) buf + len;
  guint32 count = tnn_u32 (p);
  p += 4;
  for (guint32 k = 0; k < count; k++)
    {
      TnnRecord *r = g_new0 (TnnRecord, 1);
      g_assert_cmpint (end - p, >=, 4);
      guint32 nl = tnn_u32 (p);
      p += 4;
      g_assert_cmpint (end - p, >=, (gint64) nl + 8);
      r->name = g_strndup ((const char *) p, nl);
      p += nl;
      r->dtype = (int) tnn_u32 (p);
      r->ndim = (int) tnn_u32 (p + 4);
      p += 8;
      g_assert_cmpint (r->ndim, <=, 8);
      r->numel = 1;
      for (int d = 0; d < r->ndim; d++)
        {
          g_assert_cmpint (end - p, >=, 4);
          r->dims[d] = tnn_u32 (p);
          r->numel *= r->dims[d];
          p += 4;
        }
      g_assert_cmpint (end - p, >=, (gint64) r->numel * 4);
      r->data = g_memdup2 (p, r->numel * 4);
      p += r->numel * 4;
      g_ptr_array_add (g->records, r);
    }
  g_free (buf);
  return g;
}

static inline const TnnRecord *
tnn_golden_get (const TnnGolden *g, const char *name)
{
  for (guint i = 0; i < g->records->len; i++)
    {
      const TnnRecord *r = g_ptr_array_index (g->records, i);
      if (strcmp (r->name, name) == 0)
        return r;
    }
  g_error ("golden record %s missing", name);
  return NULL;
}

/* Checks max|got - want| <= rel * max|want| (plus a tiny absolute floor),
 * printing the first values and the largest difference when it fails. */
static inline void
tnn_assert_close (const char *what, const float *got, const float *want,
                  size_t n, double rel)
{
  double maxref = 0.0, maxdiff = 0.0;
  size_t at = 0;
  gboolean finite = TRUE;
  for (size_t i = 0; i < n; i++)
    {
      maxref = MAX (maxref, fabs ((double) want[i]));
      double d = fabs ((double) got[i] - (double) want[i]);
      if (!isfinite (got[i]))
        finite = FALSE;
      if (d > maxdiff)
        {
          maxdiff = d;
          at = i;
        }
    }
  double tol = rel * maxref + 1e-12;
  if (!finite || maxdiff > tol)
    {
      fprintf (stderr, "# %s: max diff %.3g at %zu (got %.8g want %.8g), "
               "max |ref| %.3g, tolerance %.3g\n#   got:",
               what, maxdiff, at, (double) got[at], (double) want[at], maxref,
               tol);
      for (size_t i = 0; i < MIN (n, (size_t) 5); i++)
        fprintf (stderr, " %.7g", (double) got[i]);
      fprintf (stderr, "\n#  want:");
      for (size_t i = 0; i < MIN (n, (size_t) 5); i++)
        fprintf (stderr, " %.7g", (double) want[i]);
      fprintf (stderr, "\n");
      g_test_fail_printf ("%s differs from the reference", what);
    }
}

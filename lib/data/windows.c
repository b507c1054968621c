/* windows.c: the sliding-window data set behind the token-windows stage: the token
 * store (memory, or a memory-mapped file past a threshold), the position splits,
 * the seeded counter-based shuffle and batch filling. See gptd/windows.h. */
#include <gptd/windows.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include <gptd/stage.h>

static const char *const split_names[GPTD__WINDOWS_MAX_SPLITS] = {
  "train", "validation", "test"
};

const char *
gptd__windows_split_name (guint index)
{
  g_return_val_if_fail (index < GPTD__WINDOWS_MAX_SPLITS, NULL);
  return split_names[index];
}

int
gptd__windows_split_lookup (const char *name)
{
  if (name == NULL)
    return -1;
  for (int i = 0; i < GPTD__WINDOWS_MAX_SPLITS; i++)
    if (g_str_equal (name, split_names[i]))
      return i;
  if (g_str_equal (name, "val") || g_str_equal (name, "valid"))
    return 1;
  return -1;
}

/* ---- Pure functions --------------------------------------------------------- */

guint64
gptd__windows_count (guint64 n_tokens, guint64 context_length, guint64 stride)
{
  g_return_val_if_fail (stride > 0, 0);
  if (n_tokens <= context_length)
    return 0;
  return (n_tokens - context_length + stride - 1) / stride;
}

guint64
gptd__windows_n_batches (guint64 n_windows, guint64 batch_size, gboolean drop_last)
{
  g_return_val_if_fail (batch_size > 0, 0);
  return drop_last ? n_windows / batch_size : (n_windows + batch_size - 1) / batch_size;
}

void
gptd__windows_split_bounds (guint64 n_tokens, const double *fractions,
                            guint n_fractions, guint64 *bounds)
{
  double sum = 0.0;

  bounds[0] = 0;
  for (guint k = 0; k < n_fractions; k++)
    {
      sum += fractions[k];
      /* The small addend absorbs rounding in the sum (0.7 + 0.2 < 0.9). */
      double b = (double) n_tokens * sum + 1e-6;
      guint64 bound = b >= (double) n_tokens ? n_tokens : (guint64) b;
      if (k + 1 == n_fractions && sum > 1.0 - 1e-9)
        bound = n_tokens;
      bounds[k + 1] = MAX (bound, bounds[k]);
    }
}

/* SplitMix64's finaliser. */
static inline guint64
mix64 (guint64 z)
{
  z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

#define GOLDEN_GAMMA G_GUINT64_CONSTANT (0x9e3779b97f4a7c15)

guint64
gptd__windows_shuffle_key (guint64 seed, guint64 request_seed, guint32 epoch,
                           guint split)
{
  guint64 h = mix64 (seed + GOLDEN_GAMMA);
  h = mix64 (h ^ (request_seed + 2 * GOLDEN_GAMMA));
  h = mix64 (h ^ ((guint64) epoch + 3 * GOLDEN_GAMMA));
  h = mix64 (h ^ ((guint64) split + 4 * GOLDEN_GAMMA));
  return h;
}

guint64
gptd__windows_random (guint64 key, guint64 counter)
{
  return mix64 (key + (counter + 1) * GOLDEN_GAMMA);
}

void
gptd__windows_permutation (guint64 *perm, guint64 n, gboolean shuffle, guint64 key)
{
  for (guint64 i = 0; i < n; i++)
    perm[i] = i;
  if (!shuffle)
    return;
  for (guint64 i = n; i-- > 1;)
    {
      unsigned __int128 r = gptd__windows_random (key, i);
      guint64 j = (guint64) ((r * (i + 1)) >> 64);
      guint64 t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
}

/* ---- The token store ------------------------------------------------------------ */

struct _GptdWindowsStore {
  guint64 mmap_threshold;
  char *spill_prefix;
  char *spill_path;     /* spill_prefix + ".u16" or ".u32", once spilled */
  GArray *ram;          /* guint32 ids while in memory */
  int fd;               /* the spill file, -1 before spilling */
  guint width;          /* 2 or 4 once spilled */
  guint64 length;
  guint32 vocab_size;
  guint8 *stage;        /* conversion buffer for file writes */
  gsize stage_len;
  void *map;
  gsize map_len;
  gboolean finished;
};

#define STAGE_TOKENS 65536

GptdWindowsStore *
gptd__windows_store_new (guint64 mmap_threshold, const char *spill_prefix)
{
  g_return_val_if_fail (mmap_threshold == 0 || spill_prefix != NULL, NULL);
  GptdWindowsStore *store = g_new0 (GptdWindowsStore, 1);
  store->mmap_threshold = mmap_threshold;
  store->spill_prefix = g_strdup (spill_prefix);
  store->ram = g_array_new (FALSE, FALSE, sizeof (guint32));
  store->fd = -1;
  return store;
}

void
gptd__windows_store_free (GptdWindowsStore *store)
{
  if (store == NULL)
    return;
  if (store->map != NULL && store->map != MAP_FAILED)
    munmap (store->map, store->map_len);
  if (store->fd >= 0)
    close (store->fd);
  if (store->ram)
    g_array_free (store->ram, TRUE);
  g_free (store->stage);
  g_free (store->spill_path);
  g_free (store->spill_prefix);
  g_free (store);
}

static gboolean
write_all (GptdWindowsStore *store, const void *data, gsize len, GError **error)
{
  const guint8 *p = data;
  while (len > 0)
    {
      ssize_t w = write (store->fd, p, len);
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0)
        {
          int e = errno;
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                       "Cannot write the token file %s: %s", store->spill_path,
                       g_strerror (e));
          return FALSE;
        }
      p += w;
      len -= (gsize) w;
    }
  return TRUE;
}

/* Writes @n ids to the spill file in its width. */
static gboolean
spill_ids (GptdWindowsStore *store, const guint32 *ids, gsize n, GError **error)
{
  while (n > 0)
    {
      gsize chunk = MIN (n, STAGE_TOKENS);
      if (store->width == 2)
        {
          guint16 *out = (guint16 *) store->stage;
          for (gsize i = 0; i < chunk; i++)
            out[i] = (guint16) ids[i];
        }
      else
        memcpy (store->stage, ids, chunk * 4);
      if (!write_all (store, store->stage, chunk * store->width, error))
        return FALSE;
      ids += chunk;
      n -= chunk;
    }
  return TRUE;
}

static gboolean
start_spill (GptdWindowsStore *store, GError **error)
{
  store->width = (store->vocab_size > 0 && store->vocab_size <= 65536) ? 2 : 4;
  store->spill_path = g_strconcat (store->spill_prefix,
                                   store->width == 2 ? ".u16" : ".u32", NULL);
  store->fd = g_open (store->spill_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (store->fd < 0)
    {
      int e = errno;
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                   "Cannot create the token file %s: %s", store->spill_path,
                   g_strerror (e));
      return FALSE;
    }
  store->stage = g_malloc (STAGE_TOKENS * 4);
  if (!spill_ids (store, (const guint32 *) store->ram->data, store->ram->len, error))
    return FALSE;
  g_array_set_size (store->ram, 0);
  g_array_free (store->ram, TRUE);
  store->ram = NULL;
  return TRUE;
}

gboolean
gptd__windows_store_append (GptdWindowsStore *store, const guint32 *ids, gsize n,
                            guint32 vocab_size, const char *what, GError **error)
{
  g_return_val_if_fail (!store->finished, FALSE);

  if (vocab_size > 0)
    {
      for (gsize i = 0; i < n; i++)
        if (ids[i] >= vocab_size)
          {
            g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                         "Token id %u at position %" G_GSIZE_FORMAT " of %s is outside "
                         "its vocabulary of %u", ids[i], i, what, vocab_size);
            return FALSE;
          }
      if (store->fd >= 0 && store->width == 2 && vocab_size > 65536)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                       "%s announces a vocabulary of %u ids after earlier tokens "
                       "announced at most %u; one token stream must use one vocabulary",
                       what, vocab_size, store->vocab_size);
          return FALSE;
        }
      store->vocab_size = MAX (store->vocab_size, vocab_size);
    }
  else if (store->fd >= 0 && store->width == 2)
    {
      for (gsize i = 0; i < n; i++)
        if (ids[i] >= 65536)
          {
            g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_INPUT,
                         "Token id %u at position %" G_GSIZE_FORMAT " of %s is outside "
                         "the vocabulary of %u announced earlier", ids[i], i, what,
                         store->vocab_size);
            return FALSE;
          }
    }

  store->length += n;
  if (store->fd < 0)
    {
      g_array_append_vals (store->ram, ids, n);
      if (store->mmap_threshold > 0 && store->length > store->mmap_threshold)
        return start_spill (store, error);
      return TRUE;
    }
  return spill_ids (store, ids, n, error);
}

gboolean
gptd__windows_store_finish (GptdWindowsStore *store, GError **error)
{
  if (store->finished)
    return TRUE;
  store->finished = TRUE;
  if (store->fd < 0)
    return TRUE;

  g_clear_pointer (&store->stage, g_free);
  store->map_len = store->length * store->width;
  if (store->map_len == 0)
    return TRUE;
  store->map = mmap (NULL, store->map_len, PROT_READ, MAP_SHARED, store->fd, 0);
  if (store->map == MAP_FAILED)
    {
      int e = errno;
      store->map = NULL;
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                   "Cannot map the token file %s: %s", store->spill_path,
                   g_strerror (e));
      return FALSE;
    }
  return TRUE;
}

guint64
gptd__windows_store_length (const GptdWindowsStore *store)
{
  return store->length;
}

gboolean
gptd__windows_store_is_mapped (const GptdWindowsStore *store)
{
  return store->fd >= 0;
}

const char *
gptd__windows_store_path (const GptdWindowsStore *store)
{
  return store->spill_path;
}

guint
gptd__windows_store_width (const GptdWindowsStore *store)
{
  return store->fd >= 0 ? store->width : 0;
}

guint32
gptd__windows_store_vocab_size (const GptdWindowsStore *store)
{
  return store->vocab_size;
}

void
gptd__windows_store_read (const GptdWindowsStore *store, guint64 start, guint64 n,
                          gint32 *out)
{
  g_return_if_fail (start + n <= store->length);
  if (store->fd < 0)
    {
      memcpy (out, (const guint32 *) store->ram->data + start, n * sizeof (gint32));
      return;
    }
  g_return_if_fail (store->map != NULL);
  if (store->width == 2)
    {
      const guint16 *src = (const guint16 *) store->map + start;
      for (guint64 i = 0; i < n; i++)
        out[i] = src[i];
    }
  else
    memcpy (out, (const guint32 *) store->map + start, n * sizeof (gint32));
}

/* ---- The data set ---------------------------------------------------------------- */

void
gptd__windows_set_init (GptdWindowsSet *set, guint64 n_tokens, guint64 context_length,
                        guint64 stride, guint64 batch_size, const double *fractions,
                        guint n_fractions, gboolean drop_last_train)
{
  guint64 bounds[GPTD__WINDOWS_MAX_SPLITS + 1];

  g_return_if_fail (n_fractions >= 1 && n_fractions <= GPTD__WINDOWS_MAX_SPLITS);
  memset (set, 0, sizeof *set);
  set->context_length = context_length;
  set->stride = stride;
  set->batch_size = batch_size;
  set->n_splits = n_fractions;
  gptd__windows_split_bounds (n_tokens, fractions, n_fractions, bounds);
  for (guint k = 0; k < n_fractions; k++)
    {
      GptdWindowsSplit *s = &set->splits[k];
      s->begin = bounds[k];
      s->end = bounds[k + 1];
      s->n_windows = gptd__windows_count (s->end - s->begin, context_length, stride);
      s->drop_last = k == 0 && drop_last_train;
      s->n_batches = gptd__windows_n_batches (s->n_windows, batch_size, s->drop_last);
    }
}

void
gptd__windows_set_clear (GptdWindowsSet *set)
{
  for (guint k = 0; k < GPTD__WINDOWS_MAX_SPLITS; k++)
    g_clear_pointer (&set->perm[k], g_free);
}

const guint64 *
gptd__windows_set_order (GptdWindowsSet *set, guint split, gboolean shuffle,
                         guint64 key)
{
  g_return_val_if_fail (split < set->n_splits, NULL);
  if (set->perm_valid[split] && set->perm_shuffled[split] == shuffle
      && (!shuffle || set->perm_key[split] == key))
    return set->perm[split];
  guint64 n = set->splits[split].n_windows;
  if (set->perm[split] == NULL)
    set->perm[split] = g_new (guint64, MAX (n, 1));
  gptd__windows_permutation (set->perm[split], n, shuffle, key);
  set->perm_key[split] = key;
  set->perm_shuffled[split] = shuffle;
  set->perm_valid[split] = TRUE;
  return set->perm[split];
}

guint
gptd__windows_set_fill (const GptdWindowsSet *set, const GptdWindowsStore *store,
                        guint split, const guint64 *order, guint64 batch,
                        gint32 *inputs, gint32 *targets)
{
  const GptdWindowsSplit *s = &set->splits[split];
  guint64 first = batch * set->batch_size;
  guint64 ctx = set->context_length;
  guint rows = 0;

  for (guint64 w = first; w < s->n_windows && w < first + set->batch_size; w++, rows++)
    {
      guint64 start = s->begin + order[w] * set->stride;
      gint32 *in = inputs + (gsize) rows * ctx;
      /* The target row is the input row shifted by one token. */
      gptd__windows_store_read (store, start, ctx, in);
      gptd__windows_store_read (store, start + 1, ctx, targets + (gsize) rows * ctx);
    }
  return rows;
}

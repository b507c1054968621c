/* gptd/windows.h: the sliding-window data set behind the token-windows stage (and
 * the seeded splits and shuffles the classification and instruction data sets share).
 * Host-only: in libgptd for the train and instruct plugins, not installed.
 *
 * A token store keeps one concatenated token stream, in memory while it is small
 * and in a memory-mapped file (16-bit ids when the vocabulary fits, else 32-bit)
 * once it passes a threshold. The stream is cut by position into splits (train,
 * validation, test: the book's train_ratio split). Within a split, windows start
 * every `stride` tokens, as the book's GPTDatasetV1 does:
 *
 *   for i in range(0, len(ids) - context_length, stride):
 *       input  = ids[i : i + context_length]
 *       target = ids[i + 1 : i + context_length + 1]
 *
 * Windows are grouped into batches in order, or in an order shuffled by a
 * Fisher-Yates permutation whose random numbers are a pure function of
 * (key, position), the key being a hash of (seed, request seed, epoch, split).
 *
 * Everything here is plain computation without a stage context, so it is tested
 * directly.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The most splits a stream can be cut into, and their names. */
#define GPTD__WINDOWS_MAX_SPLITS 3

/* Returns the canonical name of split @index ("train", "validation", "test"). */
const char *gptd__windows_split_name (guint index);
/* Returns the index of split @name (accepting "val" and "valid" for "validation"),
 * or -1 when @name is not a split name. */
int gptd__windows_split_lookup (const char *name);

/* ---- Pure functions ------------------------------------------------------- */

/* Returns how many windows of @context_length (+1 for the shifted target) start
 * every @stride tokens in a stream of @n_tokens: len(range(0, n - ctx, stride)). */
guint64 gptd__windows_count (guint64 n_tokens, guint64 context_length,
                             guint64 stride);

/* Returns the number of batches of @batch_size over @n_windows windows, the last
 * partial batch counted unless @drop_last. */
guint64 gptd__windows_n_batches (guint64 n_windows, guint64 batch_size,
                                 gboolean drop_last);

/* Cuts @n_tokens into @n_fractions consecutive ranges; bounds[k] .. bounds[k+1] is
 * split k, bounds[k+1] = floor(n_tokens * (f_0 + ... + f_k)) (as the book's
 * int(train_ratio * len(text)), with 1e-6 added to absorb rounding), and the last bound is n_tokens when the fractions
 * sum to 1 (within 1e-9). @bounds has @n_fractions + 1 entries. */
void gptd__windows_split_bounds (guint64 n_tokens, const double *fractions,
                                 guint n_fractions, guint64 *bounds);

/* Returns the 64-bit key of one epoch's shuffle: a hash of its four inputs. */
guint64 gptd__windows_shuffle_key (guint64 seed, guint64 request_seed,
                                   guint32 epoch, guint split);

/* Returns the @counter-th random 64-bit number of the stream @key (SplitMix64 of
 * key and counter: a counter-based generator). */
guint64 gptd__windows_random (guint64 key, guint64 counter);

/* Fills @perm with 0 .. n-1 and, when @shuffle, permutes it with Fisher-Yates:
 * for i = n-1 down to 1, j = floor(random(key, i) * (i+1) / 2^64), swap i, j. */
void gptd__windows_permutation (guint64 *perm, guint64 n, gboolean shuffle,
                                guint64 key);

/* ---- The token store ------------------------------------------------------ */

typedef struct _GptdWindowsStore GptdWindowsStore;

/* Makes an empty store. Past @mmap_threshold tokens (0: never) the tokens go to
 * the file @spill_prefix + ".u16" (when every id fits 16 bits: the vocabulary
 * announced so far has at most 65536 ids) or + ".u32", written as they come and
 * memory-mapped at the end; @spill_prefix may be NULL only when @mmap_threshold
 * is 0. */
GptdWindowsStore *gptd__windows_store_new (guint64 mmap_threshold,
                                           const char *spill_prefix);
void gptd__windows_store_free (GptdWindowsStore *store);

/* Appends @n ids. @vocab_size (0: unknown) is the size of the vocabulary the ids
 * come from; every id must be below it. @what names the source in errors. */
gboolean gptd__windows_store_append (GptdWindowsStore *store, const guint32 *ids,
                                     gsize n, guint32 vocab_size, const char *what,
                                     GError **error);

/* Ends the stream: a spilled stream is flushed and mapped. */
gboolean gptd__windows_store_finish (GptdWindowsStore *store, GError **error);

guint64 gptd__windows_store_length (const GptdWindowsStore *store);
/* TRUE when the tokens live in the mapped file. */
gboolean gptd__windows_store_is_mapped (const GptdWindowsStore *store);
/* The token file's path once spilled, else NULL. */
const char *gptd__windows_store_path (const GptdWindowsStore *store);
/* Bytes per token in the file (2 or 4), 0 while in memory. */
guint gptd__windows_store_width (const GptdWindowsStore *store);
/* The largest vocab_size announced, 0 when none. */
guint32 gptd__windows_store_vocab_size (const GptdWindowsStore *store);

/* Copies tokens [start, start + n) into @out. */
void gptd__windows_store_read (const GptdWindowsStore *store, guint64 start,
                               guint64 n, gint32 *out);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdWindowsStore, gptd__windows_store_free)

/* ---- The data set ---------------------------------------------------------- */

/* One split: its token range, windows and batches (drop_last applied). */
typedef struct {
  guint64 begin;
  guint64 end;
  guint64 n_windows;
  guint64 n_batches;
  gboolean drop_last;
} GptdWindowsSplit;

typedef struct {
  guint64 context_length;
  guint64 stride;
  guint64 batch_size;
  guint n_splits;
  GptdWindowsSplit splits[GPTD__WINDOWS_MAX_SPLITS];
  /* One cached order per split, for the key it was made with. */
  guint64 *perm[GPTD__WINDOWS_MAX_SPLITS];
  guint64 perm_key[GPTD__WINDOWS_MAX_SPLITS];
  gboolean perm_shuffled[GPTD__WINDOWS_MAX_SPLITS];
  gboolean perm_valid[GPTD__WINDOWS_MAX_SPLITS];
} GptdWindowsSet;

/* Lays out the splits of a stream of @n_tokens. drop_last applies to the train
 * split (split 0) only when @drop_last_train; the others keep their last partial
 * batch, as the book's validation loader does. */
void gptd__windows_set_init (GptdWindowsSet *set, guint64 n_tokens,
                             guint64 context_length, guint64 stride,
                             guint64 batch_size, const double *fractions,
                             guint n_fractions, gboolean drop_last_train);
void gptd__windows_set_clear (GptdWindowsSet *set);

/* Returns the window order of @split for @key (cached until the key changes). */
const guint64 *gptd__windows_set_order (GptdWindowsSet *set, guint split,
                                        gboolean shuffle, guint64 key);

/* Fills batch @batch of @split in @order: up to batch_size rows of inputs and
 * targets (each row context_length ids). Returns the number of rows. */
guint gptd__windows_set_fill (const GptdWindowsSet *set,
                              const GptdWindowsStore *store, guint split,
                              const guint64 *order, guint64 batch,
                              gint32 *inputs, gint32 *targets);

G_END_DECLS

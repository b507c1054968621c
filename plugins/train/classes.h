/* classes.h: the labelled-example data set behind the classification-dataset stage,
 * the book's chapter 6 (the SMS spam data set, its balancing and split, SpamDataset
 * and its DataLoaders).
 *
 * Examples (token ids and a class id) are kept in the order they arrive. Building
 * the data set then follows the book:
 *
 *   1. balance (optional): every class is undersampled to the size of the smallest,
 *      a seeded sample without replacement (the book: ham sampled down to the 747
 *      spam messages);
 *   2. a seeded shuffle of the balanced examples, then a split by position:
 *      train_end = int(n * f_train), validation_end = train_end + int(n * f_val),
 *      the rest the test split (the book's random_split);
 *   3. every example is padded (or truncated) to one length: by default the longest
 *      training example; validation and test use the same length.
 *
 * Batches are served as token-windows serves its windows: in order, or shuffled by
 * a Fisher-Yates permutation keyed on (seed, request seed, epoch, split) (see
 * gptd/windows.h), the last incomplete training batch dropped when asked.
 *
 * The random numbers are gptd's own counter-based generator, not pandas' or
 * PyTorch's: the examples sampled and their order differ from the book's, the
 * sizes do not (1,494 balanced SMS messages: 1,045 / 149 / 300).
 *
 * Everything here is plain computation without a stage context, so it is tested
 * directly.
 */
#pragma once

#include <glib.h>

#include <gptd/windows.h>

G_BEGIN_DECLS

#define GPTD__CLASSES_MAX_SPLITS GPTD__WINDOWS_MAX_SPLITS

/* ---- Pure functions ------------------------------------------------------- */

/* Sizes of the splits of @n examples: sizes[k] = (guint64) (n * fractions[k]), the
 * book's int(len(df) * frac) computed in doubles alike; when the fractions sum to 1
 * (within 1e-9), the last split with a fraction above 0 takes the rest instead, as
 * the book's test split does.
 * A fraction of 0 leaves its split empty. */
void gptd__classes_split_sizes (guint64 n, const double *fractions, guint n_fractions,
                                guint64 *sizes);

/* Undersamples every class to the size of the smallest one: for each class, its
 * examples (positions in @labels, in order) are permuted with the key
 * gptd__classes_balance_key (@seed, class) and the first ones kept. Writes the kept
 * positions in ascending order to @kept (room for @n) and returns how many.
 * Classes with no example are ignored. */
guint64 gptd__classes_undersample (const guint32 *labels, guint64 n, guint n_classes,
                                   guint64 seed, guint64 *kept);

/* The shuffle keys of the balancing sample of class @cls and of the shuffle before
 * the split. */
guint64 gptd__classes_balance_key (guint64 seed, guint cls);
guint64 gptd__classes_split_key (guint64 seed);

/* ---- The data set ---------------------------------------------------------- */

typedef enum {
  GPTD__CLASSES_BALANCE_NONE,
  GPTD__CLASSES_BALANCE_UNDERSAMPLE,
} GptdClassesBalance;

typedef struct {
  GptdClassesBalance balance;
  double fractions[GPTD__CLASSES_MAX_SPLITS];
  guint n_fractions;
  guint64 seed;
  guint64 max_length;       /* 0: the longest training example */
  guint64 batch_size;
  gboolean drop_last_train; /* drop the train split's last incomplete batch */
} GptdClassesConfig;

typedef struct _GptdClassesSet GptdClassesSet;

/* A data set of the classes @names (label id = position). */
GptdClassesSet *gptd__classes_new (const char *const *names, guint n_names);
void gptd__classes_free (GptdClassesSet *set);

/* Appends @n ids to the example being read; @last closes it. The example's label
 * (given with its first ids) must be one of the names, and every part of it must
 * carry the same label; an example must have at least one id. @what names the
 * source in errors. */
gboolean gptd__classes_append (GptdClassesSet *set, const char *label,
                               const guint32 *ids, gsize n, gboolean last,
                               const char *what, GError **error);

/* Examples read (closed), and those of class @cls. */
guint64 gptd__classes_n_examples (const GptdClassesSet *set);
guint64 gptd__classes_class_count (const GptdClassesSet *set, guint cls);
guint gptd__classes_n_classes (const GptdClassesSet *set);
/* The class names, NULL-terminated, belonging to @set. */
char **gptd__classes_names (const GptdClassesSet *set);

/* Balances, shuffles and splits the examples and fixes the length. Fails when a
 * class has no example (naming it), or when the length is left to the train split
 * and it is empty. */
gboolean gptd__classes_build (GptdClassesSet *set, const GptdClassesConfig *config,
                              GError **error);

/* After gptd__classes_build(): */
guint64 gptd__classes_max_length (const GptdClassesSet *set);
/* Examples kept by balancing. */
guint64 gptd__classes_n_kept (const GptdClassesSet *set);
guint64 gptd__classes_split_size (const GptdClassesSet *set, guint split);
guint64 gptd__classes_n_batches (const GptdClassesSet *set, guint split);
/* Examples of @split longer than the length (truncated when served). */
guint64 gptd__classes_n_truncated (const GptdClassesSet *set, guint split);
/* The position in the input (0-based, in arrival order) of example @i of @split. */
guint64 gptd__classes_example_index (const GptdClassesSet *set, guint split, guint64 i);

/* Returns the example order of @split for @key (cached until the key changes). */
const guint64 *gptd__classes_order (GptdClassesSet *set, guint split, gboolean shuffle,
                                    guint64 key);

/* Fills batch @batch of @split in @order: up to batch_size rows, each the example's
 * ids cut to max_length and padded with @pad_id to max_length in @inputs, its class
 * id in @labels and its length before padding (at most max_length) in @lengths.
 * Returns the number of rows. */
guint gptd__classes_fill (const GptdClassesSet *set, guint split, const guint64 *order,
                          guint64 batch, gint32 pad_id, gint32 *inputs, gint32 *labels,
                          guint32 *lengths);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdClassesSet, gptd__classes_free)

G_END_DECLS

/* gptd/dist.h: the process group of data-parallel training.
 *
 * A gptd process started by mpirun (Open MPI) is one rank of a group that
 * trains one model: every rank runs the same pipeline on its share of each
 * batch, and the gradients are averaged across the group before each update.
 * Started any other way, or built without MPI, a process is a group of one,
 * and every call here is a cheap no-op, so that the trainer has one code path.
 *
 * The group is process-wide: gptd_dist_init() once in main(), then any thread
 * may make the collective calls, one at a time, in the same order on every
 * rank.  A failing collective, or a rank that dies, ends the whole group
 * (Open MPI's default): no collective here returns an error.
 */
#pragma once

#include <glib.h>
#include <gptd/nn.h>

G_BEGIN_DECLS

/**
 * GPTD_DIST_ERROR:
 *
 * Error domain of the process group: %GPTD_DIST_ERROR_UNSUPPORTED when this
 * build has no MPI, %GPTD_DIST_ERROR_FAILED otherwise.
 */
#define GPTD_DIST_ERROR (gptd_dist_error_quark ())
GQuark gptd_dist_error_quark (void);

typedef enum {
  GPTD_DIST_ERROR_UNSUPPORTED,
  GPTD_DIST_ERROR_FAILED,
} GptdDistError;

/**
 * gptd_dist_available:
 *
 * Returns: whether this build can run as a rank group (built with Open MPI).
 */
gboolean gptd_dist_available (void);

/**
 * gptd_dist_launched:
 *
 * Returns: whether the environment says this process was started by mpirun
 *   (Open MPI's OMPI_COMM_WORLD_SIZE), whatever the build.
 */
gboolean gptd_dist_launched (void);

/**
 * gptd_dist_init:
 * @error: return location for a #GError.
 *
 * Joins the group when mpirun started this process (MPI_Init_thread);
 * otherwise the process is a group of one.  Call once, before any thread.
 *
 * Returns: FALSE with %GPTD_DIST_ERROR_UNSUPPORTED when mpirun started a
 *   process of a build without MPI.
 */
gboolean gptd_dist_init (GError **error);

/**
 * gptd_dist_finalize:
 *
 * Leaves the group (MPI_Finalize) after a successful run; a no-op for a group
 * of one.
 */
void gptd_dist_finalize (void);

/**
 * gptd_dist_abort:
 * @status: the exit status.
 *
 * Ends every rank of the group at once (after an error on this one, which the
 * others would otherwise wait for); exits for a group of one.
 */
G_NORETURN void gptd_dist_abort (int status);

/** gptd_dist_rank: Returns: this process's rank, 0 .. size - 1. */
int gptd_dist_rank (void);

/** gptd_dist_size: Returns: the number of ranks (1 without a group). */
int gptd_dist_size (void);

/**
 * gptd_dist_share:
 * @rows: the rows of a global batch.
 * @first: (out): the first row of this rank's share.
 * @count: (out): how many rows it has.
 *
 * Cuts @rows into size consecutive shares, rank r taking rows
 * floor(r rows / size) .. floor((r + 1) rows / size) - 1: the ranks' shares
 * in rank order are the batch in order.
 */
void gptd_dist_share (guint64 rows, guint64 *first, guint64 *count);

/** gptd_dist_sum: Sums @n doubles in place across the group (every rank gets the sum). */
void gptd_dist_sum (double *values, size_t n);

/** gptd_dist_broadcast: Copies @bytes at @data from rank @root to every rank. */
void gptd_dist_broadcast (void *data, size_t bytes, int root);

/**
 * gptd_dist_broadcast_string:
 * @s: (nullable): the string on rank @root (ignored elsewhere).
 * @root: the rank that has it.
 *
 * Returns: (transfer full) (nullable): rank @root's string, on every rank.
 */
char *gptd_dist_broadcast_string (const char *s, int root);

/**
 * gptd_dist_allgather_floats:
 * @data: the whole buffer; rank r's part is already in place.
 * @counts: how many floats each rank contributes, in rank order.
 *
 * Fills every rank's part of @data with the other ranks' parts (their parts
 * lie one after another, in rank order).
 */
void gptd_dist_allgather_floats (float *data, const size_t *counts);

/**
 * gptd_dist_gather_floats:
 * @part: this rank's part.
 * @n: its length.
 * @out: on @root, the whole buffer (the parts in rank order); NULL elsewhere.
 * @counts: every rank's part length, in rank order.
 * @root: the rank that receives.
 */
void gptd_dist_gather_floats (const float *part, size_t n, float *out,
                              const size_t *counts, int root);

/* ---- Gradients --------------------------------------------------------------- */

/**
 * GptdDistGrads:
 *
 * Averages a model's gradients across the group while backward runs: each
 * block's gradients start a non-blocking sum (MPI_Iallreduce) as soon as the
 * block's backward is done, the rest (embeddings, final norm, head) when
 * backward ends.  The buckets and their order are fixed by the model's shape,
 * so the sums do not depend on timing, and every rank gets the same bits.
 */
typedef struct _GptdDistGrads GptdDistGrads;

/**
 * gptd_dist_grads_new:
 * @model: the model; its backward hook is taken (a group of one takes none).
 *
 * Returns: (transfer full): the gradient exchange of @model.
 */
GptdDistGrads *gptd_dist_grads_new (GptdGpt *model);

/**
 * gptd_dist_grads_wait:
 * @grads: the exchange.
 *
 * Waits for every bucket of the last backward: the model's gradient buffer
 * then holds the group's sums.  Scale each rank's loss so that these sums are
 * the group's mean gradient (gptd_gpt_backward()'s loss_scale).
 *
 * Returns: the seconds spent waiting here (communication not hidden by
 *   backward).
 */
double gptd_dist_grads_wait (GptdDistGrads *grads);

/**
 * gptd_dist_grads_free:
 * @grads: (nullable): the exchange; gives the model's backward hook back.
 */
void gptd_dist_grads_free (GptdDistGrads *grads);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdDistGrads, gptd_dist_grads_free)

/* ---- ZeRO-1: the optimizer state sharded across the group --------------------- */

/**
 * gptd_dist_zero_new_optimizer:
 * @model: the model, the same on every rank.
 * @params: AdamW's hyperparameters.
 * @whole: (nullable): a whole optimizer to take the moments and step from
 *   (a resumed checkpoint's, loaded on every rank), or NULL for new moments.
 * @error: return location for a #GError.
 *
 * This rank's shard of the AdamW state: the trainable parameters, packed in
 * order, cut into size consecutive shares (aligned to 64 floats).  Each rank
 * then updates its share only and gptd_dist_zero_gather_weights() gives every
 * rank every weight, bit for bit what a whole optimizer on every rank gives.
 *
 * Returns: (transfer full) (nullable): the shard optimizer, or NULL with
 *   %GPTD_DIST_ERROR_FAILED when the trainable tensors do not form one
 *   contiguous range (LoRA adapters).
 */
GptdAdamW *gptd_dist_zero_new_optimizer (GptdGpt *model, const GptdAdamWParams *params,
                                         GptdAdamW *whole, GError **error);

/**
 * gptd_dist_zero_gather_weights:
 * @model: the model after each rank's shard step.
 *
 * Gives every rank the weights every other rank updated (MPI_Allgatherv).
 */
void gptd_dist_zero_gather_weights (GptdGpt *model);

/**
 * gptd_dist_zero_gather_optimizer:
 * @model: the model.
 * @shard: this rank's shard optimizer.
 * @error: return location for a #GError.
 *
 * Collective: gathers the shards into a whole optimizer on rank 0, to be
 * saved in a checkpoint.
 *
 * Returns: (transfer full) (nullable): on rank 0 the whole optimizer (NULL
 *   with @error when it cannot be allocated); NULL on the other ranks.
 */
GptdAdamW *gptd_dist_zero_gather_optimizer (GptdGpt *model, GptdAdamW *shard,
                                            GError **error);

G_END_DECLS

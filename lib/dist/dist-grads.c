/* dist-grads.c: the gradient exchange of data-parallel training (see
 * gptd/dist.h, GptdDistGrads): buckets of the gradient buffer summed across the
 * group with MPI_Iallreduce, each started from the model's backward hook as soon
 * as its block is done, so that the sums overlap the backward of the blocks
 * below.
 *
 * The buckets are one per transformer block (block L-1 first, as backward
 * finishes them) and, at the end of backward, the parameters outside the blocks:
 * token and position embeddings (whose gradient is final only after the
 * embedding backward, the head being tied to them) and the final LayerNorm and
 * head.  With LoRA adapters, whose tensors lie after all the base tensors, the
 * whole buffer is one bucket at the end.  The buckets, their sizes and their
 * order depend on the model's shape only, and Open MPI picks its reduction
 * algorithm from the communicator and the size, so the sums do not depend on
 * timing; every rank receives the same sum.
 *
 * Open MPI progresses a non-blocking collective only inside MPI calls: each hook
 * also tests the buckets in flight.
 */
#include "config.h"

#include <gptd/dist.h>

#include <string.h>

#include "dist/dist-private.h"

typedef struct {
  size_t begin, end;   /* in the parameter buffer */
  int ready;           /* the block after whose backward it starts; -1: the end */
} Bucket;

struct _GptdDistGrads {
  GptdGpt *model;
  GArray *buckets;     /* of Bucket, in starting order */
  guint started;       /* buckets started by this backward */
#ifdef HAVE_MPI
  MPI_Request *requests;
#endif
};

static size_t
tensor_offset (GptdGpt *model, const char *name)
{
  const GptdNnTensor *t = gptd_gpt_lookup_tensor (model, name);
  g_assert (t != NULL);
  return (size_t) (t->data - gptd_gpt_get_params (model));
}

static void
add_bucket (GArray *buckets, size_t begin, size_t end, int ready)
{
  if (end > begin)
    {
      Bucket b = { begin, end, ready };
      g_array_append_val (buckets, b);
    }
}

static void
plan_buckets (GptdDistGrads *self)
{
  GptdGpt *m = self->model;
  int L = gptd_gpt_get_config (m)->n_layer;
  size_t n = gptd_gpt_n_params (m);

  g_array_set_size (self->buckets, 0);
  if (gptd_gpt_get_lora_rank (m) > 0 || L == 0)
    {
      add_bucket (self->buckets, 0, n, -1);
      return;
    }
  size_t first = tensor_offset (m, "h.0.ln_1.weight");
  size_t last = tensor_offset (m, "ln_f.weight");
  for (int l = L - 1; l >= 0; l--)
    {
      g_autofree char *name = g_strdup_printf ("h.%d.ln_1.weight", l);
      g_autofree char *next = g_strdup_printf ("h.%d.ln_1.weight", l + 1);
      size_t b = tensor_offset (m, name);
      size_t e = l + 1 < L ? tensor_offset (m, next) : last;
      add_bucket (self->buckets, b, e, l);
    }
  add_bucket (self->buckets, last, n, -1);
  add_bucket (self->buckets, 0, first, -1);
}

#ifdef HAVE_MPI
/* Starts bucket @i on the part of it that has gradients. */
static void
start_bucket (GptdDistGrads *self, guint i)
{
  const Bucket *b = &g_array_index (self->buckets, Bucket, i);
  size_t base = gptd_gpt_get_grads_offset (self->model);
  float *G = gptd_gpt_get_grads (self->model);
  size_t begin = MAX (b->begin, base);
  self->requests[i] = MPI_REQUEST_NULL;
  if (G == NULL || begin >= b->end)
    return;
  /* One bucket stays far below 2^31 floats (a block, or the embeddings). */
  MPI_Iallreduce (MPI_IN_PLACE, G + (begin - base), (int) (b->end - begin), MPI_FLOAT,
                  MPI_SUM, MPI_COMM_WORLD, &self->requests[i]);
}

static void
on_backward (GptdGpt *model, int block, gpointer data)
{
  GptdDistGrads *self = data;
  (void) model;
  while (self->started < self->buckets->len)
    {
      const Bucket *b = &g_array_index (self->buckets, Bucket, self->started);
      if (block >= 0 && b->ready < block)
        break;
      start_bucket (self, self->started++);
    }
  /* Let the buckets in flight move on while the next block computes. */
  int done;
  if (block >= 0 && self->started > 0)
    MPI_Testall ((int) self->started, self->requests, &done, MPI_STATUSES_IGNORE);
}
#endif

GptdDistGrads *
gptd_dist_grads_new (GptdGpt *model)
{
  g_return_val_if_fail (model != NULL, NULL);
  GptdDistGrads *self = g_new0 (GptdDistGrads, 1);
  self->model = model;
  self->buckets = g_array_new (FALSE, FALSE, sizeof (Bucket));
  if (gptd_dist_size () == 1)
    return self;
  plan_buckets (self);
#ifdef HAVE_MPI
  self->requests = g_new (MPI_Request, self->buckets->len);
  for (guint i = 0; i < self->buckets->len; i++)
    self->requests[i] = MPI_REQUEST_NULL;
  gptd_gpt_set_backward_hook (model, on_backward, self);
#endif
  return self;
}

double
gptd_dist_grads_wait (GptdDistGrads *self)
{
  g_return_val_if_fail (self != NULL, 0);
  if (gptd_dist_size () == 1)
    return 0;
#ifdef HAVE_MPI
  double t0 = MPI_Wtime ();
  /* A backward that ended early (nothing below trainable) started fewer. */
  while (self->started < self->buckets->len)
    start_bucket (self, self->started++);
  MPI_Waitall ((int) self->buckets->len, self->requests, MPI_STATUSES_IGNORE);
  self->started = 0;
  return MPI_Wtime () - t0;
#else
  return 0;
#endif
}

void
gptd_dist_grads_free (GptdDistGrads *self)
{
  if (self == NULL)
    return;
  if (gptd_dist_size () > 1)
    gptd_gpt_set_backward_hook (self->model, NULL, NULL);
#ifdef HAVE_MPI
  g_free (self->requests);
#endif
  g_array_unref (self->buckets);
  g_free (self);
}

/* trainer.h: the training loop that gpt-trainer and classifier-trainer share.
 *
 * The loop is the book's train_model_simple with checkpoints and exact resume:
 * chunked epoch requests to the input stage, evaluation every eval-freq steps over
 * eval-iter batches of each split, periodic, final and cancel checkpoints, progress
 * and the metrics files. What differs between the two trainers is a task: how a
 * batch is checked and what its loss is, and what happens at the end of an epoch
 * and of the run. Each trainer fills the common fields from its parameters,
 * builds its model (or resumes) and hands the rest to gptd__trainer_run().
 */
#pragma once

#include <gptd/bpe.h>
#include <gptd/dist.h>
#include <gptd/nn.h>
#include <gptd/stage.h>

#include "metrics.h"

G_BEGIN_DECLS

typedef struct _GptdTrainer GptdTrainer;

/* What a trainer does with a batch and around epochs. */
typedef struct {
  /* Checks the layout of batch @b (sizes of inputs and targets or labels). */
  gboolean (*check_batch) (GptdTrainer *t, const Gptd__Batch *b, GError **error);
  /* Runs the model on @b with @flags: the mean loss, and with @correct non-NULL
   * the rows predicted right and the rows counted (for accuracy). */
  gboolean (*forward) (GptdTrainer *t, const Gptd__Batch *b, GptdGptForwardFlags flags,
                       float *loss, guint64 *correct, guint64 *counted, GError **error);
  /* After each epoch's last step (may be NULL). */
  gboolean (*epoch_end) (GptdTrainer *t, GptdStageContext *ctx, GError **error);
  /* After the final checkpoint, before the Model message (may be NULL). */
  gboolean (*finish) (GptdTrainer *t, GptdStageContext *ctx, GError **error);
  /* Whether evaluations also measure accuracy (metrics get train_acc,val_acc). */
  gboolean accuracy;
} GptdTrainerTask;

struct _GptdTrainer {
  const GptdTrainerTask *task;
  gpointer task_data;

  char *stage_name;
  char *model_name;
  GptdGptConfig config;
  char *init_dir;
  gint64 epochs;          /* 0: unlimited */
  gint64 max_steps;       /* 0: unlimited */
  GptdLrSchedule schedule;
  double weight_decay;
  double clip;
  guint64 seed;
  int threads;
  gint64 eval_freq;
  gint64 eval_iter;
  gint64 checkpoint_every;
  guint keep_checkpoints;
  char **labels;          /* a classifier's class names, for its model directory */
  char *pooling;
  int sequence_length;    /* a classifier's padded training length (0: unknown) */
  int lora_rank;          /* 0: no LoRA */
  float lora_alpha;
  gboolean lora_save_adapter;
  gboolean lora_train_head; /* a classifier's new head trains with the adapters */

  /* Data-parallel training (gptd/dist.h): every rank trains on its share of
   * each batch; rank 0 alone writes the run directory. */
  int rank, size;
  gboolean zero;          /* zero=1: opt is this rank's shard of AdamW */
  GptdDistGrads *grads;
  double comm_wait;       /* seconds waited for gradient sums this session */

  GptdGpt *model;
  GptdAdamW *opt;
  GptdBpe *bpe;
  char *run_dir;
  char *ckpt_root;
  char *vocab_json;       /* the tokenizer's files copied into checkpoints */
  char *merges_txt;
  GptdTrainMetrics *metrics;

  /* Where training stands: steps done and the next batch. */
  gint64 step;
  guint32 epoch;
  guint64 batch_index;
  guint64 tokens_seen;
  guint64 batches_per_epoch; /* 0 until known */
  gint64 total_steps;        /* 0 until known */
  double elapsed_before;     /* seconds of earlier sessions of this run */
  gint64 saved_step;         /* step of the newest checkpoint, -1 for none */
  char *saved_dir;
  double last_train_loss;
  double last_val_loss;
  double last_eval_train_loss;

  /* This session's clocks. */
  GTimer *timer;
  gint64 session_first_step;
  double last_progress_time;
  double step_start;

  /* The last step's bookkeeping, done once the input is free again (evaluation
   * needs it, and it is busy until the end of the chunk being pulled). Set until
   * the step's metrics row is written, so also while its evaluation runs. */
  gboolean pending;
  float p_loss;
  double p_lr;
  double p_tokens;
  double p_time;
};

/* The values of lora-save=. */
extern const char *const gptd__trainer_lora_save_choices[];

/* The parameters both trainers declare, in this order; a trainer's table starts
 * with its own keys and ends with these (GPTD__TRAINER_COMMON_PARAMS). */
#define GPTD__TRAINER_COMMON_PARAMS(default_epochs, default_lr, default_eval_freq)          \
  { "epochs", GPTD_PARAM_INT, default_epochs, 1, 1e9, NULL,                                 \
    "Passes over the train split (unlimited when only max-steps is given)", 0 },            \
  { "max-steps", GPTD_PARAM_INT, "0", 0, 1e15, NULL,                                        \
    "Stop after this many optimizer steps; 0 for no limit", 0 },                            \
  { "lr", GPTD_PARAM_DOUBLE, default_lr, 0, 10, NULL, "Peak learning rate",                 \
    GPTD_PARAM_MIN_EXCLUSIVE },                                                             \
  { "initial-lr", GPTD_PARAM_DOUBLE, "0", 0, 10, NULL,                                      \
    "Learning rate at the start of the warmup", 0 },                                        \
  { "min-lr", GPTD_PARAM_DOUBLE, NULL, 0, 10, NULL,                                         \
    "Decay the learning rate after the warmup to this value along a cosine "                \
    "(the book's appendix D); absent: constant after the warmup", 0 },                      \
  { "warmup-steps", GPTD_PARAM_INT, "0", 0, 1e15, NULL,                                     \
    "Steps of linear warmup from initial-lr to lr", 0 },                                    \
  { "weight-decay", GPTD_PARAM_DOUBLE, "0.1", 0, 10, NULL, "AdamW weight decay", 0 },       \
  { "clip", GPTD_PARAM_DOUBLE, "0", 0, 1e9, NULL,                                           \
    "Clip the global gradient norm to this value; 0 for no clipping", 0 },                  \
  { "seed", GPTD_PARAM_INT, "123", 0, (double) G_MAXINT64, NULL,                            \
    "Seed of the weights, dropout and data shuffling", 0 },                                 \
  { "threads", GPTD_PARAM_INT, "0", 0, 4096, NULL,                                          \
    "Threads for the model; 0 for one per CPU. Resume with the same count for "             \
    "bitwise identical losses", 0 },                                                        \
  { "eval-freq", GPTD_PARAM_INT, default_eval_freq, 0, 1e15, NULL,                          \
    "Evaluate after every this many steps (steps 0, N, 2N, ...); 0 never", 0 },             \
  { "eval-iter", GPTD_PARAM_INT, "5", 1, 1e9, NULL,                                         \
    "Batches of each split an evaluation averages", 0 },                                    \
  { "lora-rank", GPTD_PARAM_INT, "0", 0, 65536, NULL,                                       \
    "Train low-rank adapters (LoRA, the book's appendix E) of this rank on every block's "  \
    "linear layers instead of the weights, which stay frozen; 0 for no LoRA", 0 },          \
  { "lora-alpha", GPTD_PARAM_DOUBLE, NULL, 0, 1e9, NULL,                                    \
    "LoRA alpha: the adapters' output is scaled by lora-alpha / lora-rank (default: "       \
    "lora-rank, a scale of 1)", GPTD_PARAM_MIN_EXCLUSIVE },                                 \
  { "lora-save", GPTD_PARAM_ENUM, "merged", 0, 0, gptd__trainer_lora_save_choices,          \
    "What a LoRA run delivers: merged (a plain model directory with the adapters folded "   \
    "into the weights) or adapter (the adapters alone, in PEFT's layout, naming init= as "  \
    "their base)", 0 },                                                                     \
  { "zero", GPTD_PARAM_INT, "0", 0, 1, NULL,                                                \
    "With several ranks (mpirun, ranks=): 1 shards the AdamW state and update across "      \
    "them (ZeRO-1), cutting the optimizer's memory by the rank count; 0 keeps it whole on " \
    "every rank. The weights are the same either way", 0 }

/* Checks the learning-rate keys (min-lr and initial-lr not above lr). */
gboolean gptd__trainer_check_params (const GptdParams *params, GError **error);

/* Fills the common fields from @params and sets the thread count. */
void gptd__trainer_init (GptdTrainer *t, GptdStageContext *ctx, const GptdParams *params,
                         const GptdTrainerTask *task, gpointer task_data);

/* Frees everything the common fields own (not the task data). */
void gptd__trainer_clear (GptdTrainer *t);

/* Loads the run directory's latest checkpoint into t->model and t->opt. Returns
 * FALSE with @error on a damaged checkpoint; TRUE with t->model still NULL when
 * there is none. Unless init_dir is set, the checkpoint's shape must be
 * t->config's. */
gboolean gptd__trainer_resume (GptdTrainer *t, GptdStageContext *ctx, GError **error);

/* Seeds the dropout RNG and creates the optimizer of a fresh t->model. */
gboolean gptd__trainer_start (GptdTrainer *t, GError **error);

/* Loads the tokenizer @vocab (a name, a path relative to the pipeline, or NULL for
 * init_dir's own) into t->bpe and copies it into the run directory for the model
 * directories. Without a tokenizer, t->bpe stays NULL. */
gboolean gptd__trainer_setup_tokenizer (GptdTrainer *t, const GptdParams *params,
                                        const char *vocab, GError **error);

/* The mean loss (and accuracy, NaN without) over up to @n batches of @split
 * (NaN when it has none), without dropout: the book's calc_loss_loader and
 * calc_accuracy_loader in one pass; @n 0 means the whole split. */
gboolean gptd__trainer_measure (GptdTrainer *t, GptdStageContext *ctx, const char *split,
                                guint32 epoch, guint64 seed, gboolean shuffle, gint64 n,
                                double *loss, double *accuracy, GError **error);

/* Runs the training to its end and pushes the Model message. */
gboolean gptd__trainer_run (GptdTrainer *t, GptdStageContext *ctx, GError **error);

/* Request seeds of the train-split evaluations. */
#define GPTD__TRAINER_EVAL_SEED_SALT G_GUINT64_CONSTANT (0x65766131)

G_END_DECLS

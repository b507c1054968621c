/* metrics.h: the training metrics of a run directory.
 *
 *  - metrics.csv: one row per optimizer step,
 *      step,epoch,tokens_seen,train_loss,val_loss,lr,tokens_per_s,elapsed_s
 *    with empty cells where a value was not measured at that step;
 *  - eval.csv: one row per evaluation (the book's evaluate_model: train and
 *    validation loss over eval-iter batches each),
 *      step,epoch,tokens_seen,train_loss,val_loss
 *  - loss.svg: the evaluated train and validation losses against tokens seen, as
 *    the book's loss figure, drawn as hand-written SVG.
 *
 * A classifier's metrics (opened with accuracy) add the columns train_acc,val_acc
 * to both files and draw accuracy.svg as well.
 *
 * Floating-point values are written with 9 significant digits, so a float32 loss
 * reads back as the same float. When a run resumes from a checkpoint taken after
 * N steps, rows of steps >= N (written after the checkpoint by the interrupted
 * process) are dropped and the files continue from there.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* One row of metrics.csv; NaN (or a negative tokens_per_s) leaves a cell empty. */
typedef struct {
  gint64 step;
  guint32 epoch;
  guint64 tokens_seen;
  double train_loss;
  double val_loss;
  double lr;
  double tokens_per_s;
  double elapsed_s;
  double train_acc; /* only written with accuracy */
  double val_acc;
} GptdTrainMetricsRow;

/* One evaluation: the points of the loss plot. */
typedef struct {
  gint64 step;
  guint32 epoch;
  guint64 tokens_seen;
  double train_loss;
  double val_loss;
  double train_acc; /* only written with accuracy */
  double val_acc;
} GptdTrainEval;

typedef struct _GptdTrainMetrics GptdTrainMetrics;

#define GPTD__TRAIN_METRICS_HEADER \
  "step,epoch,tokens_seen,train_loss,val_loss,lr,tokens_per_s,elapsed_s"
#define GPTD__TRAIN_EVAL_HEADER "step,epoch,tokens_seen,train_loss,val_loss"
#define GPTD__TRAIN_ACC_COLUMNS ",train_acc,val_acc"

/* Opens the metrics of @run_dir. Without @resume the files start afresh (header
 * only). With @resume, rows whose step is below @keep_steps are kept (a missing
 * file starts afresh), the rest dropped, and the files rewritten atomically. */
GptdTrainMetrics *gptd__train_metrics_open (const char *run_dir, gboolean resume,
                                            gint64 keep_steps, GError **error);

/* As gptd__train_metrics_open(); with @accuracy the files have the accuracy
 * columns and write_plot() also writes accuracy.svg. */
GptdTrainMetrics *gptd__train_metrics_open_full (const char *run_dir, gboolean resume,
                                                 gint64 keep_steps, gboolean accuracy,
                                                 GError **error);
void gptd__train_metrics_free (GptdTrainMetrics *metrics);

/* Appends one step row to metrics.csv (flushed). */
gboolean gptd__train_metrics_append (GptdTrainMetrics *metrics,
                                     const GptdTrainMetricsRow *row, GError **error);

/* Appends one evaluation to eval.csv (flushed) and to the plot's points. */
gboolean gptd__train_metrics_add_eval (GptdTrainMetrics *metrics,
                                       const GptdTrainEval *eval, GError **error);

/* The evaluations so far (kept ones included after a resume). */
const GptdTrainEval *gptd__train_metrics_get_evals (GptdTrainMetrics *metrics,
                                                    guint *n_evals);

/* Writes loss.svg (atomically) from the evaluations so far. */
gboolean gptd__train_metrics_write_plot (GptdTrainMetrics *metrics, GError **error);

/* Renders the plot of @evals as an SVG document: the train_loss and val_loss
 * fields against tokens seen, with the y axis and the legend naming @quantity
 * ("loss" when NULL; "accuracy" for a plot whose fields hold accuracies).
 * @title may be NULL. */
char *gptd__train_plot_svg (const GptdTrainEval *evals, guint n_evals,
                            const char *title, const char *quantity);

/* Formats a value as written in the CSV files: "" for NaN, else %.9g. */
void gptd__train_format_value (char *buf, gsize size, double value);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdTrainMetrics, gptd__train_metrics_free)

G_END_DECLS

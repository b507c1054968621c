/* loss-plot.h: the plots of a training run (loss.svg, accuracy.svg): SVG written by
 * hand, as the book's loss figure — the training loss of every step (faint) and its
 * moving average, the evaluations' training and validation values, tokens seen along
 * the bottom and epochs along the top. */
#pragma once

#include <glib.h>

#include "metrics.h"

G_BEGIN_DECLS

/* One optimizer step's point: its training value (NaN: none). */
typedef struct {
  guint64 tokens_seen;
  guint32 epoch;      /* 0-based */
  double value;
} GptdTrainPlotStep;

/* Renders the plot as an SVG document. @steps (may be NULL) are the per-step
 * training values, drawn faint with their moving average over about 1/50 of the
 * run; @evals the evaluations' train and validation values, drawn as lines with a
 * marker at each evaluation. The epoch ticks along the top come from @steps (where
 * each epoch starts), else from @evals. The y axis and the legend name @quantity
 * ("loss" when NULL; "accuracy" for a plot of accuracies). @title may be NULL. */
char *gptd__train_plot_svg (const GptdTrainPlotStep *steps, guint n_steps,
                            const GptdTrainEval *evals, guint n_evals,
                            const char *title, const char *quantity);

G_END_DECLS

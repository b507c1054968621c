/* metrics.c: metrics.csv, eval.csv, the plots (loss.svg, accuracy.svg: see
 * loss-plot.c) and index.html of a training run; see metrics.h. Epochs are counted
 * from 1 in the files, as the logs count them. */
#include "metrics.h"
#include "loss-plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <glib/gstdio.h>

#include <gptd/atomic-file.h>
#include <gptd/stage.h>

struct _GptdTrainMetrics {
  char *metrics_path;
  char *eval_path;
  char *plot_path;
  FILE *metrics;
  FILE *eval;
  GArray *evals; /* GptdTrainEval */
  GArray *steps; /* GptdTrainPlotStep: every step's training loss, for the plot */
  gboolean accuracy;
  char *acc_plot_path;
  char *run_dir;
};

void
gptd__train_format_value (char *buf, gsize size, double value)
{
  if (isnan (value))
    buf[0] = '\0';
  else
    g_snprintf (buf, size, "%.9g", value);
}

/* Keeps the complete lines of @path below @keep_steps whose field count is
 * @n_fields; returns the kept text (header first) or NULL when the file is absent.
 * Each kept line is passed to @each (may be NULL). */
static gboolean
filter_rows (const char *path, const char *header, guint n_fields, gint64 keep_steps,
             void (*each) (char **fields, gpointer data), gpointer data,
             GString **out, GError **error)
{
  g_autofree char *text = NULL;
  gsize len = 0;
  g_autoptr (GError) local = NULL;

  *out = NULL;
  if (!g_file_get_contents (path, &text, &len, &local))
    {
      if (g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        return TRUE;
      g_propagate_error (error, g_steal_pointer (&local));
      return FALSE;
    }

  GString *kept = g_string_new (header);
  g_string_append_c (kept, '\n');
  char *p = text;
  char *end = text + len;
  gboolean first = TRUE;
  guint line_no = 0;
  while (p < end)
    {
      char *nl = memchr (p, '\n', end - p);
      if (nl == NULL)
        break; /* a torn last line */
      *nl = '\0';
      line_no++;
      if (first)
        {
          first = FALSE;
          if (!g_str_equal (p, header))
            {
              g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO,
                           "%s:1: unexpected header \"%s\" (expected \"%s\"); move the "
                           "file away to start it afresh", path, p, header);
              g_string_free (kept, TRUE);
              return FALSE;
            }
        }
      else
        {
          g_auto (GStrv) fields = g_strsplit (p, ",", -1);
          char *num_end = NULL;
          gint64 step = g_ascii_strtoll (fields[0], &num_end, 10);
          if (g_strv_length (fields) == n_fields && num_end != fields[0] && *num_end == '\0'
              && step < keep_steps)
            {
              g_string_append (kept, p);
              g_string_append_c (kept, '\n');
              if (each)
                each (fields, data);
            }
        }
      p = nl + 1;
    }
  *out = kept;
  return TRUE;
}

static double
parse_cell (const char *s)
{
  if (s == NULL || *s == '\0')
    return NAN;
  return g_ascii_strtod (s, NULL);
}

/* The 0-based epoch of a CSV cell, which counts from 1. */
static guint32
parse_epoch (const char *s)
{
  guint64 e = g_ascii_strtoull (s, NULL, 10);
  return e > 0 ? (guint32) (e - 1) : 0;
}

static void
collect_step (char **fields, gpointer data)
{
  GArray *steps = data;
  GptdTrainPlotStep p = {
    .tokens_seen = g_ascii_strtoull (fields[2], NULL, 10),
    .epoch = parse_epoch (fields[1]),
    .value = parse_cell (fields[3]),
  };
  g_array_append_val (steps, p);
}

static void
collect_eval (char **fields, gpointer data)
{
  GArray *evals = data;
  GptdTrainEval e = {
    .step = g_ascii_strtoll (fields[0], NULL, 10),
    .epoch = parse_epoch (fields[1]),
    .tokens_seen = g_ascii_strtoull (fields[2], NULL, 10),
    .train_loss = parse_cell (fields[3]),
    .val_loss = parse_cell (fields[4]),
    .train_acc = fields[5] ? parse_cell (fields[5]) : NAN,
    .val_acc = fields[5] && fields[6] ? parse_cell (fields[6]) : NAN,
  };
  g_array_append_val (evals, e);
}

static FILE *
start_file (const char *path, const char *header, gboolean resume, guint n_fields,
            gint64 keep_steps, void (*each) (char **fields, gpointer data), GArray *kept_rows,
            GError **error)
{
  g_autoptr (GString) kept = NULL;
  FILE *f;

  if (resume && !filter_rows (path, header, n_fields, keep_steps, each, kept_rows, &kept,
                              error))
    return NULL;
  if (kept == NULL)
    {
      kept = g_string_new (header);
      g_string_append_c (kept, '\n');
    }
  if (!gptd_atomic_file_set_contents (path, kept->str, kept->len, error))
    return NULL;
  f = g_fopen (path, "a");
  if (f == NULL)
    {
      int e = errno;
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "Cannot open %s: %s",
                   path, g_strerror (e));
    }
  return f;
}

GptdTrainMetrics *
gptd__train_metrics_open (const char *run_dir, gboolean resume, gint64 keep_steps,
                          GError **error)
{
  return gptd__train_metrics_open_full (run_dir, resume, keep_steps, FALSE, error);
}

GptdTrainMetrics *
gptd__train_metrics_open_full (const char *run_dir, gboolean resume, gint64 keep_steps,
                               gboolean accuracy, GError **error)
{
  g_autoptr (GptdTrainMetrics) m = g_new0 (GptdTrainMetrics, 1);
  const char *extra = accuracy ? GPTD__TRAIN_ACC_COLUMNS : "";
  guint n_extra = accuracy ? 2 : 0;
  g_autofree char *metrics_header = g_strconcat (GPTD__TRAIN_METRICS_HEADER, extra, NULL);
  g_autofree char *eval_header = g_strconcat (GPTD__TRAIN_EVAL_HEADER, extra, NULL);

  m->accuracy = accuracy;
  m->metrics_path = g_build_filename (run_dir, "metrics.csv", NULL);
  m->eval_path = g_build_filename (run_dir, "eval.csv", NULL);
  m->plot_path = g_build_filename (run_dir, "loss.svg", NULL);
  if (accuracy)
    m->acc_plot_path = g_build_filename (run_dir, "accuracy.svg", NULL);
  m->run_dir = g_strdup (run_dir);
  m->evals = g_array_new (FALSE, FALSE, sizeof (GptdTrainEval));
  m->steps = g_array_new (FALSE, FALSE, sizeof (GptdTrainPlotStep));
  m->metrics = start_file (m->metrics_path, metrics_header, resume, 8 + n_extra,
                           keep_steps, collect_step, m->steps, error);
  if (m->metrics == NULL)
    return NULL;
  m->eval = start_file (m->eval_path, eval_header, resume, 5 + n_extra, keep_steps,
                        collect_eval, m->evals, error);
  if (m->eval == NULL)
    return NULL;
  return g_steal_pointer (&m);
}

void
gptd__train_metrics_free (GptdTrainMetrics *m)
{
  if (m == NULL)
    return;
  if (m->metrics)
    fclose (m->metrics);
  if (m->eval)
    fclose (m->eval);
  if (m->evals)
    g_array_free (m->evals, TRUE);
  if (m->steps)
    g_array_free (m->steps, TRUE);
  g_free (m->run_dir);
  g_free (m->metrics_path);
  g_free (m->eval_path);
  g_free (m->plot_path);
  g_free (m->acc_plot_path);
  g_free (m);
}

static gboolean
write_line (FILE *f, const char *path, const char *line, GError **error)
{
  if (fputs (line, f) < 0 || fflush (f) != 0)
    {
      int e = errno;
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO, "Cannot write %s: %s",
                   path, g_strerror (e));
      return FALSE;
    }
  return TRUE;
}

gboolean
gptd__train_metrics_append (GptdTrainMetrics *m, const GptdTrainMetricsRow *row,
                            GError **error)
{
  char tl[32], vl[32], lr[32], tps[32], el[32];
  gptd__train_format_value (tl, sizeof tl, row->train_loss);
  gptd__train_format_value (vl, sizeof vl, row->val_loss);
  gptd__train_format_value (lr, sizeof lr, row->lr);
  if (isnan (row->tokens_per_s) || row->tokens_per_s < 0)
    tps[0] = '\0';
  else
    g_snprintf (tps, sizeof tps, "%.1f", row->tokens_per_s);
  if (isnan (row->elapsed_s))
    el[0] = '\0';
  else
    g_snprintf (el, sizeof el, "%.3f", row->elapsed_s);
  char ta[32] = "", va[32] = "";
  if (m->accuracy)
    {
      gptd__train_format_value (ta, sizeof ta, row->train_acc);
      gptd__train_format_value (va, sizeof va, row->val_acc);
    }
  g_autofree char *line = g_strdup_printf ("%" G_GINT64_FORMAT ",%u,%" G_GUINT64_FORMAT
                                           ",%s,%s,%s,%s,%s%s%s%s%s\n", row->step,
                                           row->epoch + 1, row->tokens_seen, tl, vl, lr, tps,
                                           el, m->accuracy ? "," : "", ta,
                                           m->accuracy ? "," : "", va);
  GptdTrainPlotStep p = { row->tokens_seen, row->epoch, row->train_loss };
  g_array_append_val (m->steps, p);
  return write_line (m->metrics, m->metrics_path, line, error);
}

gboolean
gptd__train_metrics_add_eval (GptdTrainMetrics *m, const GptdTrainEval *eval,
                              GError **error)
{
  char tl[32], vl[32];
  gptd__train_format_value (tl, sizeof tl, eval->train_loss);
  gptd__train_format_value (vl, sizeof vl, eval->val_loss);
  char ta[32] = "", va[32] = "";
  if (m->accuracy)
    {
      gptd__train_format_value (ta, sizeof ta, eval->train_acc);
      gptd__train_format_value (va, sizeof va, eval->val_acc);
    }
  g_autofree char *line = g_strdup_printf ("%" G_GINT64_FORMAT ",%u,%" G_GUINT64_FORMAT
                                           ",%s,%s%s%s%s%s\n", eval->step, eval->epoch + 1,
                                           eval->tokens_seen, tl, vl,
                                           m->accuracy ? "," : "", ta,
                                           m->accuracy ? "," : "", va);
  g_array_append_val (m->evals, *eval);
  return write_line (m->eval, m->eval_path, line, error);
}

const GptdTrainEval *
gptd__train_metrics_get_evals (GptdTrainMetrics *m, guint *n_evals)
{
  *n_evals = m->evals->len;
  return (const GptdTrainEval *) m->evals->data;
}

/* index.html: the run's plots and files on one page, to open in a browser. */
static char *
index_html (GptdTrainMetrics *m)
{
  g_autofree char *name = g_path_get_basename (m->run_dir);
  g_autofree char *esc = g_markup_escape_text (name, -1);
  GString *s = g_string_new (NULL);
  g_string_append_printf (s, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
                          "<meta charset=\"utf-8\">\n<title>%s</title>\n"
                          "<style>body{font-family:sans-serif;margin:2em}"
                          "img{max-width:100%%;display:block;margin:1em 0}</style>\n"
                          "</head>\n<body>\n<h1>%s</h1>\n", esc, esc);
  if (m->evals->len > 0)
    {
      const GptdTrainEval *e = &g_array_index (m->evals, GptdTrainEval, m->evals->len - 1);
      char tl[32], vl[32];
      gptd__train_format_value (tl, sizeof tl, e->train_loss);
      gptd__train_format_value (vl, sizeof vl, e->val_loss);
      g_string_append_printf (s, "<p>Last evaluation: step %" G_GINT64_FORMAT ", epoch %u, "
                              "training loss %s, validation loss %s.</p>\n", e->step,
                              e->epoch + 1, *tl ? tl : "-", *vl ? vl : "-");
    }
  g_string_append (s, "<img src=\"loss.svg\" alt=\"training and validation loss\">\n");
  if (m->accuracy)
    g_string_append (s, "<img src=\"accuracy.svg\" alt=\"training and validation "
                        "accuracy\">\n");
  g_string_append (s, "<ul>\n");
  const char *files[] = { "metrics.csv", "eval.csv", "samples.jsonl", "accuracy.json",
                          "events.jsonl", "pipeline.pipeline", "checkpoint" };
  for (gsize i = 0; i < G_N_ELEMENTS (files); i++)
    {
      g_autofree char *path = g_build_filename (m->run_dir, files[i], NULL);
      if (g_file_test (path, G_FILE_TEST_EXISTS))
        g_string_append_printf (s, "<li><a href=\"%s\">%s</a></li>\n", files[i], files[i]);
    }
  g_string_append (s, "</ul>\n</body>\n</html>\n");
  return g_string_free (s, FALSE);
}

gboolean
gptd__train_metrics_write_plot (GptdTrainMetrics *m, GError **error)
{
  g_autofree char *svg = gptd__train_plot_svg ((const GptdTrainPlotStep *) m->steps->data,
                                               m->steps->len,
                                               (const GptdTrainEval *) m->evals->data,
                                               m->evals->len, NULL, NULL);
  if (!gptd_atomic_file_set_contents (m->plot_path, svg, strlen (svg), error))
    return FALSE;
  if (m->accuracy)
    {
      /* The same plot of the accuracies (measured at evaluations only). */
      g_autoptr (GArray) acc = g_array_sized_new (FALSE, FALSE, sizeof (GptdTrainEval),
                                                  m->evals->len);
      for (guint i = 0; i < m->evals->len; i++)
        {
          GptdTrainEval e = g_array_index (m->evals, GptdTrainEval, i);
          e.train_loss = e.train_acc;
          e.val_loss = e.val_acc;
          g_array_append_val (acc, e);
        }
      g_autofree char *acc_svg = gptd__train_plot_svg (NULL, 0, (const GptdTrainEval *) acc->data,
                                                       acc->len, "Accuracy", "accuracy");
      if (!gptd_atomic_file_set_contents (m->acc_plot_path, acc_svg, strlen (acc_svg), error))
        return FALSE;
    }
  g_autofree char *html = index_html (m);
  g_autofree char *index_path = g_build_filename (m->run_dir, "index.html", NULL);
  return gptd_atomic_file_set_contents (index_path, html, strlen (html), error);
}

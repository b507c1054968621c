/* metrics.c: metrics.csv, eval.csv and the loss plot (loss.svg) of a training run;
 * see metrics.h. The plot is SVG written by hand: two polylines over axes with
 * rounded ticks, tokens seen along the bottom and epochs along the top, as the
 * book's loss figure. */
#include "metrics.h"

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
  gboolean accuracy;
  char *acc_plot_path;
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

static void
collect_eval (char **fields, gpointer data)
{
  GArray *evals = data;
  GptdTrainEval e = {
    .step = g_ascii_strtoll (fields[0], NULL, 10),
    .epoch = (guint32) g_ascii_strtoull (fields[1], NULL, 10),
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
            gint64 keep_steps, GArray *evals, GError **error)
{
  g_autoptr (GString) kept = NULL;
  FILE *f;

  if (resume && !filter_rows (path, header, n_fields, keep_steps,
                              evals ? collect_eval : NULL, evals, &kept, error))
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
  m->evals = g_array_new (FALSE, FALSE, sizeof (GptdTrainEval));
  m->metrics = start_file (m->metrics_path, metrics_header, resume, 8 + n_extra,
                           keep_steps, NULL, error);
  if (m->metrics == NULL)
    return NULL;
  m->eval = start_file (m->eval_path, eval_header, resume, 5 + n_extra, keep_steps,
                        m->evals, error);
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
                                           row->epoch, row->tokens_seen, tl, vl, lr, tps,
                                           el, m->accuracy ? "," : "", ta,
                                           m->accuracy ? "," : "", va);
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
                                           ",%s,%s%s%s%s%s\n", eval->step, eval->epoch,
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

gboolean
gptd__train_metrics_write_plot (GptdTrainMetrics *m, GError **error)
{
  g_autofree char *svg = gptd__train_plot_svg ((const GptdTrainEval *) m->evals->data,
                                               m->evals->len, NULL, NULL);
  if (!gptd_atomic_file_set_contents (m->plot_path, svg, strlen (svg), error))
    return FALSE;
  if (!m->accuracy)
    return TRUE;
  /* The same plot of the accuracies. */
  g_autoptr (GArray) acc = g_array_sized_new (FALSE, FALSE, sizeof (GptdTrainEval),
                                              m->evals->len);
  for (guint i = 0; i < m->evals->len; i++)
    {
      GptdTrainEval e = g_array_index (m->evals, GptdTrainEval, i);
      e.train_loss = e.train_acc;
      e.val_loss = e.val_acc;
      g_array_append_val (acc, e);
    }
  g_autofree char *acc_svg = gptd__train_plot_svg ((const GptdTrainEval *) acc->data,
                                                   acc->len, "Accuracy", "accuracy");
  return gptd_atomic_file_set_contents (m->acc_plot_path, acc_svg, strlen (acc_svg), error);
}

/* ---- The SVG plot --------------------------------------------------------------- */

#define PLOT_W 720.0
#define PLOT_H 440.0
#define MARGIN_L 70.0
#define MARGIN_R 20.0
#define MARGIN_T 56.0
#define MARGIN_B 60.0

/* A "nice" tick spacing (1, 2 or 5 times a power of ten) for about @n ticks. */
static double
nice_step (double range, int n)
{
  if (!(range > 0))
    return 1;
  double raw = range / n;
  double mag = pow (10, floor (log10 (raw)));
  double f = raw / mag;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

static void
format_tick (char *buf, gsize size, double v, double step)
{
  if (fabs (v) >= 1e6 && step >= 1e5)
    g_snprintf (buf, size, "%gM", v / 1e6);
  else if (fabs (v) >= 1e3 && step >= 100)
    g_snprintf (buf, size, "%gk", v / 1e3);
  else
    g_snprintf (buf, size, "%g", fabs (v) < step * 1e-6 ? 0.0 : v);
}

static void
polyline (GString *s, const GptdTrainEval *evals, guint n, gboolean val, double x0,
          double x1, double y0, double y1, const char *style)
{
  gboolean open = FALSE;
  for (guint i = 0; i < n; i++)
    {
      double y = val ? evals[i].val_loss : evals[i].train_loss;
      if (isnan (y) || isinf (y))
        continue;
      double px = MARGIN_L + ((double) evals[i].tokens_seen - x0) / (x1 - x0)
                               * (PLOT_W - MARGIN_L - MARGIN_R);
      double py = PLOT_H - MARGIN_B - (y - y0) / (y1 - y0) * (PLOT_H - MARGIN_T - MARGIN_B);
      if (!open)
        {
          g_string_append_printf (s, "  <polyline fill=\"none\" %s points=\"", style);
          open = TRUE;
        }
      g_string_append_printf (s, "%.1f,%.1f ", px, py);
    }
  if (open)
    g_string_append (s, "\"/>\n");
}

char *
gptd__train_plot_svg (const GptdTrainEval *evals, guint n, const char *title,
                      const char *quantity)
{
  GString *s = g_string_new (NULL);
  if (quantity == NULL)
    quantity = "loss";
  g_autofree char *axis = g_strdup (quantity);
  axis[0] = g_ascii_toupper (axis[0]);
  double x0 = 0, x1 = 1, y0 = INFINITY, y1 = -INFINITY;

  for (guint i = 0; i < n; i++)
    {
      x1 = MAX (x1, (double) evals[i].tokens_seen);
      double v[2] = { evals[i].train_loss, evals[i].val_loss };
      for (int k = 0; k < 2; k++)
        if (!isnan (v[k]) && !isinf (v[k]))
          {
            y0 = MIN (y0, v[k]);
            y1 = MAX (y1, v[k]);
          }
    }
  if (!(y0 <= y1))
    {
      y0 = 0;
      y1 = 1;
    }
  double ystep = nice_step (y1 - y0 > 0 ? y1 - y0 : 1, 6);
  y0 = floor (y0 / ystep) * ystep;
  y1 = ceil (y1 / ystep) * ystep;
  if (y1 <= y0)
    y1 = y0 + ystep;
  double xstep = nice_step (x1 - x0, 6);
  x1 = ceil (x1 / xstep) * xstep;

  double left = MARGIN_L, right = PLOT_W - MARGIN_R;
  double top = MARGIN_T, bottom = PLOT_H - MARGIN_B;

  g_string_append_printf (s,
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
    "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
    "  <rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
    PLOT_W, PLOT_H, PLOT_W, PLOT_H);
  if (title)
    {
      g_autofree char *esc = g_markup_escape_text (title, -1);
      g_string_append_printf (s, "  <text x=\"%.1f\" y=\"18\" text-anchor=\"middle\" "
                              "font-size=\"14\">%s</text>\n", PLOT_W / 2, esc);
    }

  /* Grid and ticks. */
  for (double y = y0; y <= y1 + ystep * 1e-6; y += ystep)
    {
      double py = bottom - (y - y0) / (y1 - y0) * (bottom - top);
      char lab[32];
      format_tick (lab, sizeof lab, y, ystep);
      g_string_append_printf (s,
        "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n"
        "  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
        left, py, right, py, left - 6, py + 4, lab);
    }
  for (double x = x0; x <= x1 + xstep * 1e-6; x += xstep)
    {
      double px = left + (x - x0) / (x1 - x0) * (right - left);
      char lab[32];
      format_tick (lab, sizeof lab, x, xstep);
      g_string_append_printf (s,
        "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n"
        "  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
        px, top, px, bottom, px, bottom + 18, lab);
    }
  /* Epochs along the top: a tick where each epoch's first evaluation falls. */
  guint32 last_epoch = G_MAXUINT32;
  for (guint i = 0; i < n; i++)
    if (evals[i].epoch != last_epoch)
      {
        last_epoch = evals[i].epoch;
        double px = left + ((double) evals[i].tokens_seen - x0) / (x1 - x0) * (right - left);
        g_string_append_printf (s,
          "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n"
          "  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%u</text>\n",
          px, top, px, top - 5, px, top - 9, evals[i].epoch + 1);
      }
  g_string_append_printf (s,
    "  <rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
    "stroke=\"black\"/>\n"
    "  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">Tokens seen</text>\n"
    "  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">Epochs</text>\n"
    "  <text transform=\"translate(18 %.1f) rotate(-90)\" text-anchor=\"middle\">%s</text>\n",
    left, top, right - left, bottom - top, (left + right) / 2, PLOT_H - 16,
    (left + right) / 2, top - 28, (top + bottom) / 2, axis);

  polyline (s, evals, n, FALSE, x0, x1, y0, y1,
            "stroke=\"#1f77b4\" stroke-width=\"2\"");
  polyline (s, evals, n, TRUE, x0, x1, y0, y1,
            "stroke=\"#ff7f0e\" stroke-width=\"2\" stroke-dasharray=\"8 3 2 3\"");

  /* Legend, top right. */
  g_string_append_printf (s,
    "  <g transform=\"translate(%.1f %.1f)\">\n"
    "    <rect x=\"0\" y=\"0\" width=\"160\" height=\"44\" fill=\"white\" stroke=\"#c0c0c0\"/>\n"
    "    <line x1=\"8\" y1=\"14\" x2=\"36\" y2=\"14\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n"
    "    <text x=\"42\" y=\"18\">Training %s</text>\n"
    "    <line x1=\"8\" y1=\"32\" x2=\"36\" y2=\"32\" stroke=\"#ff7f0e\" stroke-width=\"2\" "
    "stroke-dasharray=\"8 3 2 3\"/>\n"
    "    <text x=\"42\" y=\"36\">Validation %s</text>\n"
    "  </g>\n"
    "</svg>\n",
    right - 170, top + 10, quantity, quantity);
  return g_string_free (s, FALSE);
}

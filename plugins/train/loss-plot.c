/* loss-plot.c: the SVG plots of a training run; see loss-plot.h. */
#include "loss-plot.h"

#include <math.h>
#include <string.h>

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

/* The frame the points are drawn in. */
typedef struct {
  double x0, x1, y0, y1;
  double left, right, top, bottom;
} Frame;

static double
px_of (const Frame *f, double x)
{
  return f->left + (x - f->x0) / (f->x1 - f->x0) * (f->right - f->left);
}

static double
py_of (const Frame *f, double y)
{
  return f->bottom - (y - f->y0) / (f->y1 - f->y0) * (f->bottom - f->top);
}

/* A polyline through (xs[i], ys[i]), skipping non-finite values; with @markers, a
 * small circle at each point too. */
static void
polyline (GString *s, const Frame *f, const double *xs, const double *ys, guint n,
          const char *style, const char *marker_color)
{
  gboolean open = FALSE;
  for (guint i = 0; i < n; i++)
    {
      if (!isfinite (ys[i]))
        continue;
      if (!open)
        {
          g_string_append_printf (s, "  <polyline fill=\"none\" %s points=\"", style);
          open = TRUE;
        }
      g_string_append_printf (s, "%.1f,%.1f ", px_of (f, xs[i]), py_of (f, ys[i]));
    }
  if (open)
    g_string_append (s, "\"/>\n");
  for (guint i = 0; marker_color && i < n; i++)
    if (isfinite (ys[i]))
      g_string_append_printf (s, "  <circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>\n",
                              px_of (f, xs[i]), py_of (f, ys[i]), marker_color);
}

/* The moving average of @v over a centred window of @w values (NaNs left out). */
static void
moving_average (const double *v, guint n, guint w, double *out)
{
  guint half = w / 2;
  for (guint i = 0; i < n; i++)
    {
      guint a = i >= half ? i - half : 0, b = MIN (n - 1, i + half);
      double sum = 0;
      guint count = 0;
      for (guint k = a; k <= b; k++)
        if (isfinite (v[k]))
          {
            sum += v[k];
            count++;
          }
      out[i] = count ? sum / count : NAN;
    }
}

char *
gptd__train_plot_svg (const GptdTrainPlotStep *steps, guint n_steps,
                      const GptdTrainEval *evals, guint n_evals, const char *title,
                      const char *quantity)
{
  GString *s = g_string_new (NULL);
  if (quantity == NULL)
    quantity = "loss";
  g_autofree char *axis = g_strdup (quantity);
  axis[0] = g_ascii_toupper (axis[0]);
  Frame f = { .x0 = 0, .x1 = 1, .y0 = INFINITY, .y1 = -INFINITY };

  g_autofree double *sx = g_new (double, MAX (n_steps, 1));
  g_autofree double *sy = g_new (double, MAX (n_steps, 1));
  g_autofree double *smooth = g_new (double, MAX (n_steps, 1));
  for (guint i = 0; i < n_steps; i++)
    {
      sx[i] = (double) steps[i].tokens_seen;
      sy[i] = steps[i].value;
    }
  moving_average (sy, n_steps, MAX (1u, n_steps / 50) | 1u, smooth);
  g_autofree double *ex = g_new (double, MAX (n_evals, 1));
  g_autofree double *et = g_new (double, MAX (n_evals, 1));
  g_autofree double *ev = g_new (double, MAX (n_evals, 1));
  for (guint i = 0; i < n_evals; i++)
    {
      ex[i] = (double) evals[i].tokens_seen;
      et[i] = evals[i].train_loss;
      ev[i] = evals[i].val_loss;
    }

  /* The y range covers the evaluations and the smoothed curve (a single noisy step
   * does not squash the plot). */
  for (guint i = 0; i < n_steps; i++)
    {
      f.x1 = MAX (f.x1, sx[i]);
      if (isfinite (smooth[i]))
        f.y0 = MIN (f.y0, smooth[i]), f.y1 = MAX (f.y1, smooth[i]);
    }
  for (guint i = 0; i < n_evals; i++)
    {
      f.x1 = MAX (f.x1, ex[i]);
      double v[2] = { et[i], ev[i] };
      for (int k = 0; k < 2; k++)
        if (isfinite (v[k]))
          f.y0 = MIN (f.y0, v[k]), f.y1 = MAX (f.y1, v[k]);
    }
  if (!(f.y0 <= f.y1))
    {
      f.y0 = 0;
      f.y1 = 1;
    }
  double ystep = nice_step (f.y1 - f.y0 > 0 ? f.y1 - f.y0 : 1, 6);
  f.y0 = floor (f.y0 / ystep) * ystep;
  f.y1 = ceil (f.y1 / ystep) * ystep;
  if (f.y1 <= f.y0)
    f.y1 = f.y0 + ystep;
  double xstep = nice_step (f.x1 - f.x0, 6);
  f.x1 = ceil (f.x1 / xstep) * xstep;
  f.left = MARGIN_L;
  f.right = PLOT_W - MARGIN_R;
  f.top = MARGIN_T;
  f.bottom = PLOT_H - MARGIN_B;

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
  for (double y = f.y0; y <= f.y1 + ystep * 1e-6; y += ystep)
    {
      double py = py_of (&f, y);
      char lab[32];
      format_tick (lab, sizeof lab, y, ystep);
      g_string_append_printf (s,
        "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n"
        "  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
        f.left, py, f.right, py, f.left - 6, py + 4, lab);
    }
  for (double x = f.x0; x <= f.x1 + xstep * 1e-6; x += xstep)
    {
      double px = px_of (&f, x);
      char lab[32];
      format_tick (lab, sizeof lab, x, xstep);
      g_string_append_printf (s,
        "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n"
        "  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
        px, f.top, px, f.bottom, px, f.bottom + 18, lab);
    }
  /* Epochs along the top: a tick where each epoch starts (its first step, or its
   * first evaluation when there are no steps), labelled 1, 2, ... as the logs count;
   * with many epochs, only some are labelled. */
  guint n_marks = n_steps ? n_steps : n_evals;
  guint32 last_epoch = G_MAXUINT32, n_epochs = 0;
  for (guint i = 0; i < n_marks; i++)
    {
      guint32 e = n_steps ? steps[i].epoch : evals[i].epoch;
      if (e != last_epoch)
        n_epochs++, last_epoch = e;
    }
  guint label_every = MAX (1u, (guint) nice_step (n_epochs, 10));
  last_epoch = G_MAXUINT32;
  for (guint i = 0; i < n_marks; i++)
    {
      guint32 e = n_steps ? steps[i].epoch : evals[i].epoch;
      if (e == last_epoch)
        continue;
      last_epoch = e;
      /* A step's point is where it ended; the epoch starts where the step began. */
      double x = n_steps ? (i > 0 ? sx[i - 1] : 0) : ex[i];
      double px = px_of (&f, x);
      g_string_append_printf (s,
        "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n",
        px, f.top, px, f.top - 5);
      if ((e + 1) % label_every == 0 || e == 0)
        g_string_append_printf (s, "  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">"
                                "%u</text>\n", px, f.top - 9, e + 1);
    }
  g_string_append_printf (s,
    "  <rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
    "stroke=\"black\"/>\n"
    "  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">Tokens seen</text>\n"
    "  <text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">Epochs</text>\n"
    "  <text transform=\"translate(18 %.1f) rotate(-90)\" text-anchor=\"middle\">%s</text>\n",
    f.left, f.top, f.right - f.left, f.bottom - f.top, (f.left + f.right) / 2, PLOT_H - 16,
    (f.left + f.right) / 2, f.top - 28, (f.top + f.bottom) / 2, axis);

  /* Per-step values, faint, then their moving average; the evaluations on top. */
  polyline (s, &f, sx, sy, n_steps, "stroke=\"#c6dbef\" stroke-width=\"1\"", NULL);
  polyline (s, &f, sx, smooth, n_steps, "stroke=\"#6baed6\" stroke-width=\"1.5\"", NULL);
  polyline (s, &f, ex, et, n_evals, "stroke=\"#1f77b4\" stroke-width=\"2\"", "#1f77b4");
  polyline (s, &f, ex, ev, n_evals,
            "stroke=\"#ff7f0e\" stroke-width=\"2\" stroke-dasharray=\"8 3 2 3\"", "#ff7f0e");

  /* Legend, top right. */
  double lh = n_steps ? 62 : 44;
  g_string_append_printf (s,
    "  <g transform=\"translate(%.1f %.1f)\">\n"
    "    <rect x=\"0\" y=\"0\" width=\"200\" height=\"%.0f\" fill=\"white\" stroke=\"#c0c0c0\"/>\n"
    "    <line x1=\"8\" y1=\"14\" x2=\"36\" y2=\"14\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n"
    "    <text x=\"42\" y=\"18\">Training %s</text>\n"
    "    <line x1=\"8\" y1=\"32\" x2=\"36\" y2=\"32\" stroke=\"#ff7f0e\" stroke-width=\"2\" "
    "stroke-dasharray=\"8 3 2 3\"/>\n"
    "    <text x=\"42\" y=\"36\">Validation %s</text>\n",
    f.right - 210, f.top + 10, lh, quantity, quantity);
  if (n_steps)
    g_string_append_printf (s,
      "    <line x1=\"8\" y1=\"50\" x2=\"36\" y2=\"50\" stroke=\"#6baed6\" stroke-width=\"1.5\"/>\n"
      "    <text x=\"42\" y=\"54\">Training %s, each step</text>\n", quantity);
  g_string_append (s, "  </g>\n</svg>\n");
  return g_string_free (s, FALSE);
}

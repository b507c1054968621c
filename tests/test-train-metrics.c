/* test-train-metrics.c: metrics.csv and eval.csv of a training run (header, empty
 * cells, values that read back as the same float, truncation to a checkpoint's step
 * on resume, torn lines) and the hand-written SVG loss plot (well-formed, one point
 * per evaluation on each curve). */
#include <math.h>
#include <string.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <gptd/stage.h>

#include "../plugins/train/metrics.h"

static char *
read_file (const char *dir, const char *name)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  char *text = NULL;
  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  return text;
}

static void
remove_dir (const char *dir)
{
  const char *names[] = { "metrics.csv", "eval.csv", "loss.svg", NULL };
  for (int i = 0; names[i]; i++)
    {
      g_autofree char *p = g_build_filename (dir, names[i], NULL);
      g_unlink (p);
    }
  g_rmdir (dir);
}

static void
append_steps (GptdTrainMetrics *m, gint64 from, gint64 to)
{
  g_autoptr (GError) error = NULL;
  for (gint64 s = from; s < to; s++)
    {
      GptdTrainMetricsRow row = {
        .step = s, .epoch = (guint32) (s / 4), .tokens_seen = (guint64) (s + 1) * 512,
        .train_loss = 10.0f / (1 + s) + 0.1234567f, .val_loss = NAN,
        .lr = 4e-4, .tokens_per_s = 1234.56, .elapsed_s = 0.5 * (s + 1),
      };
      if (s % 5 == 0)
        {
          GptdTrainEval e = { s, row.epoch, row.tokens_seen, row.train_loss + 0.5,
                              row.train_loss + 1.0 };
          row.val_loss = e.val_loss;
          g_assert_true (gptd__train_metrics_add_eval (m, &e, &error));
          g_assert_no_error (error);
        }
      g_assert_true (gptd__train_metrics_append (m, &row, &error));
      g_assert_no_error (error);
    }
}

static void
test_csv (void)
{
  g_autofree char *dir = g_dir_make_tmp ("gptd-metrics-XXXXXX", NULL);
  g_autoptr (GError) error = NULL;

  {
    g_autoptr (GptdTrainMetrics) m = gptd__train_metrics_open (dir, FALSE, 0, &error);
    g_assert_no_error (error);
    append_steps (m, 0, 7);
  }
  g_autofree char *text = read_file (dir, "metrics.csv");
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  g_assert_cmpstr (lines[0], ==,
                   "step,epoch,tokens_seen,train_loss,val_loss,lr,tokens_per_s,elapsed_s");
  g_assert_cmpuint (g_strv_length (lines), ==, 9); /* header, 7 rows, "" */
  /* Step 1 has no validation loss: an empty cell. */
  g_auto (GStrv) f1 = g_strsplit (lines[2], ",", -1);
  g_assert_cmpuint (g_strv_length (f1), ==, 8);
  g_assert_cmpstr (f1[0], ==, "1");
  g_assert_cmpstr (f1[1], ==, "0");
  g_assert_cmpstr (f1[2], ==, "1024");
  g_assert_cmpstr (f1[4], ==, "");
  g_assert_cmpstr (f1[6], ==, "1234.6");
  g_assert_cmpstr (f1[7], ==, "1.000");
  /* The float loss reads back bit for bit. */
  float expected = 10.0f / 2 + 0.1234567f;
  float back = (float) g_ascii_strtod (f1[3], NULL);
  g_assert_cmpmem (&back, sizeof back, &expected, sizeof expected);
  /* Step 5 was evaluated. */
  g_auto (GStrv) f5 = g_strsplit (lines[6], ",", -1);
  g_assert_cmpstr (f5[0], ==, "5");
  g_assert_cmpstr (f5[4], !=, "");

  g_autofree char *evals = read_file (dir, "eval.csv");
  g_auto (GStrv) elines = g_strsplit (evals, "\n", -1);
  g_assert_cmpstr (elines[0], ==, "step,epoch,tokens_seen,train_loss,val_loss");
  g_assert_cmpuint (g_strv_length (elines), ==, 4); /* steps 0 and 5 */
  remove_dir (dir);
}

static void
test_resume_truncates (void)
{
  g_autofree char *dir = g_dir_make_tmp ("gptd-metrics-XXXXXX", NULL);
  g_autoptr (GError) error = NULL;

  {
    g_autoptr (GptdTrainMetrics) m = gptd__train_metrics_open (dir, FALSE, 0, &error);
    g_assert_no_error (error);
    append_steps (m, 0, 13);
  }
  g_autofree char *full = read_file (dir, "metrics.csv");

  /* The process dies while writing a line after step 12. */
  g_autofree char *path = g_build_filename (dir, "metrics.csv", NULL);
  g_autofree char *torn = g_strconcat (full, "13,3,7168,0.71", NULL);
  g_assert_true (g_file_set_contents (path, torn, -1, NULL));

  /* A checkpoint after 8 steps (0..7): rows 8.. go, evaluation 10 goes. */
  {
    g_autoptr (GptdTrainMetrics) m = gptd__train_metrics_open (dir, TRUE, 8, &error);
    g_assert_no_error (error);
    guint n = 0;
    const GptdTrainEval *e = gptd__train_metrics_get_evals (m, &n);
    g_assert_cmpuint (n, ==, 2);
    g_assert_cmpint (e[0].step, ==, 0);
    g_assert_cmpint (e[1].step, ==, 5);
    g_assert_cmpuint (e[1].tokens_seen, ==, 3072);
    g_assert_cmpfloat_with_epsilon (e[1].val_loss, 10.0f / 6 + 0.1234567f + 1.0, 1e-6);
    append_steps (m, 8, 13);
  }
  /* Continued from the checkpoint, the file is the uninterrupted one. */
  g_autofree char *again = read_file (dir, "metrics.csv");
  g_assert_cmpstr (again, ==, full);
  g_autofree char *evals = read_file (dir, "eval.csv");
  g_auto (GStrv) elines = g_strsplit (evals, "\n", -1);
  g_assert_cmpuint (g_strv_length (elines), ==, 5);
  remove_dir (dir);
}

static void
test_resume_bad_header (void)
{
  g_autofree char *dir = g_dir_make_tmp ("gptd-metrics-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "metrics.csv", NULL);
  g_autoptr (GError) error = NULL;

  g_assert_true (g_file_set_contents (path, "a,b\n1,2\n", -1, NULL));
  GptdTrainMetrics *m = gptd__train_metrics_open (dir, TRUE, 5, &error);
  g_assert_null (m);
  g_assert_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_IO);
  g_assert_nonnull (strstr (error->message, "metrics.csv"));
  remove_dir (dir);
}

typedef struct {
  guint polylines;
  guint points[4];
  gboolean saw_legend;
} SvgCount;

static void
svg_start (GMarkupParseContext *context, const char *element, const char **names,
           const char **values, gpointer data, GError **error)
{
  SvgCount *c = data;
  if (!g_str_equal (element, "polyline"))
    return;
  for (int i = 0; names[i]; i++)
    if (g_str_equal (names[i], "points") && c->polylines < 4)
      {
        g_autofree char *copy = g_strstrip (g_strdup (values[i]));
        g_auto (GStrv) pts = g_strsplit (copy, " ", -1);
        c->points[c->polylines] = g_strv_length (pts);
      }
  c->polylines++;
}

static void
svg_text (GMarkupParseContext *context, const char *text, gsize len, gpointer data,
          GError **error)
{
  SvgCount *c = data;
  if (g_strstr_len (text, len, "Validation loss"))
    c->saw_legend = TRUE;
}

static void
test_plot (void)
{
  GptdTrainEval evals[6];
  for (int i = 0; i < 6; i++)
    evals[i] = (GptdTrainEval) { i * 5, (guint32) i / 2, (guint64) (i * 5 + 1) * 512,
                                 9.0 - i, i == 3 ? NAN : 9.5 - i * 0.5 };
  g_autofree char *svg = gptd__train_plot_svg (evals, 6, "verdict & co", NULL);
  SvgCount c = { 0 };
  GMarkupParser parser = { svg_start, NULL, svg_text, NULL, NULL };
  g_autoptr (GMarkupParseContext) pc = g_markup_parse_context_new (&parser, 0, &c, NULL);
  g_autoptr (GError) error = NULL;
  g_assert_true (g_markup_parse_context_parse (pc, svg, -1, &error));
  g_assert_true (g_markup_parse_context_end_parse (pc, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (c.polylines, ==, 2);
  g_assert_cmpuint (c.points[0], ==, 6); /* training */
  g_assert_cmpuint (c.points[1], ==, 5); /* validation: the NaN is left out */
  g_assert_true (c.saw_legend);

  /* No evaluation yet: still a valid document. */
  g_autofree char *empty = gptd__train_plot_svg (NULL, 0, NULL, NULL);
  g_autoptr (GMarkupParseContext) pc2 = g_markup_parse_context_new (&parser, 0, &c, NULL);
  g_assert_true (g_markup_parse_context_parse (pc2, empty, -1, &error));
  g_assert_no_error (error);

  /* An accuracy plot names accuracy on its axis and in its legend, not loss. */
  g_autofree char *acc = gptd__train_plot_svg (evals, 6, "Accuracy", "accuracy");
  g_assert_nonnull (strstr (acc, ">Accuracy</text>"));
  g_assert_nonnull (strstr (acc, ">Validation accuracy</text>"));
  g_assert_null (strstr (acc, ">Loss</text>"));
  g_assert_null (strstr (acc, " loss</text>"));
  g_assert_nonnull (strstr (svg, ">Loss</text>"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/train/metrics/csv", test_csv);
  g_test_add_func ("/train/metrics/resume-truncates", test_resume_truncates);
  g_test_add_func ("/train/metrics/resume-bad-header", test_resume_bad_header);
  g_test_add_func ("/train/metrics/plot", test_plot);
  return g_test_run ();
}

/* runner-format.c: run events as text — the one-line progress display shared by
 * `gptd run` and `gptctl watch`, and plain log lines for the event log. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <gptd/runner.h>

const char *
gptd_run_state_to_string (Gptd__RunState state)
{
  switch (state)
    {
    case GPTD__RUN_STATE__RUN_STATE_QUEUED: return "queued";
    case GPTD__RUN_STATE__RUN_STATE_RUNNING: return "running";
    case GPTD__RUN_STATE__RUN_STATE_SUCCEEDED: return "succeeded";
    case GPTD__RUN_STATE__RUN_STATE_FAILED: return "failed";
    case GPTD__RUN_STATE__RUN_STATE_CANCELLED: return "cancelled";
    case GPTD__RUN_STATE__RUN_STATE_INTERRUPTED: return "interrupted";
    case GPTD__RUN_STATE__RUN_STATE_PAUSED: return "paused";
    case GPTD__RUN_STATE__RUN_STATE_UNKNOWN:
    default: return "unknown";
    }
}

static void
append_duration (GString *s, double seconds)
{
  guint64 t = (guint64) (seconds + 0.5);
  if (t >= 3600)
    g_string_append_printf (s, "%" G_GUINT64_FORMAT "h%02um", t / 3600, (guint) (t % 3600) / 60);
  else if (t >= 60)
    g_string_append_printf (s, "%um%02us", (guint) t / 60, (guint) t % 60);
  else
    g_string_append_printf (s, "%us", (guint) t);
}

static gboolean
measured (double v)
{
  return isfinite (v) && v != 0.0;
}

char *
gptd_progress_format (const Gptd__Progress *p, guint bar_width)
{
  g_return_val_if_fail (p != NULL, NULL);
  GString *s = g_string_new (p->stage && *p->stage ? p->stage : "run");
  double fraction = -1.0;
  if (p->step || p->total_steps)
    {
      g_string_append_printf (s, "  step %" G_GUINT64_FORMAT, p->step);
      if (p->total_steps)
        {
          g_string_append_printf (s, "/%" G_GUINT64_FORMAT, p->total_steps);
          fraction = (double) p->step / (double) p->total_steps;
        }
    }
  if (p->epoch || p->total_epochs)
    {
      g_string_append_printf (s, "  epoch %u", p->epoch);
      if (p->total_epochs)
        g_string_append_printf (s, "/%u", p->total_epochs);
    }
  if (p->items || p->total_items)
    {
      g_string_append_printf (s, "  %" G_GUINT64_FORMAT, p->items);
      if (p->total_items)
        {
          g_string_append_printf (s, "/%" G_GUINT64_FORMAT, p->total_items);
          if (fraction < 0)
            fraction = (double) p->items / (double) p->total_items;
        }
      if (p->unit && *p->unit)
        g_string_append_printf (s, " %s", p->unit);
    }
  if (measured (p->loss))
    g_string_append_printf (s, "  loss %.3f", p->loss);
  if (measured (p->val_loss))
    g_string_append_printf (s, "  val %.3f", p->val_loss);
  if (measured (p->lr))
    g_string_append_printf (s, "  lr %.2e", p->lr);
  if (measured (p->tokens_per_s))
    g_string_append_printf (s, "  %.0f tok/s", p->tokens_per_s);
  if (measured (p->eta_s) && p->eta_s > 0)
    {
      g_string_append (s, "  ETA ");
      append_duration (s, p->eta_s);
    }
  if (bar_width > 0 && fraction >= 0)
    {
      fraction = CLAMP (fraction, 0.0, 1.0);
      guint filled = (guint) (fraction * bar_width + 0.5);
      g_string_append (s, "  [");
      for (guint i = 0; i < bar_width; i++)
        g_string_append_c (s, i < filled ? '#' : '.');
      g_string_append_printf (s, "] %3.0f%%", fraction * 100.0);
    }
  return g_string_free (s, FALSE);
}

static const char *
level_name (Gptd__LogLevel level)
{
  switch (level)
    {
    case GPTD__LOG_LEVEL__LOG_LEVEL_DEBUG: return "debug: ";
    case GPTD__LOG_LEVEL__LOG_LEVEL_WARNING: return "warning: ";
    case GPTD__LOG_LEVEL__LOG_LEVEL_ERROR: return "error: ";
    default: return "";
    }
}

char *
gptd_event_format (const Gptd__Event *event)
{
  g_return_val_if_fail (event != NULL, NULL);
  GString *s = g_string_new (NULL);
  g_autoptr (GDateTime) dt =
    g_date_time_new_from_unix_local ((gint64) event->time);
  if (dt)
    {
      g_autofree char *t = g_date_time_format (dt, "%H:%M:%S");
      g_string_append_printf (s, "%s ", t);
    }
  switch (event->body_case)
    {
    case GPTD__EVENT__BODY_PROGRESS:
      {
        g_autofree char *line = gptd_progress_format (event->progress, 0);
        g_string_append (s, line);
        break;
      }
    case GPTD__EVENT__BODY_LOG:
      g_string_append_printf (s, "%s: %s%s", event->log->stage, level_name (event->log->level),
                              event->log->message);
      break;
    case GPTD__EVENT__BODY_STATE:
      g_string_append_printf (s, "run %s", gptd_run_state_to_string (event->state->state));
      if (event->state->stage && *event->state->stage)
        g_string_append_printf (s, ": stage %s: %s", event->state->stage, event->state->error);
      else if (event->state->error && *event->state->error)
        g_string_append_printf (s, ": %s", event->state->error);
      break;
    case GPTD__EVENT__BODY_SAMPLE:
      g_string_append_printf (s, "sample");
      if (event->sample->step)
        g_string_append_printf (s, " (step %" G_GUINT64_FORMAT ")", event->sample->step);
      g_string_append_printf (s, ": %s%s", event->sample->prompt, event->sample->text);
      break;
    case GPTD__EVENT__BODY_MODEL:
      g_string_append_printf (s, "model %s", event->model->path);
      if (event->model->step)
        g_string_append_printf (s, " (step %" G_GUINT64_FORMAT ")", event->model->step);
      break;
    case GPTD__EVENT__BODY_TEXT:
      g_string_append (s, event->text->text);
      break;
    default:
      g_string_append (s, "(empty event)");
      break;
    }
  return g_string_free (s, FALSE);
}

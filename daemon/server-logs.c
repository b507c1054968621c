/* daemon/server-logs.c: answering logs requests without blocking the loop. The
 * run's event log is read a slice at a time from an idle handle, between the
 * loop's other work, keeping only the most recent events that fit in one answer
 * frame; the answer goes out once the whole log has been read.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "server-private.h"

/* Events read per job and loop iteration. */
#define LOGS_SLICE 2000

typedef struct {
  Conn *conn;
  guint64 id;
  GptdRun *run;       /* the run read (its removal ends the job) */
  GptdRunLogReader *reader;
  GQueue tail;        /* Gptd__Event*: the latest events, oldest first */
  gsize tail_bytes;   /* their packed size, with room for framing */
} LogsJob;

static void
logs_job_free (LogsJob *job)
{
  gptd__run_log_reader_free (job->reader);
  Gptd__Event *ev;
  while ((ev = g_queue_pop_head (&job->tail)) != NULL)
    protobuf_c_message_free_unpacked (&ev->base, NULL);
  if (job->conn != NULL)
    job->conn->n_logs_jobs--;
  g_free (job);
}

/* Sends the events kept and frees @job. */
static void
logs_job_answer (LogsJob *job)
{
  g_autofree Gptd__Event **events = g_new (Gptd__Event *, job->tail.length + 1);
  guint n = 0;
  for (GList *l = job->tail.head; l != NULL; l = l->next)
    events[n++] = l->data;
  Gptd__LogEntries entries = GPTD__LOG_ENTRIES__INIT;
  entries.events = events;
  entries.n_events = n;
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  resp.id = job->id;
  resp.body_case = GPTD__RESPONSE__BODY_LOGS;
  resp.logs = &entries;
  gptd__conn_send (job->conn, &resp);
}

/* Reads a slice of @job's log. Returns TRUE once the job is done (answered). */
static gboolean
logs_job_step (LogsJob *job)
{
  const gsize budget = GPTD_FRAME_MAX_SIZE - 1024;
  for (guint i = 0; i < LOGS_SLICE; i++)
    {
      g_autoptr (GError) error = NULL;
      Gptd__Event *ev = gptd__run_log_reader_next (job->reader, &error);
      if (error != NULL)
        {
          gptd__conn_send_error (job->conn, job->id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL, "%s",
                                 error->message);
          return TRUE;
        }
      if (ev == NULL)
        {
          logs_job_answer (job);
          return TRUE;
        }
      if (ev->body_case == GPTD__EVENT__BODY_PROGRESS)
        {
          protobuf_c_message_free_unpacked (&ev->base, NULL);
          continue;
        }
      gsize size = protobuf_c_message_get_packed_size (&ev->base) + 8;
      if (size > budget)
        {
          /* Too large to send at all: the events before it are older, dropped. */
          protobuf_c_message_free_unpacked (&ev->base, NULL);
          continue;
        }
      g_queue_push_tail (&job->tail, ev);
      job->tail_bytes += size;
      while (job->tail_bytes > budget)
        {
          Gptd__Event *old = g_queue_pop_head (&job->tail);
          job->tail_bytes -= protobuf_c_message_get_packed_size (&old->base) + 8;
          protobuf_c_message_free_unpacked (&old->base, NULL);
        }
    }
  return FALSE;
}

static void
server_on_logs_idle (uv_idle_t *idle)
{
  Server *s = idle->data;
  for (GList *l = s->logs_jobs; l != NULL;)
    {
      GList *next = l->next;
      LogsJob *job = l->data;
      if (logs_job_step (job))
        {
          s->logs_jobs = g_list_delete_link (s->logs_jobs, l);
          logs_job_free (job);
        }
      l = next;
    }
  if (s->logs_jobs == NULL)
    uv_idle_stop (&s->logs_idle);
}

void
gptd__conn_logs_start (Conn *c, guint64 id, GptdRun *run)
{
  Server *s = c->server;
  g_autoptr (GError) error = NULL;
  GptdRunLogReader *reader = gptd__run_log_reader_new (run, &error);
  if (reader == NULL)
    {
      gptd__conn_send_error (c, id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL, "%s", error->message);
      return;
    }
  LogsJob *job = g_new0 (LogsJob, 1);
  job->conn = c;
  job->id = id;
  job->run = run;
  job->reader = reader;
  g_queue_init (&job->tail);
  c->n_logs_jobs++;
  s->logs_jobs = g_list_append (s->logs_jobs, job);
  uv_idle_start (&s->logs_idle, server_on_logs_idle);
}

void
gptd__conn_forget_logs (Conn *c)
{
  Server *s = c->server;
  for (GList *l = s->logs_jobs; l != NULL;)
    {
      GList *next = l->next;
      LogsJob *job = l->data;
      if (job->conn == c)
        {
          s->logs_jobs = g_list_delete_link (s->logs_jobs, l);
          logs_job_free (job);
        }
      l = next;
    }
}

void
gptd__server_logs_detach_run (Server *s, GptdRun *run)
{
  for (GList *l = s->logs_jobs; l != NULL;)
    {
      GList *next = l->next;
      LogsJob *job = l->data;
      if (job->run == run)
        {
          gptd__conn_send_error (job->conn, job->id, GPTD__ERROR_CODE__ERROR_CODE_NOT_FOUND,
                                 "Run %s was removed while its log was read", run->id);
          s->logs_jobs = g_list_delete_link (s->logs_jobs, l);
          logs_job_free (job);
        }
      l = next;
    }
}

void
gptd__server_logs_init (Server *s)
{
  uv_idle_init (&s->loop, &s->logs_idle);
  s->logs_idle.data = s;
}

void
gptd__server_logs_close (Server *s)
{
  g_list_free_full (g_steal_pointer (&s->logs_jobs), (GDestroyNotify) logs_job_free);
  uv_close ((uv_handle_t *) &s->logs_idle, NULL);
}

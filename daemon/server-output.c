/* daemon/server-output.c: answering output requests: a run's output.log (what
 * its worker wrote to stdout and stderr) streamed in chunks without blocking
 * the loop. The file is read from an idle handle a chunk at a time while the
 * connection's queue has room, up to its end as it is when reached; each chunk
 * is one answer, the last one has end set.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "server-private.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bytes per answer: well under the frame limit. */
#define OUTPUT_CHUNK (64 * 1024)

typedef struct {
  Conn *conn;
  guint64 id;
  GptdRun *run;   /* the run read (its removal ends the job) */
  int fd;
} OutputJob;

static void
output_job_free (OutputJob *job)
{
  if (job->fd >= 0)
    close (job->fd);
  if (job->conn != NULL)
    job->conn->n_output_jobs--;
  g_free (job);
}

static void
output_job_send (OutputJob *job, const void *data, gsize size, gboolean end)
{
  Gptd__OutputChunk chunk = GPTD__OUTPUT_CHUNK__INIT;
  chunk.data.data = (uint8_t *) data;
  chunk.data.len = size;
  Gptd__Response resp = GPTD__RESPONSE__INIT;
  resp.id = job->id;
  resp.body_case = GPTD__RESPONSE__BODY_OUTPUT;
  resp.output = &chunk;
  resp.end = end;
  gptd__conn_send (job->conn, &resp);
}

/* Sends the next chunk of @job's file. Returns TRUE once the job is done. */
static gboolean
output_job_step (OutputJob *job)
{
  Conn *c = job->conn;
  if (c->closing || c->draining)
    return TRUE;
  if (c->queued > c->server->queue_limit / 2)
    return FALSE;  /* the client reads slowly: wait for room */
  g_autofree char *buf = g_malloc (OUTPUT_CHUNK);
  ssize_t n;
  do
    n = read (job->fd, buf, OUTPUT_CHUNK);
  while (n < 0 && errno == EINTR);
  if (n < 0)
    {
      int saved = errno;
      gptd__conn_send_error (c, job->id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL,
                             "Cannot read %s/%s: %s", job->run->dir, GPTD_RUN_OUTPUT_FILE,
                             g_strerror (saved));
      return TRUE;
    }
  output_job_send (job, buf, (gsize) n, n == 0);
  return n == 0;
}

static void
server_on_output_idle (uv_idle_t *idle)
{
  Server *s = idle->data;
  for (GList *l = s->output_jobs; l != NULL;)
    {
      GList *next = l->next;
      OutputJob *job = l->data;
      if (output_job_step (job))
        {
          s->output_jobs = g_list_delete_link (s->output_jobs, l);
          output_job_free (job);
        }
      l = next;
    }
  if (s->output_jobs == NULL)
    uv_idle_stop (&s->output_idle);
}

void
gptd__conn_output_start (Conn *c, guint64 id, GptdRun *run)
{
  Server *s = c->server;
  g_autofree char *path = g_build_filename (run->dir, GPTD_RUN_OUTPUT_FILE, NULL);
  /* The run's owner can write in its directory: a link planted there is not
   * followed, and only a plain file is read. */
  int fd = open (path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0 && errno == ENOENT)
    {
      /* Nothing written (yet): no output. */
      Gptd__OutputChunk chunk = GPTD__OUTPUT_CHUNK__INIT;
      Gptd__Response resp = GPTD__RESPONSE__INIT;
      resp.id = id;
      resp.body_case = GPTD__RESPONSE__BODY_OUTPUT;
      resp.output = &chunk;
      resp.end = TRUE;
      gptd__conn_send (c, &resp);
      return;
    }
  struct stat st;
  if (fd >= 0 && (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode)))
    {
      close (fd);
      gptd__conn_send_error (c, id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL,
                             "Run %s: %s is not a plain file; not read", run->id, path);
      return;
    }
  if (fd < 0)
    {
      int saved = errno;
      gptd__conn_send_error (c, id, GPTD__ERROR_CODE__ERROR_CODE_INTERNAL, "Cannot open %s: %s",
                             path, g_strerror (saved));
      return;
    }
  OutputJob *job = g_new0 (OutputJob, 1);
  job->conn = c;
  job->id = id;
  job->run = run;
  job->fd = fd;
  c->n_output_jobs++;
  s->output_jobs = g_list_append (s->output_jobs, job);
  uv_idle_start (&s->output_idle, server_on_output_idle);
}

void
gptd__conn_forget_output (Conn *c)
{
  Server *s = c->server;
  for (GList *l = s->output_jobs; l != NULL;)
    {
      GList *next = l->next;
      OutputJob *job = l->data;
      if (job->conn == c)
        {
          s->output_jobs = g_list_delete_link (s->output_jobs, l);
          output_job_free (job);
        }
      l = next;
    }
}

void
gptd__server_output_detach_run (Server *s, GptdRun *run)
{
  for (GList *l = s->output_jobs; l != NULL;)
    {
      GList *next = l->next;
      OutputJob *job = l->data;
      if (job->run == run)
        {
          gptd__conn_send_error (job->conn, job->id, GPTD__ERROR_CODE__ERROR_CODE_NOT_FOUND,
                                 "Run %s was removed while its output was read", run->id);
          s->output_jobs = g_list_delete_link (s->output_jobs, l);
          output_job_free (job);
        }
      l = next;
    }
}

void
gptd__server_output_init (Server *s)
{
  uv_idle_init (&s->loop, &s->output_idle);
  s->output_idle.data = s;
}

void
gptd__server_output_close (Server *s)
{
  g_list_free_full (g_steal_pointer (&s->output_jobs), (GDestroyNotify) output_job_free);
  uv_close ((uv_handle_t *) &s->output_idle, NULL);
}

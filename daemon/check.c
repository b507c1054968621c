/* daemon/check.c: checking a submitted pipeline in a child process (gptd --check)
 * with the client's rights, and the daemon's side that runs it (see check.h).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "check.h"

#include <gptd/frame.h>
#include <gptd/pipeline.h>
#include <gptd/registry.h>

#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- The child ---------------------------------------------------------------- */

static int
check_answer (int fd, Gptd__Response *resp)
{
  g_autoptr (GError) error = NULL;
  if (!gptd_frame_write_fd (fd, &resp->base, &error))
    {
      g_printerr ("gptd --check: cannot answer: %s\n", error->message);
      return 1;
    }
  return 0;
}

int
gptd__check_main (void)
{
  /* The answer goes on the real standard output; what plugins print goes to
   * stderr (the daemon's log). */
  int out = dup (1);
  if (out < 0 || dup2 (2, 1) < 0)
    return 1;
  signal (SIGPIPE, SIG_IGN);

  g_autoptr (GError) error = NULL;
  Gptd__Request *req =
    (Gptd__Request *) gptd_frame_read_fd (0, &gptd__request__descriptor, 0, &error);
  if (req == NULL)
    {
      g_printerr ("gptd --check: reading the request: %s\n", error->message);
      return 1;
    }
  const Gptd__RunRequest *rr = req->body_case == GPTD__REQUEST__BODY_RUN ? req->run
                               : req->body_case == GPTD__REQUEST__BODY_VALIDATE ? req->validate
                               : NULL;
  if (rr == NULL)
    {
      g_printerr ("gptd --check: the request is neither run nor validate\n");
      protobuf_c_message_free_unpacked (&req->base, NULL);
      return 1;
    }

  Gptd__Response resp = GPTD__RESPONSE__INIT;
  Gptd__Error err = GPTD__ERROR__INIT;
  resp.id = req->id;
  resp.body_case = GPTD__RESPONSE__BODY_VALIDATE;
  g_autoptr (GptdRegistry) registry = gptd_registry_new ();
  if (!gptd_registry_scan (registry, &error))
    {
      err.code = GPTD__ERROR_CODE__ERROR_CODE_INTERNAL;
      err.message = error->message;
      resp.error = &err;
      resp.body_case = GPTD__RESPONSE__BODY__NOT_SET;
      int status = check_answer (out, &resp);
      protobuf_c_message_free_unpacked (&req->base, NULL);
      return status;
    }
  g_auto (GStrv) settings = gptd_settings_from_proto (rr->settings, rr->n_settings);
  g_auto (GStrv) environment = gptd_settings_from_proto (rr->environment, rr->n_environment);
  if (environment == NULL)
    environment = g_new0 (char *, 1);
  g_autoptr (GPtrArray) problems = NULL;
  g_autoptr (GptdPipeline) pipeline =
    gptd_pipeline_load_data_with_env (registry, rr->pipeline ? rr->pipeline : "", -1,
                                      rr->filename && *rr->filename ? rr->filename
                                                                    : "/submitted.pipeline",
                                      (const char *const *) settings,
                                      (const char *const *) environment, &problems, &error);
  Gptd__ValidateResult *vr = gptd_validate_result_new (problems, pipeline ? NULL : error);
  if (pipeline != NULL)
    vr->name = (char *) gptd_pipeline_get_name (pipeline);
  else
    {
      err.code = GPTD__ERROR_CODE__ERROR_CODE_INVALID_PIPELINE;
      err.message = error->message;
      resp.error = &err;
    }
  resp.validate = vr;
  int status = check_answer (out, &resp);
  gptd_validate_result_free (vr);
  protobuf_c_message_free_unpacked (&req->base, NULL);
  return status;
}

/* ---- The daemon's side -------------------------------------------------------- */

typedef struct {
  gboolean as_user;
  uid_t uid;
  gid_t gid;
} CheckCreds;

/* In the child, before exec: the client's rights (async-signal-safe calls only). */
static void
check_child_setup (gpointer data)
{
  const CheckCreds *cr = data;
  if (!cr->as_user)
    return;
  if (setgroups (0, NULL) != 0 || setgid (cr->gid) != 0 || setuid (cr->uid) != 0)
    _exit (127);
}

Gptd__Response *
gptd__check_in_child (GBytes *request, gboolean as_user, guint uid, guint gid, GError **error)
{
  char *argv[] = { (char *) "/proc/self/exe", (char *) "--check", NULL };
  CheckCreds cr = { as_user, (uid_t) uid, (gid_t) gid };
  GPid pid;
  int in_fd = -1, out_fd = -1;
  if (!g_spawn_async_with_pipes ("/", argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, check_child_setup,
                                 &cr, &pid, &in_fd, &out_fd, NULL, error))
    {
      g_prefix_error (error, "Cannot start the pipeline check: ");
      return NULL;
    }
  /* The request (small next to a pipe's buffer, and the child reads it first). */
  gsize size;
  const guint8 *data = g_bytes_get_data (request, &size);
  gboolean written = TRUE;
  for (gsize off = 0; off < size;)
    {
      ssize_t n = write (in_fd, data + off, size - off);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          written = FALSE;
          break;
        }
      off += (gsize) n;
    }
  close (in_fd);

  Gptd__Response *resp = NULL;
  g_autoptr (GError) local = NULL;
  struct pollfd pfd = { .fd = out_fd, .events = POLLIN };
  int r;
  while ((r = poll (&pfd, 1, GPTD_CHECK_TIMEOUT_S * 1000)) < 0 && errno == EINTR)
    ;
  gboolean timed_out = r == 0;
  if (timed_out)
    kill (pid, SIGKILL);
  else if (written)
    resp = (Gptd__Response *) gptd_frame_read_fd (out_fd, &gptd__response__descriptor, 0,
                                                  &local);
  close (out_fd);
  int wstatus = 0;
  while (waitpid (pid, &wstatus, 0) < 0 && errno == EINTR)
    ;
  g_spawn_close_pid (pid);
  if (resp != NULL)
    return resp;
  if (timed_out)
    g_set_error (error, G_SPAWN_ERROR, G_SPAWN_ERROR_FAILED,
                 "Checking the pipeline took longer than %d s; it was stopped",
                 GPTD_CHECK_TIMEOUT_S);
  else if (WIFSIGNALED (wstatus))
    g_set_error (error, G_SPAWN_ERROR, G_SPAWN_ERROR_FAILED,
                 "Checking the pipeline crashed (signal %d, %s)", WTERMSIG (wstatus),
                 g_strsignal (WTERMSIG (wstatus)));
  else
    g_set_error (error, G_SPAWN_ERROR, G_SPAWN_ERROR_FAILED,
                 "Checking the pipeline gave no answer (exit status %d)%s%s",
                 WIFEXITED (wstatus) ? WEXITSTATUS (wstatus) : -1, local ? ": " : "",
                 local ? local->message : "");
  return NULL;
}

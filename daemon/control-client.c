/* daemon/control-client.c: the blocking client of the control socket that gptctl
 * and the HTTP gateway share (see control-client.h).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "control-client.h"

#include <gptd/frame.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

G_DEFINE_QUARK (gptd-control-error-quark, gptd__control_error)

GptdControlClient *
gptd__control_client_new (const char *socket_path)
{
  GptdControlClient *cl = g_new0 (GptdControlClient, 1);
  cl->socket_path = g_strdup (socket_path);
  cl->fd = -1;
  return cl;
}

void
gptd__control_client_free (GptdControlClient *cl)
{
  if (cl == NULL)
    return;
  if (cl->fd >= 0)
    close (cl->fd);
  g_free (cl->socket_path);
  g_free (cl);
}

gboolean
gptd__control_client_connect (GptdControlClient *cl, GError **error)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  if (strlen (cl->socket_path) >= sizeof addr.sun_path)
    {
      g_set_error (error, GPTD_CONTROL_ERROR, GPTD_CONTROL_ERROR_USAGE,
                   "the socket path %s is too long", cl->socket_path);
      return FALSE;
    }
  g_strlcpy (addr.sun_path, cl->socket_path, sizeof addr.sun_path);
  if (cl->fd >= 0)
    close (cl->fd);
  cl->fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (cl->fd < 0)
    {
      g_set_error (error, GPTD_CONTROL_ERROR, GPTD_CONTROL_ERROR_UNREACHABLE, "socket(): %s",
                   g_strerror (errno));
      return FALSE;
    }
  if (connect (cl->fd, (struct sockaddr *) &addr, sizeof addr) != 0)
    {
      int saved = errno;
      close (cl->fd);
      cl->fd = -1;
      if (saved == ENOENT || saved == ECONNREFUSED || saved == ENOTDIR)
        g_set_error (error, GPTD_CONTROL_ERROR, GPTD_CONTROL_ERROR_UNREACHABLE,
                     "gptd is not running at %s: start it with `gptd` or "
                     "`systemctl start gptd`", cl->socket_path);
      else if (saved == EACCES || saved == EPERM)
        g_set_error (error, GPTD_CONTROL_ERROR, GPTD_CONTROL_ERROR_UNREACHABLE,
                     "cannot connect to gptd at %s: %s (is your user in the socket's "
                     "group?)", cl->socket_path, g_strerror (saved));
      else
        g_set_error (error, GPTD_CONTROL_ERROR, GPTD_CONTROL_ERROR_UNREACHABLE,
                     "cannot connect to gptd at %s: %s", cl->socket_path,
                     g_strerror (saved));
      return FALSE;
    }
  return TRUE;
}

gboolean
gptd__control_client_send (GptdControlClient *cl, Gptd__Request *req, GError **error)
{
  req->id = ++cl->next_id;
  g_autoptr (GError) local = NULL;
  if (!gptd_frame_write_fd (cl->fd, &req->base, &local))
    {
      g_set_error (error, GPTD_CONTROL_ERROR, GPTD_CONTROL_ERROR_PROTOCOL,
                   "sending the request to gptd failed: %s", local->message);
      return FALSE;
    }
  return TRUE;
}

Gptd__Response *
gptd__control_client_receive (GptdControlClient *cl, GError **error)
{
  g_autoptr (GError) local = NULL;
  Gptd__Response *resp =
    (Gptd__Response *) gptd_frame_read_fd (cl->fd, &gptd__response__descriptor, 0, &local);
  if (resp == NULL)
    {
      if (g_error_matches (local, GPTD_FRAME_ERROR, GPTD_FRAME_ERROR_CLOSED))
        g_set_error (error, GPTD_CONTROL_ERROR, GPTD_CONTROL_ERROR_PROTOCOL,
                     "gptd closed the connection (is it stopping?)");
      else
        g_set_error (error, GPTD_CONTROL_ERROR, GPTD_CONTROL_ERROR_PROTOCOL,
                     "reading gptd's answer failed: %s", local->message);
    }
  return resp;
}

void
gptd__control_response_free (Gptd__Response *resp)
{
  if (resp != NULL)
    protobuf_c_message_free_unpacked (&resp->base, NULL);
}

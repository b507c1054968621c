/* daemon/control-client.h: the client side of the control protocol, shared by
 * gptctl and the HTTP gateway: connecting to the daemon's Unix socket, sending a
 * Request frame and reading Response frames, blocking
 * (docs/control-protocol.md).
 *
 * Errors are in the GPTD_CONTROL_ERROR domain; their messages name the socket
 * and say what to do. Callers that print them (gptctl) or turn them into HTTP
 * status codes (the gateway) look at the code.
 */
#pragma once

#include <glib.h>
#include <gptd.pb-c.h>

G_BEGIN_DECLS

#define GPTD_CONTROL_ERROR (gptd__control_error_quark ())
GQuark gptd__control_error_quark (void);

/* Why talking to the daemon failed. */
typedef enum {
  GPTD_CONTROL_ERROR_USAGE,        /* the socket path is too long */
  GPTD_CONTROL_ERROR_UNREACHABLE,  /* no daemon at the socket, or it cannot be used */
  GPTD_CONTROL_ERROR_PROTOCOL,     /* a write or read failed, or the daemon hung up */
} GptdControlError;

/* A connection to the daemon; fd is a blocking socket. */
typedef struct {
  char *socket_path;
  int fd;
  guint64 next_id;
} GptdControlClient;

/* A client of the daemon at @socket_path, not yet connected. */
GptdControlClient *gptd__control_client_new (const char *socket_path);
/* Closes the connection (if any) and frees @cl; NULL is ignored. */
void gptd__control_client_free (GptdControlClient *cl);

/* Connects to the daemon. Fails with UNREACHABLE ("gptd is not running at
 * SOCKET: ...") or USAGE. */
gboolean gptd__control_client_connect (GptdControlClient *cl, GError **error);
/* Sends @req with the next request id (set in @req). */
gboolean gptd__control_client_send (GptdControlClient *cl, Gptd__Request *req, GError **error);
/* Reads the next Response (free it with gptd__control_response_free()). Fails
 * with PROTOCOL, whose message says whether the daemon closed the connection. */
Gptd__Response *gptd__control_client_receive (GptdControlClient *cl, GError **error);

/* Frees a Response read by gptd__control_client_receive(); NULL is ignored. */
void gptd__control_response_free (Gptd__Response *resp);

/* Whether @resp carries an error. */
static inline gboolean
gptd__control_response_failed (const Gptd__Response *resp)
{
  return resp->error != NULL && resp->error->code != GPTD__ERROR_CODE__ERROR_CODE_NONE;
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (GptdControlClient, gptd__control_client_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Gptd__Response, gptd__control_response_free)

G_END_DECLS

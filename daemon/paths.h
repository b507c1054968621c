/* daemon/paths.h: where gptd puts its control socket and its state by default,
 * shared by the daemon and gptctl so that both agree without options.
 *
 *   socket: $GPTD_SOCKET, else /run/gptd/gptd.sock for root, else
 *           $XDG_RUNTIME_DIR/gptd/gptd.sock
 *   state:  $GPTD_STATE_DIR, else /var/lib/gptd for root, else
 *           $XDG_STATE_HOME/gptd (~/.local/state/gptd)
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* (transfer full): the default control socket path. */
char *gptd__default_socket_path (void);

/* (transfer full): the socket a client connects to by default: $GPTD_SOCKET, else
 * the user's own daemon's socket when it exists, else the system daemon's
 * (/run/gptd/gptd.sock, made by gptd.socket) when that exists, else the user's. */
char *gptd__client_socket_path (void);

/* (transfer full): the default state directory. */
char *gptd__default_state_dir (void);

G_END_DECLS

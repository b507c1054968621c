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

/* (transfer full): the default state directory. */
char *gptd__default_state_dir (void);

G_END_DECLS

/* daemon/check.h: checking a submitted pipeline in a child process, with the
 * rights of the client that submitted it.
 *
 * Loading a pipeline runs its stages' checks, which may read files the pipeline
 * names (a model's config.json, say). The daemon process opens no file a client
 * names, so it has a child do it: gptd re-executed as
 *
 *   gptd --check
 *
 * reads one gptd.Request frame (body run or validate: the RunRequest with the
 * pipeline text, its absolute file name, the settings and the client's
 * environment) on standard input, loads the plugins and the pipeline, and writes
 * one gptd.Response frame on what was standard output (stdout itself goes to
 * stderr, so that a plugin printing cannot garble it): a ValidateResult, valid
 * with the pipeline's name, or with every problem and an INVALID_PIPELINE error.
 * A root daemon starts it with the client's uid and gid.
 */
#pragma once

#include <glib.h>
#include <gptd.pb-c.h>

G_BEGIN_DECLS

/* The child's main function (`gptd --check`); returns the exit status. */
int gptd__check_main (void);

/**
 * gptd__check_in_child:
 * @request: an encoded Request frame (body run or validate)
 * @as_user: run the child with @uid and @gid (no supplementary groups)
 * @uid: the client's uid
 * @gid: the client's gid
 * @error: return location for a #GError
 *
 * Runs `gptd --check` on @request and waits for its answer (blocking: call it
 * from a thread, never the loop). A child that takes longer than
 * GPTD_CHECK_TIMEOUT_S is killed.
 *
 * Returns: (transfer full): the child's Response, or %NULL with @error set (it
 *   could not be started, died, or answered nothing)
 */
Gptd__Response *gptd__check_in_child (GBytes *request, gboolean as_user, guint uid, guint gid,
                                      GError **error);

#define GPTD_CHECK_TIMEOUT_S 60

G_END_DECLS

/* runner.c: runs a loaded pipeline — one thread per stage, bounded links of packed
 * protobuf messages between them, end-of-stream, epoch requests flowing upstream to
 * batch-forming stages, error propagation and cancellation. Also the stage-context
 * functions of stage.h that stages call (push, pull, request an epoch, report). */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

#include <gio/gio.h>
#include <gptd/runner.h>
#include "pipeline/params-private.h"
#include "pipeline/pipeline-private.h"

G_DEFINE_QUARK (gptd-stage-error-quark, gptd_stage_error)

typedef enum {
  ITEM_MESSAGE,
  ITEM_END_OF_EPOCH,
  ITEM_END_OF_STREAM,
} ItemKind;

typedef struct {
  ItemKind kind;
  const ProtobufCMessageDescriptor *desc;
  GBytes *data;                /* packed message; NULL for END_OF_STREAM */
} Item;

/* One link: a producer's output to one consumer's input. Every field is guarded by
 * the runner's lock. */
typedef struct {
  guint producer, output;
  guint consumer, input;
  gboolean epochs;             /* the producer serves epoch requests on this link */
  gboolean auto_request;       /* the runner asks for one epoch on the consumer's behalf */

  Item *ring;                  /* queue of @capacity items */
  guint capacity, head, count;
  gboolean unbounded;          /* grows instead of blocking the producer (see
                                  unbound_shared_inputs()) */
  GCond not_full, not_empty;

  gboolean consumer_closed;    /* the consumer has ended: pushes are dropped */
  gboolean producer_done;      /* end-of-stream queued (or the producer failed) */
  gboolean eos_received;       /* the consumer has pulled the end-of-stream */

  Gptd__EpochRequest *request; /* a request waiting for the producer */
  gboolean outstanding;        /* a request is being answered (until its EndOfEpoch) */
} Link;

struct _GptdStageContext {
  GptdRunner *runner;
  guint index;
  GptdPipelineStage *def;
  gpointer instance;
  gboolean created;
  GPtrArray **out_links;       /* per output: Link* */
  Link **in_links;             /* per input: Link* or NULL */
  GCond request_cond;          /* signalled when a request arrives or a consumer closes */
  Link *serving;               /* during epoch(): the link whose request is answered */
  guint64 served;              /* messages pushed for the current request */
  gboolean pushed_end_of_epoch;
  gboolean closed_push;        /* a push failed because every consumer had ended */
  GThread *thread;
};

struct _GptdRunner {
  GptdPipeline *pipeline;
  char *run_dir;
  char *run_id;
  GptdEventFunc func;
  gpointer user_data;
  gboolean resume;
  guint capacity;

  GMutex lock;                 /* links, requests, the error */
  GMutex event_lock;           /* serialises the event callback */
  guint64 seq;
  gint cancelled;              /* atomic */
  gint state;                  /* atomic Gptd__RunState */
  gboolean ran;

  GptdStageContext **ctx;
  guint n_stages;
  GPtrArray *links;            /* Link* */

  GError *error;               /* the first stage error (message without the prefix) */
  char *error_stage;
};

/* ---- Events -------------------------------------------------------------- */

static void
emit (GptdRunner *r, Gptd__Event *ev)
{
  g_mutex_lock (&r->event_lock);
  ev->run_id = r->run_id;
  ev->seq = ++r->seq;
  ev->time = (double) g_get_real_time () / G_USEC_PER_SEC;
  if (r->func)
    r->func (ev, r->user_data);
  g_mutex_unlock (&r->event_lock);
}

static void
emit_state (GptdRunner *r, Gptd__RunState state, const char *stage, const char *error)
{
  Gptd__StateChange sc = GPTD__STATE_CHANGE__INIT;
  sc.state = state;
  sc.stage = (char *) (stage ? stage : "");
  sc.error = (char *) (error ? error : "");
  Gptd__Event ev = GPTD__EVENT__INIT;
  ev.body_case = GPTD__EVENT__BODY_STATE;
  ev.state = &sc;
  emit (r, &ev);
}

static Gptd__LogLevel
log_level (GLogLevelFlags level)
{
  if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
    return GPTD__LOG_LEVEL__LOG_LEVEL_ERROR;
  if (level & G_LOG_LEVEL_WARNING)
    return GPTD__LOG_LEVEL__LOG_LEVEL_WARNING;
  if (level & G_LOG_LEVEL_MESSAGE)
    return GPTD__LOG_LEVEL__LOG_LEVEL_MESSAGE;
  if (level & G_LOG_LEVEL_INFO)
    return GPTD__LOG_LEVEL__LOG_LEVEL_INFO;
  return GPTD__LOG_LEVEL__LOG_LEVEL_DEBUG;
}

static void
emit_log (GptdRunner *r, const char *stage, GLogLevelFlags level, const char *message)
{
  Gptd__LogLine line = GPTD__LOG_LINE__INIT;
  line.stage = (char *) (stage ? stage : "");
  line.level = log_level (level);
  line.message = (char *) message;
  Gptd__Event ev = GPTD__EVENT__INIT;
  ev.body_case = GPTD__EVENT__BODY_LOG;
  ev.log = &line;
  emit (r, &ev);
}

/* ---- Cancellation and errors --------------------------------------------- */

/* Wakes every thread blocked on a link or waiting for a request. Lock held. */
static void
wake_all_locked (GptdRunner *r)
{
  for (guint i = 0; r->links && i < r->links->len; i++)
    {
      Link *l = r->links->pdata[i];
      g_cond_broadcast (&l->not_full);
      g_cond_broadcast (&l->not_empty);
    }
  for (guint i = 0; r->ctx && i < r->n_stages; i++)
    g_cond_broadcast (&r->ctx[i]->request_cond);
}

void
gptd_runner_cancel (GptdRunner *runner)
{
  g_return_if_fail (runner != NULL);
  g_mutex_lock (&runner->lock);
  g_atomic_int_set (&runner->cancelled, 1);
  wake_all_locked (runner);
  g_mutex_unlock (&runner->lock);
}

gboolean
gptd_runner_is_cancelled (GptdRunner *runner)
{
  g_return_val_if_fail (runner != NULL, FALSE);
  return g_atomic_int_get (&runner->cancelled) != 0;
}

static gboolean
set_cancelled_error (GError **error)
{
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "the run was cancelled");
  return FALSE;
}

/* Records @error (taken) as the run's failure unless the run was cancelled or has
 * failed already, then cancels the run. */
static void
fail (GptdRunner *r, GptdStageContext *ctx, GError *error)
{
  g_mutex_lock (&r->lock);
  if (r->error == NULL && !g_atomic_int_get (&r->cancelled))
    {
      r->error = error;
      r->error_stage = g_strdup (ctx->def->name);
      error = NULL;
    }
  g_atomic_int_set (&r->cancelled, 1);
  wake_all_locked (r);
  g_mutex_unlock (&r->lock);
  g_clear_error (&error);
}

/* ---- Links ---------------------------------------------------------------- */

static void
item_clear (Item *item)
{
  g_clear_pointer (&item->data, g_bytes_unref);
}

static void
link_free (gpointer data)
{
  Link *l = data;
  for (guint i = 0; i < l->count; i++)
    item_clear (&l->ring[(l->head + i) % l->capacity]);
  g_free (l->ring);
  g_cond_clear (&l->not_full);
  g_cond_clear (&l->not_empty);
  if (l->request)
    protobuf_c_message_free_unpacked (&l->request->base, NULL);
  g_free (l);
}

/* Queues @item on @l, waiting for room. Lock held. Returns FALSE when cancelled.
 * The item is dropped (and TRUE returned) when the consumer has ended. */
static gboolean
link_put_locked (GptdRunner *r, Link *l, const Item *item)
{
  while (!g_atomic_int_get (&r->cancelled) && !l->consumer_closed && !l->unbounded &&
         l->count == l->capacity)
    g_cond_wait (&l->not_full, &r->lock);
  if (g_atomic_int_get (&r->cancelled))
    return FALSE;
  if (l->consumer_closed)
    return TRUE;
  if (l->count == l->capacity)
    {
      /* An unbounded link: double the ring, its items in order from 0. */
      Item *ring = g_new0 (Item, (gsize) l->capacity * 2);
      for (guint i = 0; i < l->count; i++)
        ring[i] = l->ring[(l->head + i) % l->capacity];
      g_free (l->ring);
      l->ring = ring;
      l->head = 0;
      l->capacity *= 2;
    }
  Item *slot = &l->ring[(l->head + l->count) % l->capacity];
  slot->kind = item->kind;
  slot->desc = item->desc;
  slot->data = item->data ? g_bytes_ref (item->data) : NULL;
  l->count++;
  g_cond_signal (&l->not_empty);
  return TRUE;
}

static Gptd__EpochRequest *
request_copy (const Gptd__EpochRequest *req)
{
  Gptd__EpochRequest *c = g_new0 (Gptd__EpochRequest, 1);
  gptd__epoch_request__init (c);
  c->split = g_strdup (req->split ? req->split : "");
  c->epoch = req->epoch;
  c->seed = req->seed;
  c->shuffle = req->shuffle;
  c->start = req->start;
  c->limit = req->limit;
  return c;
}

/* ---- Stage context (stage.h) --------------------------------------------- */

const char *
gptd_stage_context_get_name (GptdStageContext *ctx)
{
  g_return_val_if_fail (ctx != NULL, NULL);
  return ctx->def->name;
}

const char *
gptd_stage_context_get_run_dir (GptdStageContext *ctx)
{
  g_return_val_if_fail (ctx != NULL, NULL);
  return ctx->runner->run_dir;
}

gboolean
gptd_stage_context_is_cancelled (GptdStageContext *ctx)
{
  g_return_val_if_fail (ctx != NULL, TRUE);
  return g_atomic_int_get (&ctx->runner->cancelled) != 0;
}

gboolean
gptd_stage_context_is_resume (GptdStageContext *ctx)
{
  g_return_val_if_fail (ctx != NULL, FALSE);
  return ctx->runner->resume;
}

gboolean
gptd_stage_push (GptdStageContext *ctx, guint output, const ProtobufCMessage *msg,
                 GError **error)
{
  g_return_val_if_fail (ctx != NULL && msg != NULL, FALSE);
  GptdRunner *r = ctx->runner;
  if (output >= ctx->def->n_outputs)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_TYPE,
                   "push on output %u, but stage type %s has %u output%s", output,
                   ctx->def->type->name, ctx->def->n_outputs,
                   ctx->def->n_outputs == 1 ? "" : "s");
      return FALSE;
    }
  const GptdPadSpec *pad = &ctx->def->type->outputs[output];
  Item item = { ITEM_MESSAGE, msg->descriptor, NULL };
  if (ctx->serving && msg->descriptor == &gptd__end_of_epoch__descriptor &&
      ctx->serving->output == output)
    item.kind = ITEM_END_OF_EPOCH;
  else if (strcmp (pad->message_type, "*") != 0 &&
           strcmp (pad->message_type, msg->descriptor->name) != 0)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_TYPE,
                   "pushed a %s on output '%s', which carries %s", msg->descriptor->name,
                   pad->name, pad->message_type);
      return FALSE;
    }
  if (g_atomic_int_get (&r->cancelled))
    return set_cancelled_error (error);

  gsize size = protobuf_c_message_get_packed_size (msg);
  guint8 *buf = g_malloc (MAX (size, 1));
  protobuf_c_message_pack (msg, buf);
  item.data = g_bytes_new_take (buf, size);

  gboolean ok = TRUE;
  g_mutex_lock (&r->lock);
  if (ctx->serving && ctx->serving->output == output)
    {
      /* A consumer that did not ask for the epoch gets no EndOfEpoch: only the
       * batches, then end-of-stream. */
      if (item.kind != ITEM_END_OF_EPOCH || !ctx->serving->auto_request)
        ok = link_put_locked (r, ctx->serving, &item);
      if (item.kind == ITEM_END_OF_EPOCH)
        ctx->pushed_end_of_epoch = TRUE;
      else
        ctx->served++;
    }
  else
    {
      GPtrArray *links = ctx->out_links[output];
      for (guint i = 0; ok && i < links->len; i++)
        ok = link_put_locked (r, links->pdata[i], &item);
    }
  /* Every consumer of every output has ended: nobody will read what we make. */
  gboolean any = FALSE, all_closed = TRUE;
  for (guint o = 0; ok && o < ctx->def->n_outputs; o++)
    for (guint i = 0; i < ctx->out_links[o]->len; i++)
      {
        Link *l = ctx->out_links[o]->pdata[i];
        any = TRUE;
        all_closed &= l->consumer_closed;
      }
  g_mutex_unlock (&r->lock);
  g_bytes_unref (item.data);

  if (!ok)
    return set_cancelled_error (error);
  if (any && all_closed)
    {
      ctx->closed_push = TRUE;
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_CLOSED,
                   "every stage reading from this one has finished");
      return FALSE;
    }
  return TRUE;
}

GptdPullResult
gptd_stage_pull (GptdStageContext *ctx, guint input, ProtobufCMessage **msg, GError **error)
{
  g_return_val_if_fail (ctx != NULL && msg != NULL, GPTD_PULL_ERROR);
  GptdRunner *r = ctx->runner;
  *msg = NULL;
  if (input >= ctx->def->n_inputs)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_TYPE,
                   "pull on input %u, but stage type %s has %u input%s", input,
                   ctx->def->type->name, ctx->def->n_inputs,
                   ctx->def->n_inputs == 1 ? "" : "s");
      return GPTD_PULL_ERROR;
    }
  Link *l = ctx->in_links[input];
  if (l == NULL)
    return GPTD_PULL_END_OF_STREAM;   /* an unlinked optional input */

  Item item = { 0 };
  g_mutex_lock (&r->lock);
  for (;;)
    {
      if (g_atomic_int_get (&r->cancelled))
        {
          g_mutex_unlock (&r->lock);
          set_cancelled_error (error);
          return GPTD_PULL_ERROR;
        }
      if (l->eos_received)
        {
          g_mutex_unlock (&r->lock);
          return GPTD_PULL_END_OF_STREAM;
        }
      if (l->count > 0)
        {
          item = l->ring[l->head];
          if (item.kind == ITEM_END_OF_STREAM)
            l->eos_received = TRUE;
          l->head = (l->head + 1) % l->capacity;
          l->count--;
          if (item.kind == ITEM_END_OF_EPOCH)
            l->outstanding = FALSE;
          g_cond_signal (&l->not_full);
          break;
        }
      if (l->epochs && !l->auto_request && !l->outstanding && l->request == NULL &&
          !l->producer_done)
        {
          g_mutex_unlock (&r->lock);
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                       "pull on input '%s' without an epoch request: its producer "
                       "sends batches only when asked (gptd_stage_request_epoch)",
                       ctx->def->type->inputs[input].name);
          return GPTD_PULL_ERROR;
        }
      g_cond_wait (&l->not_empty, &r->lock);
    }
  g_mutex_unlock (&r->lock);

  if (item.kind == ITEM_END_OF_STREAM)
    {
      item_clear (&item);
      return GPTD_PULL_END_OF_STREAM;
    }
  gsize size = 0;
  const guint8 *data = g_bytes_get_data (item.data, &size);
  *msg = protobuf_c_message_unpack (item.desc, NULL, size, data);
  item_clear (&item);
  if (*msg == NULL)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_TYPE,
                   "a malformed %s arrived on input '%s'", item.desc->name,
                   ctx->def->type->inputs[input].name);
      return GPTD_PULL_ERROR;
    }
  return item.kind == ITEM_END_OF_EPOCH ? GPTD_PULL_END_OF_EPOCH : GPTD_PULL_MESSAGE;
}

gboolean
gptd_stage_request_epoch (GptdStageContext *ctx, guint input,
                          const Gptd__EpochRequest *request, GError **error)
{
  g_return_val_if_fail (ctx != NULL && request != NULL, FALSE);
  GptdRunner *r = ctx->runner;
  Link *l = input < ctx->def->n_inputs ? ctx->in_links[input] : NULL;
  const char *pad = input < ctx->def->n_inputs ? ctx->def->type->inputs[input].name : "?";
  if (l == NULL)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "epoch request on input %u ('%s'), which is not linked", input, pad);
      return FALSE;
    }
  if (!l->epochs || l->auto_request)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "epoch request on input '%s', which is not an epochs input linked to a "
                   "stage that serves epochs", pad);
      return FALSE;
    }
  g_mutex_lock (&r->lock);
  gboolean cancelled = g_atomic_int_get (&r->cancelled);
  gboolean busy = l->outstanding;
  gboolean done = l->producer_done;
  if (!cancelled && !busy && !done)
    {
      l->request = request_copy (request);
      l->outstanding = TRUE;
      g_cond_signal (&r->ctx[l->producer]->request_cond);
    }
  g_mutex_unlock (&r->lock);
  if (cancelled)
    return set_cancelled_error (error);
  if (busy)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "epoch request on input '%s' before the previous one's EndOfEpoch", pad);
      return FALSE;
    }
  if (done)
    {
      g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                   "epoch request on input '%s', whose producer has ended", pad);
      return FALSE;
    }
  return TRUE;
}

void
gptd_stage_progress (GptdStageContext *ctx, const Gptd__Progress *progress)
{
  g_return_if_fail (ctx != NULL && progress != NULL);
  Gptd__Progress p = *progress;
  p.stage = ctx->def->name;
  Gptd__Event ev = GPTD__EVENT__INIT;
  ev.body_case = GPTD__EVENT__BODY_PROGRESS;
  ev.progress = &p;
  emit (ctx->runner, &ev);
}

void
gptd_stage_log (GptdStageContext *ctx, GLogLevelFlags level, const char *format, ...)
{
  g_return_if_fail (ctx != NULL && format != NULL);
  va_list ap;
  va_start (ap, format);
  g_autofree char *message = g_strdup_vprintf (format, ap);
  va_end (ap);
  emit_log (ctx->runner, ctx->def->name, level, message);
}

void
gptd_stage_sample (GptdStageContext *ctx, const Gptd__Sample *sample)
{
  g_return_if_fail (ctx != NULL && sample != NULL);
  Gptd__Event ev = GPTD__EVENT__INIT;
  ev.body_case = GPTD__EVENT__BODY_SAMPLE;
  ev.sample = (Gptd__Sample *) sample;
  emit (ctx->runner, &ev);
}

void
gptd_stage_text (GptdStageContext *ctx, const char *text, gboolean done)
{
  g_return_if_fail (ctx != NULL && text != NULL);
  Gptd__TextChunk chunk = GPTD__TEXT_CHUNK__INIT;
  chunk.text = (char *) text;
  chunk.done = done;
  Gptd__Event ev = GPTD__EVENT__INIT;
  ev.body_case = GPTD__EVENT__BODY_TEXT;
  ev.text = &chunk;
  emit (ctx->runner, &ev);
}

void
gptd_stage_model (GptdStageContext *ctx, const Gptd__Model *model)
{
  g_return_if_fail (ctx != NULL && model != NULL);
  Gptd__Event ev = GPTD__EVENT__INIT;
  ev.body_case = GPTD__EVENT__BODY_MODEL;
  ev.model = (Gptd__Model *) model;
  emit (ctx->runner, &ev);
}

/* ---- A stage's thread ----------------------------------------------------- */

/* Serves epoch requests until every outgoing link is finished with. */
static gboolean
serve_epochs (GptdStageContext *ctx, GError **error)
{
  GptdRunner *r = ctx->runner;
  const GptdStageType *t = ctx->def->type;
  g_mutex_lock (&r->lock);
  for (;;)
    {
      if (g_atomic_int_get (&r->cancelled))
        {
          g_mutex_unlock (&r->lock);
          return set_cancelled_error (error);
        }
      Link *next = NULL;
      gboolean all_done = TRUE;
      for (guint o = 0; o < ctx->def->n_outputs && next == NULL; o++)
        for (guint i = 0; i < ctx->out_links[o]->len; i++)
          {
            Link *l = ctx->out_links[o]->pdata[i];
            if (l->request)
              {
                next = l;
                break;
              }
            if (!l->consumer_closed && !l->producer_done)
              all_done = FALSE;
          }
      if (next == NULL && all_done)
        break;
      if (next == NULL)
        {
          g_cond_wait (&ctx->request_cond, &r->lock);
          continue;
        }
      Gptd__EpochRequest *req = g_steal_pointer (&next->request);
      ctx->serving = next;
      ctx->served = 0;
      ctx->pushed_end_of_epoch = FALSE;
      g_mutex_unlock (&r->lock);

      GError *local = NULL;
      gboolean ok = t->epoch (ctx->instance, ctx, next->output, req, &local);
      ctx->serving = NULL;
      if (ok && !ctx->pushed_end_of_epoch && !next->auto_request)
        {
          Gptd__EndOfEpoch eoe = GPTD__END_OF_EPOCH__INIT;
          eoe.split = req->split;
          eoe.epoch = req->epoch;
          eoe.batches = ctx->served;
          gsize size = protobuf_c_message_get_packed_size (&eoe.base);
          guint8 *buf = g_malloc (MAX (size, 1));
          protobuf_c_message_pack (&eoe.base, buf);
          Item item = { ITEM_END_OF_EPOCH, &gptd__end_of_epoch__descriptor,
                        g_bytes_new_take (buf, size) };
          g_mutex_lock (&r->lock);
          ok = link_put_locked (r, next, &item);
          g_mutex_unlock (&r->lock);
          g_bytes_unref (item.data);
          if (!ok)
            set_cancelled_error (&local);
        }
      protobuf_c_message_free_unpacked (&req->base, NULL);
      if (!ok)
        {
          if (local == NULL)
            g_set_error (&local, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                         "epoch() failed without saying why");
          g_propagate_error (error, local);
          return FALSE;
        }
      g_mutex_lock (&r->lock);
      if (next->auto_request && !next->producer_done)
        {
          /* The one epoch asked for on the consumer's behalf is all it gets. */
          Item eos = { ITEM_END_OF_STREAM, NULL, NULL };
          if (!link_put_locked (r, next, &eos))
            {
              g_mutex_unlock (&r->lock);
              return set_cancelled_error (error);
            }
          next->producer_done = TRUE;
        }
    }
  g_mutex_unlock (&r->lock);
  return TRUE;
}

/* Runs the stage's own work: run(), or process() over each input then finish(). */
static gboolean
stage_main (GptdStageContext *ctx, GError **error)
{
  const GptdStageType *t = ctx->def->type;
  if (t->run)
    return t->run (ctx->instance, ctx, error);
  if (t->process)
    for (guint i = 0; i < ctx->def->n_inputs; i++)
      for (;;)
        {
          ProtobufCMessage *msg = NULL;
          GptdPullResult res = gptd_stage_pull (ctx, i, &msg, error);
          if (res == GPTD_PULL_ERROR)
            return FALSE;
          if (res == GPTD_PULL_END_OF_STREAM)
            break;
          if (res == GPTD_PULL_END_OF_EPOCH)
            {
              protobuf_c_message_free_unpacked (msg, NULL);
              continue;
            }
          gboolean ok = t->process (ctx->instance, ctx, i, msg, error);
          protobuf_c_message_free_unpacked (msg, NULL);
          if (!ok)
            return FALSE;
        }
  if (t->finish)
    return t->finish (ctx->instance, ctx, error);
  return TRUE;
}

/* The stage reads no more: its producers' pushes are dropped from now on. */
static void
close_inputs (GptdStageContext *ctx)
{
  GptdRunner *r = ctx->runner;
  g_mutex_lock (&r->lock);
  for (guint i = 0; i < ctx->def->n_inputs; i++)
    {
      Link *l = ctx->in_links[i];
      if (l == NULL)
        continue;
      l->consumer_closed = TRUE;
      for (guint k = 0; k < l->count; k++)
        item_clear (&l->ring[(l->head + k) % l->capacity]);
      l->count = 0;
      g_cond_broadcast (&l->not_full);
      g_cond_broadcast (&r->ctx[l->producer]->request_cond);
    }
  g_mutex_unlock (&r->lock);
}

static gboolean
send_end_of_stream (GptdStageContext *ctx, GError **error)
{
  GptdRunner *r = ctx->runner;
  Item eos = { ITEM_END_OF_STREAM, NULL, NULL };
  gboolean ok = TRUE;
  g_mutex_lock (&r->lock);
  for (guint o = 0; ok && o < ctx->def->n_outputs; o++)
    for (guint i = 0; ok && i < ctx->out_links[o]->len; i++)
      {
        Link *l = ctx->out_links[o]->pdata[i];
        if (l->producer_done)
          continue;
        ok = link_put_locked (r, l, &eos);
        l->producer_done = TRUE;
      }
  g_mutex_unlock (&r->lock);
  return ok ? TRUE : set_cancelled_error (error);
}

static gpointer
stage_thread (gpointer data)
{
  GptdStageContext *ctx = data;
  GptdRunner *r = ctx->runner;
  GError *error = NULL;
  gboolean ok = stage_main (ctx, &error);
  close_inputs (ctx);
  if (ok && ctx->def->type->epoch)
    ok = serve_epochs (ctx, &error);
  if (!ok && ctx->closed_push && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CLOSED))
    {
      /* Nobody reads this stage's output any more: an early, clean end. */
      g_clear_error (&error);
      ok = TRUE;
    }
  if (ok)
    ok = send_end_of_stream (ctx, &error);
  if (!ok)
    {
      if (error == NULL)
        g_set_error (&error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                     "the stage failed without saying why");
      fail (r, ctx, error);
    }
  return NULL;
}

/* ---- The runner ------------------------------------------------------------ */

GptdRunner *
gptd_runner_new (GptdPipeline *pipeline, const char *run_dir, GptdEventFunc func,
                 gpointer user_data)
{
  g_return_val_if_fail (pipeline != NULL && run_dir != NULL, NULL);
  GptdRunner *r = g_new0 (GptdRunner, 1);
  r->pipeline = pipeline;
  r->run_dir = g_strdup (run_dir);
  r->run_id = g_strdup ("");
  r->func = func;
  r->user_data = user_data;
  r->capacity = GPTD_RUNNER_DEFAULT_LINK_CAPACITY;
  r->state = GPTD__RUN_STATE__RUN_STATE_UNKNOWN;
  g_mutex_init (&r->lock);
  g_mutex_init (&r->event_lock);
  return r;
}

void
gptd_runner_set_run_id (GptdRunner *runner, const char *run_id)
{
  g_return_if_fail (runner != NULL && !runner->ran);
  g_free (runner->run_id);
  runner->run_id = g_strdup (run_id ? run_id : "");
}

void
gptd_runner_set_resume (GptdRunner *runner, gboolean resume)
{
  g_return_if_fail (runner != NULL && !runner->ran);
  runner->resume = resume;
}

void
gptd_runner_set_link_capacity (GptdRunner *runner, guint capacity)
{
  g_return_if_fail (runner != NULL && !runner->ran && capacity >= 1);
  runner->capacity = capacity;
}

/* Marks @s and every stage upstream of it in @seen. */
static void
mark_upstream (GptdRunner *r, guint s, gboolean *seen)
{
  if (seen[s])
    return;
  seen[s] = TRUE;
  GptdStageContext *ctx = r->ctx[s];
  for (guint i = 0; i < ctx->def->n_inputs; i++)
    if (ctx->in_links[i] != NULL)
      mark_upstream (r, ctx->in_links[i]->producer, seen);
}

/* A process-style stage reads all of its input 0, then all of input 1, and so
 * on.  When two of its inputs come from the same upstream stage (a diamond:
 * one source fanned out, the branches joined again), that stage's pushes to
 * the later input would fill its bounded link while nobody reads it, the
 * stage would block, and the earlier input would never end: a deadlock.  The
 * links of such later inputs are therefore unbounded: they hold what arrives
 * until the stage reaches them (the memory of that input's messages). */
static void
unbound_shared_inputs (GptdRunner *r)
{
  g_autofree gboolean *before = g_new (gboolean, r->n_stages);
  g_autofree gboolean *mine = g_new (gboolean, r->n_stages);
  for (guint s = 0; s < r->n_stages; s++)
    {
      GptdStageContext *ctx = r->ctx[s];
      if (ctx->def->type->run != NULL || ctx->def->n_inputs < 2)
        continue;
      memset (before, 0, sizeof (gboolean) * r->n_stages);
      for (guint i = 0; i < ctx->def->n_inputs; i++)
        {
          Link *l = ctx->in_links[i];
          if (l == NULL)
            continue;
          memset (mine, 0, sizeof (gboolean) * r->n_stages);
          mark_upstream (r, l->producer, mine);
          for (guint u = 0; u < r->n_stages && !l->unbounded; u++)
            l->unbounded = mine[u] && before[u];
          for (guint u = 0; u < r->n_stages; u++)
            before[u] = before[u] || mine[u];
        }
    }
}

static void
build_graph (GptdRunner *r)
{
  GPtrArray *stages = r->pipeline->stages;
  r->n_stages = stages->len;
  r->ctx = g_new0 (GptdStageContext *, r->n_stages);
  r->links = g_ptr_array_new_with_free_func (link_free);
  for (guint s = 0; s < r->n_stages; s++)
    {
      GptdStageContext *ctx = g_new0 (GptdStageContext, 1);
      ctx->runner = r;
      ctx->index = s;
      ctx->def = stages->pdata[s];
      ctx->out_links = g_new0 (GPtrArray *, MAX (ctx->def->n_outputs, 1));
      for (guint o = 0; o < ctx->def->n_outputs; o++)
        ctx->out_links[o] = g_ptr_array_new ();
      ctx->in_links = g_new0 (Link *, MAX (ctx->def->n_inputs, 1));
      g_cond_init (&ctx->request_cond);
      r->ctx[s] = ctx;
    }
  for (guint s = 0; s < r->n_stages; s++)
    {
      GptdStageContext *ctx = r->ctx[s];
      for (guint i = 0; i < ctx->def->n_inputs; i++)
        {
          int p = ctx->def->input_stage[i];
          if (p < 0)
            continue;
          GptdStageContext *prod = r->ctx[p];
          Link *l = g_new0 (Link, 1);
          l->producer = (guint) p;
          l->output = ctx->def->input_output[i];
          l->consumer = s;
          l->input = i;
          l->capacity = r->capacity;
          l->ring = g_new0 (Item, l->capacity);
          g_cond_init (&l->not_full);
          g_cond_init (&l->not_empty);
          l->epochs = prod->def->type->epoch != NULL;
          if (l->epochs &&
              (!(ctx->def->type->inputs[i].flags & GPTD_PAD_EPOCHS) || ctx->def->type->run == NULL))
            {
              /* A consumer that does not ask for epochs gets one: every split, in order. */
              Gptd__EpochRequest req = GPTD__EPOCH_REQUEST__INIT;
              l->auto_request = TRUE;
              l->request = request_copy (&req);
              l->outstanding = TRUE;
            }
          g_ptr_array_add (r->links, l);
          g_ptr_array_add (prod->out_links[l->output], l);
          ctx->in_links[i] = l;
        }
    }
  unbound_shared_inputs (r);
}

static void
destroy_instances (GptdRunner *r)
{
  for (guint s = r->n_stages; s-- > 0;)
    {
      GptdStageContext *ctx = r->ctx[s];
      if (ctx->created && ctx->def->type->destroy)
        ctx->def->type->destroy (ctx->instance);
      ctx->created = FALSE;
      ctx->instance = NULL;
    }
}

gboolean
gptd_runner_run (GptdRunner *runner, GError **error)
{
  g_return_val_if_fail (runner != NULL, FALSE);
  g_return_val_if_fail (!runner->ran, FALSE);
  GptdRunner *r = runner;
  r->ran = TRUE;

  g_mutex_lock (&r->lock);
  build_graph (r);
  g_mutex_unlock (&r->lock);

  /* Create every instance before any thread starts. */
  for (guint s = 0; s < r->n_stages && !g_atomic_int_get (&r->cancelled); s++)
    {
      GptdStageContext *ctx = r->ctx[s];
      GError *local = NULL;
      ctx->instance = ctx->def->type->create (ctx, ctx->def->params, &local);
      if (ctx->instance == NULL)
        {
          if (local == NULL)
            g_set_error (&local, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                         "could not be created (no reason given)");
          fail (r, ctx, local);
          break;
        }
      ctx->created = TRUE;
    }

  if (!g_atomic_int_get (&r->cancelled))
    {
      g_atomic_int_set (&r->state, GPTD__RUN_STATE__RUN_STATE_RUNNING);
      emit_state (r, GPTD__RUN_STATE__RUN_STATE_RUNNING, NULL, NULL);
      for (guint s = 0; s < r->n_stages; s++)
        {
          g_autofree char *name = g_strdup_printf ("stage-%s", r->ctx[s]->def->name);
          r->ctx[s]->thread = g_thread_new (name, stage_thread, r->ctx[s]);
        }
      for (guint s = 0; s < r->n_stages; s++)
        g_thread_join (g_steal_pointer (&r->ctx[s]->thread));
    }
  destroy_instances (r);

  if (r->error)
    {
      g_atomic_int_set (&r->state, GPTD__RUN_STATE__RUN_STATE_FAILED);
      emit_state (r, GPTD__RUN_STATE__RUN_STATE_FAILED, r->error_stage, r->error->message);
      g_set_error (error, r->error->domain, r->error->code, "stage %s: %s", r->error_stage,
                   r->error->message);
      return FALSE;
    }
  if (g_atomic_int_get (&r->cancelled))
    {
      g_atomic_int_set (&r->state, GPTD__RUN_STATE__RUN_STATE_CANCELLED);
      emit_state (r, GPTD__RUN_STATE__RUN_STATE_CANCELLED, NULL, NULL);
      return set_cancelled_error (error);
    }
  g_atomic_int_set (&r->state, GPTD__RUN_STATE__RUN_STATE_SUCCEEDED);
  emit_state (r, GPTD__RUN_STATE__RUN_STATE_SUCCEEDED, NULL, NULL);
  return TRUE;
}

void
gptd_runner_free (GptdRunner *runner)
{
  if (runner == NULL)
    return;
  GptdRunner *r = runner;
  for (guint s = 0; s < r->n_stages; s++)
    {
      GptdStageContext *ctx = r->ctx[s];
      for (guint o = 0; o < ctx->def->n_outputs; o++)
        g_ptr_array_unref (ctx->out_links[o]);
      g_free (ctx->out_links);
      g_free (ctx->in_links);
      g_cond_clear (&ctx->request_cond);
      g_free (ctx);
    }
  g_free (r->ctx);
  if (r->links)
    g_ptr_array_unref (r->links);
  g_clear_error (&r->error);
  g_free (r->error_stage);
  g_free (r->run_dir);
  g_free (r->run_id);
  g_mutex_clear (&r->lock);
  g_mutex_clear (&r->event_lock);
  g_free (r);
}

Gptd__RunState
gptd_runner_get_state (GptdRunner *runner)
{
  g_return_val_if_fail (runner != NULL, GPTD__RUN_STATE__RUN_STATE_UNKNOWN);
  return (Gptd__RunState) g_atomic_int_get (&runner->state);
}

const char *
gptd_runner_get_error_stage (GptdRunner *runner)
{
  g_return_val_if_fail (runner != NULL, NULL);
  return gptd_runner_get_state (runner) == GPTD__RUN_STATE__RUN_STATE_FAILED
    ? runner->error_stage : NULL;
}

const char *
gptd_runner_get_error_message (GptdRunner *runner)
{
  g_return_val_if_fail (runner != NULL, NULL);
  return gptd_runner_get_state (runner) == GPTD__RUN_STATE__RUN_STATE_FAILED && runner->error
    ? runner->error->message : NULL;
}

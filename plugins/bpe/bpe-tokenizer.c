/* bpe-tokenizer.c: the `bpe-tokenizer` stage — encodes Documents into Tokens with
 * a BPE vocabulary (GPT-2's by default), exactly as tiktoken would.
 *
 * Documents may arrive in chunks; each chunk is cut where the pre-tokenizer
 * would cut (the unfinished tail waits for the next chunk), so a document gives the
 * same ids however it was chunked. Segments are encoded by a pool of worker
 * threads (two by default) and the Tokens are pushed in input order.
 */
#include "config.h"

#include <string.h>

#include "bpe-plugin.h"

typedef struct {
  GptdBpe             *bpe;
  GptdBpeEncodeOptions opts;
  gboolean             eot_between;
  guint32              eot_id;
  guint                threads;
} Tokenizer;

/* One segment to encode, and then its result. */
typedef struct {
  guint64        seq;
  GptdBpeSegment seg;          /* its text is freed once encoded */
  gboolean       eot_before;   /* put <|endoftext|> before the segment's ids */
  GArray        *ids;
  guint32        prompt_tokens; /* ids of the segment's prompt encoded alone */
  GError        *error;
  Tokenizer     *tk;
  GAsyncQueue   *done;
} Job;

static const char *const special_choices[] = { "error", "allowed", "text", NULL };
static const char *const invalid_choices[] = { "error", "replace", NULL };

static const GptdParamSpec tokenizer_params[] = {
  { "vocab", GPTD_PARAM_STRING, "gpt2", 0, 0, NULL,
    "The vocabulary: a name looked up in $GPTD_DATA_DIR and the installed data "
    "directory (gpt2), a directory with encoder.json + vocab.bpe or vocab.json + "
    "merges.txt, or a .tiktoken file", 0 },
  { "special-tokens", GPTD_PARAM_ENUM, "error", 0, 0, special_choices,
    "What the text of a special token such as <|endoftext|> does: error stops the run "
    "naming the byte offset (tiktoken's default), allowed makes it the special token, "
    "text encodes it as ordinary text", 0 },
  { "invalid", GPTD_PARAM_ENUM, "error", 0, 0, invalid_choices,
    "What invalid UTF-8 does: error stops the run naming the byte offset; replace "
    "encodes U+FFFD in its place", 0 },
  { "eot-between-documents", GPTD_PARAM_BOOL, "false", 0, 0, NULL,
    "Put <|endoftext|> between documents (before every document but the first)", 0 },
  { "threads", GPTD_PARAM_INT, "2", 1, 64, NULL,
    "Worker threads that encode segments in parallel (output stays in input order)", 0 },
  { NULL }
};

static const GptdPadSpec tokenizer_inputs[] = {
  { "default", "gptd.Document", 0 },
  { NULL }
};

static const GptdPadSpec tokenizer_outputs[] = {
  { "default", "gptd.Tokens", 0 },
  { NULL }
};

/* The vocabulary the vocab= key names: a directory or file given by path is relative to
 * the pipeline file, as PATH keys are; a bare name (gpt2) is looked up in the data
 * directories unless such a file is there. */
static char *
tokenizer_vocab (const GptdParams *params)
{
  return gptd_params_resolve_name_or_path (params, "vocab");
}

/* Load-time check: the vocabulary can be found (it is read when the run starts). */
static gboolean
tokenizer_check (const GptdParams *params, GError **error)
{
  if (gptd_params_get_string (params, "vocab") == NULL)
    return TRUE;
  g_autofree char *vocab = tokenizer_vocab (params);
  g_autofree char *found = gptd_bpe_locate (vocab, error);
  return found != NULL;
}

static gpointer
tokenizer_create (GptdStageContext *ctx, const GptdParams *params, GError **error)
{
  g_autofree char *vocab = tokenizer_vocab (params);
  g_autoptr (GptdBpe) bpe = gptd_bpe_load (vocab, error);
  if (!bpe)
    return NULL;
  Tokenizer *tk = g_new0 (Tokenizer, 1);
  tk->opts.special = (GptdBpeSpecialMode) gptd_params_get_int (params, "special-tokens");
  tk->opts.invalid = gptd_params_get_int (params, "invalid") == 1 ? GPTD_BPE_INVALID_REPLACE
                                                                  : GPTD_BPE_INVALID_ERROR;
  tk->eot_between = gptd_params_get_bool (params, "eot-between-documents");
  tk->threads = (guint) gptd_params_get_int (params, "threads");
  if (tk->eot_between)
    {
      gint64 eot = gptd_bpe_get_special_id (bpe, "<|endoftext|>");
      if (eot < 0)
        {
          g_set_error (error, GPTD_STAGE_ERROR, GPTD_STAGE_ERROR_FAILED,
                       "eot-between-documents: the vocabulary %s has no <|endoftext|>",
                       gptd_bpe_get_source (bpe));
          g_free (tk);
          return NULL;
        }
      tk->eot_id = (guint32) eot;
    }
  tk->bpe = g_steal_pointer (&bpe);
  return tk;
}

static void
tokenizer_destroy (gpointer data)
{
  Tokenizer *tk = data;
  if (!tk)
    return;
  gptd_bpe_unref (tk->bpe);
  g_free (tk);
}

static void
job_free (Job *job)
{
  gptd_bpe_segment_clear (&job->seg);
  if (job->ids)
    g_array_free (job->ids, TRUE);
  g_clear_error (&job->error);
  g_free (job);
}

static void
encode_job (gpointer data, gpointer user_data)
{
  Job *job = data;
  Tokenizer *tk = job->tk;
  job->ids = g_array_sized_new (FALSE, FALSE, sizeof (guint32), (guint) (job->seg.len / 3 + 2));
  if (job->eot_before)
    g_array_append_val (job->ids, tk->eot_id);
  GptdBpeEncodeOptions opts = tk->opts;
  opts.base_offset = job->seg.offset;
  if (!gptd_bpe_encode (tk->bpe, job->seg.text, job->seg.len, &opts, job->ids, &job->error))
    g_prefix_error (&job->error, "%s: ", job->seg.source);
  else if (job->seg.prompt_bytes > 0)
    {
      /* The prompt's length in tokens is that of the prompt encoded on its own, as
       * the book's len(tokenizer.encode(format_input(entry))). */
      g_autoptr (GArray) prompt = g_array_new (FALSE, FALSE, sizeof (guint32));
      gsize n = MIN (job->seg.prompt_bytes, job->seg.len);
      if (gptd_bpe_encode (tk->bpe, job->seg.text, n, &opts, prompt, &job->error))
        job->prompt_tokens = prompt->len + (job->eot_before ? 1 : 0);
      else
        g_prefix_error (&job->error, "%s: the prompt: ", job->seg.source);
    }
  /* The text is no longer needed; free it early. */
  g_clear_pointer (&job->seg.text, g_free);
  g_async_queue_push (job->done, job);
}

typedef struct {
  GThreadPool *pool;
  GAsyncQueue *done;
  GHashTable  *ready;    /* seq -> finished Job, waiting for its turn */
  guint64      next_seq;  /* next to submit */
  guint64      next_push; /* next to push */
  guint        in_flight;
  guint64      n_tokens;
  guint64      n_bytes;
  guint64      n_docs;
} Flow;

/* Pushes the finished jobs that are next in order. */
static gboolean
push_ready (Tokenizer *tk, Flow *flow, GptdStageContext *ctx, GError **error)
{
  Job *job;
  while ((job = g_hash_table_lookup (flow->ready, &flow->next_push)))
    {
      g_hash_table_steal (flow->ready, &flow->next_push);
      flow->next_push++;
      if (job->error)
        {
          g_propagate_error (error, g_steal_pointer (&job->error));
          job_free (job);
          return FALSE;
        }
      Gptd__Tokens msg = GPTD__TOKENS__INIT;
      msg.source = job->seg.source;
      msg.ids = (guint32 *) (void *) job->ids->data;
      msg.n_ids = job->ids->len;
      msg.offset = job->seg.offset;
      msg.last = job->seg.last;
      msg.index = job->seg.index;
      msg.vocab_size = gptd_bpe_get_n_vocab (tk->bpe);
      if (job->seg.label)
        msg.label = job->seg.label;
      if (job->seg.record)
        msg.record = job->seg.record;
      msg.prompt_tokens = job->prompt_tokens;
      flow->n_tokens += job->ids->len;
      flow->n_bytes += job->seg.len;
      gboolean ok = gptd_stage_push (ctx, 0, &msg.base, error);
      job_free (job);
      if (!ok)
        return FALSE;
    }
  return TRUE;
}

/* Waits for one job to finish and files it. */
static void
wait_one (Flow *flow)
{
  Job *job = g_async_queue_pop (flow->done);
  flow->in_flight--;
  g_hash_table_insert (flow->ready, &job->seq, job);
}

static gboolean
tokenizer_run (gpointer data, GptdStageContext *ctx, GError **error)
{
  Tokenizer *tk = data;
  Flow flow = { 0 };
  flow.done = g_async_queue_new ();
  flow.ready = g_hash_table_new_full (g_int64_hash, g_int64_equal, NULL, (GDestroyNotify) job_free);
  flow.pool = g_thread_pool_new (encode_job, NULL, (gint) tk->threads, TRUE, NULL);
  GptdBpeCarry carry;
  gptd_bpe_carry_init (&carry);
  g_autoptr (GArray) segments = g_array_new (FALSE, FALSE, sizeof (GptdBpeSegment));
  gboolean ok = TRUE, more = TRUE;
  gint64 t0 = g_get_monotonic_time ();

  while (ok && more)
    {
      ProtobufCMessage *msg = NULL;
      GptdPullResult r = gptd_stage_pull (ctx, 0, &msg, error);
      if (r == GPTD_PULL_ERROR)
        {
          ok = FALSE;
          break;
        }
      if (r == GPTD_PULL_END_OF_STREAM)
        {
          gptd_bpe_carry_end (&carry, segments);
          more = FALSE;
        }
      else if (r == GPTD_PULL_MESSAGE)
        {
          const Gptd__Document *doc = (const Gptd__Document *) msg;
          gptd_bpe_carry_feed (&carry, tk->bpe, tk->opts.special, doc, segments);
        }
      if (msg)
        protobuf_c_message_free_unpacked (msg, NULL);

      for (guint i = 0; i < segments->len; i++)
        {
          Job *job = g_new0 (Job, 1);
          job->seg = g_array_index (segments, GptdBpeSegment, i);
          job->seq = flow.next_seq++;
          job->eot_before = tk->eot_between && job->seg.begins && job->seg.n_doc > 1;
          job->tk = tk;
          job->done = flow.done;
          flow.n_docs += job->seg.last;
          flow.in_flight++;
          g_thread_pool_push (flow.pool, job, NULL);
        }
      g_array_set_size (segments, 0);

      /* Keep a few segments per worker in flight, and push in order. */
      while (ok && (flow.in_flight > 2 * tk->threads || (!more && flow.in_flight > 0)))
        {
          wait_one (&flow);
          ok = push_ready (tk, &flow, ctx, error);
        }
      while (ok && g_async_queue_length (flow.done) > 0)
        {
          wait_one (&flow);
          ok = push_ready (tk, &flow, ctx, error);
        }
    }
  if (ok)
    ok = push_ready (tk, &flow, ctx, error);

  /* Let every worker finish before anything they use goes away. */
  g_thread_pool_free (flow.pool, FALSE, TRUE);
  while (flow.in_flight > 0)
    wait_one (&flow);
  g_hash_table_unref (flow.ready);
  g_async_queue_unref (flow.done);
  for (guint i = 0; i < segments->len; i++)
    gptd_bpe_segment_clear (&g_array_index (segments, GptdBpeSegment, i));
  gptd_bpe_carry_clear (&carry);
  if (ok)
    {
      double s = (g_get_monotonic_time () - t0) / 1e6;
      gptd_stage_log (ctx, G_LOG_LEVEL_INFO,
                      "encoded %" G_GUINT64_FORMAT " document%s, %" G_GUINT64_FORMAT
                      " bytes into %" G_GUINT64_FORMAT " tokens (%.1f MB/s)",
                      flow.n_docs, flow.n_docs == 1 ? "" : "s", flow.n_bytes, flow.n_tokens,
                      s > 0 ? flow.n_bytes / 1e6 / s : 0.0);
    }
  return ok;
}

const GptdStageType gptd__bpe_tokenizer_type = {
  .name = "bpe-tokenizer",
  .description = "Encodes Documents into Tokens with a BPE vocabulary (GPT-2's by default), "
                 "exactly as tiktoken does, on several threads",
  .params = tokenizer_params,
  .inputs = tokenizer_inputs,
  .outputs = tokenizer_outputs,
  .check = tokenizer_check,
  .create = tokenizer_create,
  .run = tokenizer_run,
  .destroy = tokenizer_destroy,
};

/* daemon/serve.h: the serving worker, a process that keeps one model loaded and
 * answers the generate and classify requests the daemon forwards to it.
 *
 * The daemon never holds a model: for each model a client asks for (and each
 * user asking), it re-executes its own binary (/proc/self/exe) as
 *
 *   gptd --serve MODEL_DIR
 *
 * with fd 3 one end of a socket pair, stdout and stderr the daemon's own. The
 * daemon writes gptd.Request frames to it: a GenerateRequest or a
 * ClassifyRequest whose id is the daemon's number for the request, or a cancel
 * (RunIdRequest) whose run_id is that number in decimal. The worker answers
 * each request with gptd.Response frames carrying the same id, exactly as the
 * daemon answers its client, the last with end set: first an event with a log
 * line saying whether the model was loaded or already held, then for generate
 * the text chunks and the end, for classify one PredictionList (a Prediction
 * per text, in order). The daemon sends up to serve-batch requests at once
 * (GPTD_SERVE_BATCH in the worker's environment) and the answers of different
 * requests interleave: the worker keeps a slot per generation and decodes them
 * together, one batched step over every slot past its prefill at a time
 * (each slot with its own sampling, seed, stop strings, length and cancel, so
 * each gets exactly the tokens it gets alone); a new request joins between
 * steps, and prompts are fed prefill-chunk tokens at a time
 * (GPTD_SERVE_PREFILL_CHUNK), one chunk between steps. Classify requests are
 * answered one at a time between steps. Before admitting a request the worker
 * checks the stamps of the model's files; when they changed, the model is
 * loaded again once the generations under way have ended.
 *
 * Whether the directory holds a language model or a classifier is read from
 * its config.json (architectures GPT2ForSequenceClassification, or
 * num_labels); a request of the other kind is answered with an error naming
 * the directory.
 *
 * The model is loaded with GPTD_NN_THREADS threads (the daemon sets it, see
 * docs/architecture.md, "Scheduling"). The worker ends when the daemon closes
 * its end (end of stream), on SIGTERM (after ending the request under way as
 * cancelled) or when the daemon dies. A model that cannot be loaded is answered
 * with an error, after which the worker exits with status 3.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The generations a serving worker decodes together, and the prompt tokens
 * it feeds between two steps, when the daemon does not say. */
#define GPTD_SERVE_DEFAULT_BATCH 8
#define GPTD_SERVE_DEFAULT_PREFILL_CHUNK 64

/**
 * gptd__serve_main:
 * @model_dir: the model directory, absolute, as the client named it
 * @fd: the daemon's socket
 *
 * The serving worker process's main function (`gptd --serve`).
 *
 * Returns: the process exit status: 0 when told to stop, 3 when the model
 *   cannot be loaded, 1 on a protocol error
 */
int gptd__serve_main (const char *model_dir, int fd);

G_END_DECLS

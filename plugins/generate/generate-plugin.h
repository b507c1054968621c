/* generate-plugin.h: the stage types of the generate plugin. */
#pragma once

#include <gptd/generate.h>
#include <gptd/stage.h>

G_BEGIN_DECLS

/* The generator stage (generator.c). */
extern const GptdStageType gptd__generator_type;

/* The responder stage (responder.c). */
extern const GptdStageType gptd__responder_type;

/* The classifier stage (classifier.c). */
extern const GptdStageType gptd__classifier_type;

/* Reads the sampling keys the generator and the responder share (max-new-tokens,
 * temperature, top-k, top-p, seed, eos-id, kv-cache) into @options and validates
 * them (generator.c). */
gboolean gptd__generate_options_from_params (const GptdParams *params,
                                             GptdGenerateOptions *options, GError **error);

G_END_DECLS

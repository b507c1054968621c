/* generate-plugin.h: the stage types of the generate plugin. */
#pragma once

#include <gptd/stage.h>

G_BEGIN_DECLS

/* The generator stage (generator.c). */
extern const GptdStageType gptd__generator_type;

/* The responder stage (responder.c). */
extern const GptdStageType gptd__responder_type;
/* The classifier stage (classifier.c). */
extern const GptdStageType gptd__classifier_type;

G_END_DECLS

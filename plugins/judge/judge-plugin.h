/* judge-plugin.h: the stage types of the judge plugin. */
#pragma once

#include <gptd/stage.h>

G_BEGIN_DECLS

/* The judge stage (judge.c). */
extern const GptdStageType gptd__judge_type;

G_END_DECLS

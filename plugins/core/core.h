/* core.h: the stage types of the core plugin (libgptd-core). */
#ifndef GPTD_CORE_H
#define GPTD_CORE_H

#include <gptd/stage.h>

extern const GptdStageType gptd_core_text_source_type;
extern const GptdStageType gptd_core_dump_type;

#endif /* GPTD_CORE_H */

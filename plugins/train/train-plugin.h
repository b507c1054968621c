/* train-plugin.h: the stage types of the train plugin (token-windows,
 * classification-dataset and gpt-trainer) and what their files share. */
#pragma once

#include <gptd/stage.h>

G_BEGIN_DECLS

extern const GptdStageType gptd__token_windows_type;
extern const GptdStageType gptd__classification_dataset_type;
extern const GptdStageType gptd__gpt_trainer_type;

G_END_DECLS

/* pipeline-private.h: the loaded pipeline graph, as the runner reads it. */
#ifndef GPTD_PIPELINE_PRIVATE_H
#define GPTD_PIPELINE_PRIVATE_H

#include <gptd/pipeline.h>

G_BEGIN_DECLS

/* One stage of a loaded pipeline. */
typedef struct {
  char *name;
  const GptdStageType *type;
  GptdParams *params;
  guint line;             /* line of its [stage NAME] group */
  guint n_inputs;         /* pads declared by the type */
  guint n_outputs;
  int *input_stage;       /* per input pad: producing stage index, or -1 if unlinked */
  guint *input_output;    /* per input pad: the producer's output index */
} GptdPipelineStage;

struct _GptdPipeline {
  char *name;
  char *filename;
  char *text;
  GptdRegistry *registry;
  GPtrArray *stages;      /* GptdPipelineStage*, in file order */
  guint ranks;            /* [pipeline] ranks=: processes of a data-parallel run */
  char *hosts;            /* [pipeline] hosts=: where mpirun starts them, or NULL */
};

G_END_DECLS

#endif /* GPTD_PIPELINE_PRIVATE_H */

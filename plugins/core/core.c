/* core.c: the core plugin's entry point — registers text-source, table-source and
 * dump. Each stage lives in its own file. */
#include "config.h"

#include <gptd/plugin.h>
#include "core.h"

GPTD_PLUGIN_DEFINE ("core", "Basic sources and sinks: text-source, table-source, dump",
                    PACKAGE_VERSION, "MIT", &gptd_core_text_source_type,
                    &gptd_core_table_source_type, &gptd_core_dump_type);

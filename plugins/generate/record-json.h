/* record-json.h: JSON records written byte for byte as Python's json.dump()
 * writes them (the book saves instruction-data-with-response.json with
 * json.dump(data, file, indent=4)), so that gptd's files and the book's can
 * be compared with cmp.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/**
 * gptd__record_json_append:
 * @out: the text to append to.
 * @node: a JSON value (objects keep their members' order).
 * @indent: spaces per level as json.dump's indent=, or -1 for json.dumps()
 *   without indent (one line, separators ", " and ": ").
 * @level: the nesting level @node starts at (0 for a top-level value; an
 *   element of a top-level array written on its own is at level 1).
 *
 * Appends @node as Python's json module writes it with its defaults
 * (ensure_ascii: every character outside printable ASCII as \uXXXX, with
 * surrogate pairs above U+FFFF; integers as they are; doubles as Python's
 * repr(); NaN and infinities as NaN, Infinity, -Infinity).
 */
void gptd__record_json_append (GString *out, JsonNode *node, int indent, int level);

G_END_DECLS

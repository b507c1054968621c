/* test-ollama-server.h: a small server speaking Ollama's chat API
 * (POST /api/chat, the reply streamed as JSON lines) for the tests of the judge
 * stage and of the pipelines that end in one. One server per test program: start
 * it in main(), pick what it answers with test_ollama_reset() before each test.
 * Tests that reach it must not go through a proxy (unset http_proxy, set
 * no_proxy=127.0.0.1).
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
  TEST_OLLAMA_OK,        /* the next of the replies, in turn, streamed in pieces */
  TEST_OLLAMA_GARBAGE,   /* a reply without a number */
  TEST_OLLAMA_HTTP_500,  /* always HTTP 500 */
  TEST_OLLAMA_FLAKY,     /* HTTP 500 twice, then as TEST_OLLAMA_OK */
  TEST_OLLAMA_NOT_FOUND, /* HTTP 404 with Ollama's error object */
} TestOllamaMode;

/* Starts the server on a thread of its own and returns once it listens; call
 * test_ollama_reset() before the first request. */
void test_ollama_start (void);
/* Stops it and joins its thread. */
void test_ollama_stop (void);
/* Sets what the server answers (@replies: NULL-terminated, used in turn; kept, not
 * copied) and forgets the requests received so far. */
void test_ollama_reset (TestOllamaMode mode, const char *const *replies);
/* "http://127.0.0.1:PORT", the server's base URL. */
char *test_ollama_url (void);
/* The requests received since the last reset, and their bodies. */
guint test_ollama_n_requests (void);
guint test_ollama_n_bodies (void);
char *test_ollama_body (guint i);

G_END_DECLS

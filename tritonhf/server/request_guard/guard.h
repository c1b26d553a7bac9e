/*
 * tritonhf's request guard: a library preloaded into tritonserver (LD_PRELOAD) by `tritonhf serve`
 * and the Triton image. It keeps single requests from any client from killing Triton 2.51 or a
 * Python-backend stub, and Triton's HTTP frontend from dropping responses under load. One file
 * a fix, each saying what it fixes and how:
 *
 *   classification.c  the classification extension on a text output (SIGFPE)
 *   shapes.c          a shape whose size overflows (a stub aborts)
 *   form_body.c       a large form-encoded HTTP body (SIGSEGV)
 *   json_depth.c      a deeply nested JSON body (SIGSEGV)
 *   deferred_send.c   HTTP responses dropped under load
 *
 * Each stands in for a library function (or, for json_depth.c, one call inside Triton) only
 * when called from the Triton function that goes wrong, found by name in the executable's
 * symbol table (callers.c). In an executable without those symbols (a stripped build, the
 * backend stubs that inherit the environment) it changes nothing; in a tritonserver without
 * them, it says so on stderr.
 */
#ifndef TRITONHF_REQUEST_GUARD_H
#define TRITONHF_REQUEST_GUARD_H

#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>

#define HIDDEN __attribute__((visibility("hidden")))
#define TRITONSERVER_TYPE_BYTES 13
#define TRITONSERVER_ERROR_INVALID_ARG 3

typedef struct TRITONSERVER_Error TRITONSERVER_Error;

/* The functions found by name in the executable (a prefix of their symbol). */
enum caller { TOPK_CLASSIFICATIONS, PARSE_FINISHED, BODY_TO_JSON, DEFER, CALLERS };
#define MAX_RANGES 8

/* Where a caller's code lies at run time: ``count`` ranges of [start, end). */
struct ranges {
  int count;
  uintptr_t start[MAX_RANGES], end[MAX_RANGES];
};

/* The ranges of ``function``; empty until the library's constructor has run. */
HIDDEN const struct ranges* ranges_of(enum caller function);

/* Whether ``address`` (a return address) lies inside ``function``. */
HIDDEN int called_from(enum caller function, uintptr_t address);

/* The run-time address of TritonJson::Value::Parse(const char*, size_t), or 0. */
HIDDEN uintptr_t json_parse_address(void);

/* A TRITONSERVER_Error with ``message`` (copied), or NULL outside Triton. */
HIDDEN TRITONSERVER_Error* invalid_argument(const char* message);

/* Point Triton's parse of an HTTP body at the nesting check (json_depth.c); 1 if done. */
HIDDEN int route_body_parse(void);

#endif

/*
 * tritonhf's request guard: a library preloaded into tritonserver (LD_PRELOAD) by `tritonhf serve`
 * and the Triton image. It keeps single requests from any client from killing Triton 2.51 or a
 * Python-backend stub, Triton's HTTP frontend from dropping responses under load, and a
 * malformed request from counting as a server error. One file a fix, each saying what it fixes
 * and how:
 *
 *   classification.c  the classification extension on a text output (SIGFPE)
 *   shapes.c          a shape whose size overflows (a stub aborts)
 *   form_body.c       a large form-encoded HTTP body (SIGSEGV)
 *   json_depth.c      a deeply nested JSON body (SIGSEGV), an object of very many members (CPU)
 *   client_errors.c   a malformed HTTP inference request answered 500, not 400
 *   header_length.c   a malformed Inference-Header-Content-Length served a wrong result
 *   inflated_body.c   a refused compressed HTTP request leaked its inflated body
 *   deferred_send.c   HTTP responses dropped under load
 *
 * Each stands in for a library function (or one call inside Triton: routing.c) only
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
enum caller {
  TOPK_CLASSIFICATIONS,
  PARSE_FINISHED,
  BODY_TO_JSON,
  DEFER,
  HANDLE_INFER,
  HEADER_LENGTH,
  HTTP_HANDLE,
  CALLERS
};

/* The functions whose calls are routed through the guard (found by their exact symbol). */
enum callee {
  JSON_PARSE,
  REQUEST_PARSE,
  DECOMPRESS_BUFFER,
  HANDLE_INFER_FN,
  EVBUFFER_FREE,
  CALLEES
};
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

/* The run-time address of ``function``, or 0. */
HIDDEN uintptr_t address_of(enum callee function);

/* Point every call of ``callee`` inside ``caller`` at ``wrapper`` (routing.c); 1 if any. */
HIDDEN int route_calls(enum caller caller, enum callee callee, uintptr_t wrapper);

/* A TRITONSERVER_Error with ``message`` (copied), or NULL outside Triton. */
HIDDEN TRITONSERVER_Error* invalid_argument(const char* message);

/* ``error`` (taken): an INTERNAL one as INVALID_ARG with its message (client_errors.c). */
HIDDEN TRITONSERVER_Error* as_client_error(TRITONSERVER_Error* error);

/* Point Triton's parse of an HTTP body at the nesting check (json_depth.c); 1 if done. */
HIDDEN int route_body_parse(void);

/* Point Triton's reading of an HTTP inference request at client_errors.c's; 1 if done. */
HIDDEN int route_request_parse(void);

/* Route the inflating of a compressed request and HandleInfer (inflated_body.c); 1 if done. */
HIDDEN int route_inflated_bodies(void);

#endif

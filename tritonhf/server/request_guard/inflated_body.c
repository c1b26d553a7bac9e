/*
 * A refused compressed request leaked its inflated body. Triton's HandleInfer inflates a gzip
 * or deflate body (Content-Encoding) into a buffer of its own (DecompressBuffer), which only
 * the request's release callback frees once the request is handed to the core: every error
 * before that (a body that is not JSON, of the wrong shape or refused by this guard, a bad
 * Inference-Header-Content-Length, an unknown model, a stream that does not inflate) kept the
 * whole inflated body for the life of the server. A probe's 51 KB body that inflates to 50 MB
 * left 48 MB behind per request: ten took Triton from 42 to 521 MB in 2 s.
 *
 * This library routes HandleInfer's call of DecompressBuffer (routing.c) through
 * inflate_body, which notes the buffer for this thread, and Handle's call of HandleInfer
 * through handle_infer, which frees a noted buffer that no release callback took once
 * HandleInfer returns. TRITONSERVER_InferenceRequestSetReleaseCallback, defined here in front
 * of libtritonserver's, hands the buffer over (called from HandleInfer: success or not, Triton
 * then owns it, and frees it itself when setting the callback fails).
 */
#include "guard.h"

#include <dlfcn.h>

typedef struct evbuffer evbuffer;

/* The inflated body of the request this thread's HandleInfer is serving; NULL once handed to
 * a release callback, or for a body sent as it is. */
static __thread evbuffer* noted_body;

/* HTTPAPIServer::DecompressBuffer(evhtp_request*, evbuffer**), a member function. */
typedef TRITONSERVER_Error* (*decompress_fn)(void*, void*, evbuffer**);

static TRITONSERVER_Error*
inflate_body(void* server, void* request, evbuffer** inflated)
{
  decompress_fn decompress = (decompress_fn)address_of(DECOMPRESS_BUFFER);
  TRITONSERVER_Error* error = decompress(server, request, inflated);
  noted_body = *inflated; /* set before it inflates, so even when that fails */
  return error;
}

/* HTTPAPIServer::HandleInfer(evhtp_request*, const std::string& model, const std::string&
 * version), a member function. */
typedef void (*handle_infer_fn)(void*, void*, const void*, const void*);
typedef void (*free_fn)(evbuffer*);

static void
handle_infer(void* server, void* request, const void* model, const void* version)
{
  noted_body = NULL;
  ((handle_infer_fn)address_of(HANDLE_INFER_FN))(server, request, model, version);
  if (noted_body != NULL) { /* refused before the core took it: nothing refers to it now */
    ((free_fn)address_of(EVBUFFER_FREE))(noted_body);
    noted_body = NULL;
  }
}

typedef TRITONSERVER_Error* (*set_release_fn)(void*, void*, void*);

TRITONSERVER_Error*
TRITONSERVER_InferenceRequestSetReleaseCallback(void* request, void* callback, void* userp)
{
  static set_release_fn library_set_release;
  if (called_from(HANDLE_INFER, (uintptr_t)__builtin_return_address(0))) {
    noted_body = NULL; /* the request's release payload owns it now */
  }
  if (library_set_release == NULL) {
    library_set_release =
        (set_release_fn)dlsym(RTLD_NEXT, "TRITONSERVER_InferenceRequestSetReleaseCallback");
  }
  return library_set_release(request, callback, userp);
}

int
route_inflated_bodies(void)
{
  if (address_of(EVBUFFER_FREE) == 0) {
    return 0;
  }
  /* Noting without freeing is harmless; freeing needs both routes. */
  return route_calls(HANDLE_INFER, DECOMPRESS_BUFFER, (uintptr_t)&inflate_body) &&
         route_calls(HTTP_HANDLE, HANDLE_INFER_FN, (uintptr_t)&handle_infer);
}

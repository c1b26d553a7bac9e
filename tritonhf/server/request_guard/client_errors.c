/*
 * A malformed HTTP inference request answered 500. Triton's HTTP frontend reads an inference
 * request's JSON with TritonJson, whose errors are INTERNAL: a body that is not JSON, "inputs"
 * that is not a list, a shape of strings, numbers as BYTES data or an "id" that is not a string
 * get HTTP 500 ("Unable to parse 'inputs': ..."), so a client's mistake reads as a server
 * fault to the client, its retries and a proxy's 5xx alerts. Every such error comes from
 * EVRequestToTritonRequest, which reads only the client's request: HandleInfer's call of it
 * (found by name) is routed through request_parse (routing.c), which answers an INTERNAL
 * error as INVALID_ARG (HTTP 400) with the same message and passes every other code on.
 */
#include "guard.h"

#include <dlfcn.h>

#define TRITONSERVER_ERROR_INTERNAL 1

typedef int (*error_code_fn)(TRITONSERVER_Error*);
typedef const char* (*error_message_fn)(TRITONSERVER_Error*);
typedef void (*error_delete_fn)(TRITONSERVER_Error*);

TRITONSERVER_Error*
as_client_error(TRITONSERVER_Error* error)
{
  static error_code_fn error_code;
  static error_message_fn error_message;
  static error_delete_fn error_delete;
  if (error_code == NULL || error_message == NULL || error_delete == NULL) {
    error_code = (error_code_fn)dlsym(RTLD_NEXT, "TRITONSERVER_ErrorCode");
    error_message = (error_message_fn)dlsym(RTLD_NEXT, "TRITONSERVER_ErrorMessage");
    error_delete = (error_delete_fn)dlsym(RTLD_NEXT, "TRITONSERVER_ErrorDelete");
  }
  if (error == NULL || error_code == NULL || error_message == NULL || error_delete == NULL ||
      error_code(error) != TRITONSERVER_ERROR_INTERNAL) {
    return error;
  }
  TRITONSERVER_Error* replaced = invalid_argument(error_message(error));
  if (replaced == NULL) {
    return error;
  }
  error_delete(error);
  return replaced;
}

/*
 * HTTPAPIServer::EVRequestToTritonRequest(evhtp_request*, const std::string& model_name,
 * TRITONSERVER_InferenceRequest*, evbuffer*, InferRequestClass*, size_t header_length), a
 * member function: `this` comes first.
 */
typedef TRITONSERVER_Error* (*request_parse_fn)(void*, void*, const void*, void*, void*, void*,
                                                size_t);

static TRITONSERVER_Error*
request_parse(void* server, void* request, const void* model_name, void* inference_request,
              void* body, void* infer_request, size_t header_length)
{
  request_parse_fn parse = (request_parse_fn)address_of(REQUEST_PARSE);
  return as_client_error(
      parse(server, request, model_name, inference_request, body, infer_request, header_length));
}

int
route_request_parse(void)
{
  return route_calls(HANDLE_INFER, REQUEST_PARSE, (uintptr_t)&request_parse);
}

/*
 * A deeply nested JSON body. Triton's HTTP frontend parses a request body with a recursive
 * JSON parser, then walks "data" recursively: "data" nested ~50,000 levels deep (a ~100 KB
 * request to any model) or "inputs" ~200,000 overflows the thread's stack, SIGSEGV. Both are
 * compiled into the executable, so no symbol of a library stands in front of them. Instead,
 * once at load, this library points the one call that hands an HTTP body to the parser (in
 * EVBufferToJson, to TritonJson::Value::Parse, both found by name; the call found by its
 * target) at body_parse, through a jump placed near the executable: it reads the nesting of
 * the body (outside strings) and refuses one deeper than MAX_JSON_DEPTH levels with an
 * INVALID_ARG error (HTTP 400), or calls the parser. A KServe v2 request nests 3 levels,
 * "data" one more per dimension. Where the call is not found as expected it changes nothing
 * and says so on stderr.
 */
#include "guard.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_JSON_DEPTH 1024

/* TritonJson::Value::Parse(const char*, size_t), a member function: this comes first. */
typedef TRITONSERVER_Error* (*parse_fn)(void*, const char*, size_t);

/* Stands in for the parser's call on an HTTP body: refuses a body nested too deep. */
static TRITONSERVER_Error*
body_parse(void* value, const char* body, size_t length)
{
  int depth = 0, in_string = 0, escaped = 0;
  for (size_t i = 0; i < length; i++) {
    char c = body[i];
    if (in_string) {
      if (escaped) {
        escaped = 0;
      } else if (c == '\\') {
        escaped = 1;
      } else if (c == '"') {
        in_string = 0;
      }
    } else if (c == '"') {
      in_string = 1;
    } else if ((c == '[' || c == '{') && ++depth > MAX_JSON_DEPTH) {
      char message[160];
      snprintf(
          message, sizeof(message),
          "the request's JSON nests deeper than %d levels (at byte %zu): refused unparsed",
          MAX_JSON_DEPTH, i);
      TRITONSERVER_Error* refused = invalid_argument(message);
      if (refused != NULL) {
        return refused;
      }
    } else if (c == ']' || c == '}') {
      depth--;
    }
  }
  return ((parse_fn)json_parse_address())(value, body, length);
}

/* A jump to body_parse in a page within a 32-bit call of ``near``, or 0 if none is free. */
static uintptr_t
jump_near(uintptr_t near)
{
  static const unsigned char code[] = {0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xe0};
  long page = sysconf(_SC_PAGESIZE);
  for (uintptr_t distance = 1 << 24; distance < (1u << 31) - (1 << 24); distance += 1 << 24) {
    for (int side = 0; side < 2; side++) {
      uintptr_t hint = ((side ? near - distance : near + distance) & ~(uintptr_t)(page - 1));
      void* place = mmap((void*)hint, (size_t)page, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (place == MAP_FAILED) {
        continue;
      }
      if ((uintptr_t)place != hint) { /* a kernel that took the address as a hint only */
        munmap(place, (size_t)page);
        continue;
      }
      uintptr_t target = (uintptr_t)&body_parse;
      memcpy(place, code, sizeof(code)); /* movabs $body_parse, %rax; jmp *%rax */
      memcpy((unsigned char*)place + 2, &target, sizeof(target));
      if (mprotect(place, (size_t)page, PROT_READ | PROT_EXEC) != 0) {
        munmap(place, (size_t)page);
        return 0;
      }
      return hint;
    }
  }
  return 0;
}

/* Point EVBufferToJson's calls of the parser at body_parse; whether there was one to point. */
int
route_body_parse(void)
{
  const struct ranges* body_to_json = ranges_of(BODY_TO_JSON);
  uintptr_t json_parse = json_parse_address();
  if (json_parse == 0 || body_to_json->count == 0) {
    return 0;
  }
  long page = sysconf(_SC_PAGESIZE);
  int routed = 0;
  uintptr_t jump = 0;
  for (int r = 0; r < body_to_json->count; r++) {
    for (uintptr_t at = body_to_json->start[r]; at + 5 <= body_to_json->end[r]; at++) {
      int32_t offset;
      memcpy(&offset, (const void*)(at + 1), sizeof(offset));
      if (*(const unsigned char*)at != 0xe8 || at + 5 + (intptr_t)offset != json_parse) {
        continue; /* not a call of the parser */
      }
      if (jump == 0 && (jump = jump_near(at)) == 0) {
        return 0;
      }
      intptr_t to_jump = (intptr_t)jump - (intptr_t)(at + 5);
      if (to_jump != (int32_t)to_jump) {
        return 0;
      }
      int32_t new_offset = (int32_t)to_jump;
      uintptr_t first = at & ~(uintptr_t)(page - 1), last = (at + 4) & ~(uintptr_t)(page - 1);
      size_t span = (size_t)(last - first) + (size_t)page;
      if (mprotect((void*)first, span, PROT_READ | PROT_WRITE | PROT_EXEC) != 0) {
        return 0;
      }
      memcpy((void*)(at + 1), &new_offset, sizeof(new_offset)); /* before any thread runs */
      mprotect((void*)first, span, PROT_READ | PROT_EXEC);
      routed = 1;
      at += 4;
    }
  }
  return routed;
}

/*
 * Preloaded into tritonserver (LD_PRELOAD) by `tritonhf serve` and the Triton image: keeps two
 * kinds of request, each a single one from any client, from killing Triton 2.51 or a
 * Python-backend stub.
 *
 * 1. The classification extension on a text output. A client may ask for the KServe classification extension on any output ("parameters":
 * {"classification": N} over HTTP, class_count over gRPC). Triton's frontends then call
 * TopkClassifications, which divides the output's byte size by
 * TRITONSERVER_DataTypeByteSize(datatype) before it checks the type, and that size is 0 for
 * BYTES: an integer division by zero, SIGFPE, and the whole server is gone. Every classifier
 * tritonhf exports has a BYTES output (LABEL).
 *
 * This library defines TRITONSERVER_DataTypeByteSize in front of libtritonserver's. Called from
 * inside TopkClassifications (found by name in the executable's symbol table) for BYTES, it
 * answers 1 instead of 0; TopkClassifications then refuses the type, as it refuses BOOL:
 * "class result not available for output due to unsupported type 'BYTES'" (HTTP 400, gRPC
 * INVALID_ARGUMENT). Every other caller, and every other type, gets the library's own answer.
 * In an executable without that symbol (a stripped build, the backend stubs that inherit the
 * environment) it changes nothing; in a tritonserver without it, it says so on stderr.
 *
 * 2. A shape whose size overflows. Triton checks that an input's data is as long as its shape
 * says by multiplying the dimensions without an overflow check: INT64 input_ids of shape
 * [1, 2^61 + 4] with 32 bytes of data pass (2^61 + 4 elements of 8 bytes wrap to 32), and the
 * Python-backend stub that receives them aborts building that array ("array is too big"),
 * before the step's code can refuse it; a negative dimension (2^63 + 4 read back) does the
 * same. Sent to a model step directly, each request killed its stub. This library defines
 * TRITONBACKEND_InputProperties and TRITONBACKEND_InputPropertiesForHostPolicy in front of
 * Triton's, which every backend calls to read an input, and answers an input whose shape does
 * not fit its bytes (a negative dimension, an element count that overflows, more elements than
 * the bytes hold) with an INVALID_ARG error naming it; the backend then fails that request.
 *
 * 3. A large form-encoded body. Triton's HTTP frontend (libevhtp, built into the executable)
 * reads the body of a request sent as "Content-Type: application/x-www-form-urlencoded" (what
 * curl -d and Python's urllib send unless told otherwise) as query arguments once it has
 * arrived, and that parser copies it onto the thread's stack twice: a body of ~4.2 MB or more
 * overflows the 8 MiB stack, SIGSEGV, on any path, before any routing or key check. Triton
 * reads its own arguments from the URL and the JSON body, never from a form. This library
 * defines strncasecmp in front of libc's and, called from evhtp's end-of-request function
 * (htp__request_parse_fini_, found by name like TopkClassifications) to compare the content
 * type with that form type, answers "different": the body is left alone and the request
 * goes on as any other (a valid JSON body is served, anything else refused).
 *
 * 4. A deeply nested JSON body. Triton's HTTP frontend parses a request body with a recursive
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
 *
 * 5. Responses lost under load. Triton's HTTP frontend hands each finished response to the
 * connection's evhtp thread with evthr_defer, which writes a 17-byte command into that thread's
 * non-blocking socket pair with send and ignores a failure: when thousands of responses finish
 * faster than the thread reads (a few hundred commands fill the socket), send fails with
 * EAGAIN and the response is dropped. The client never gets an answer, its connection stays
 * open, and the unanswered requests keep their model from unloading: a probe's 8,000 requests
 * in 4 s left 688 unanswered, and the next shutdown waited out Triton's exit timeout. This
 * library defines send in front of libc's and, called from evthr_defer (found by name), keeps
 * a command that does not fit in a queue of its own, in order behind any queued for that
 * socket, and a thread of its own writes them as the socket drains: nothing is lost, and no
 * thread of Triton's waits (an evhtp thread may be deferring to itself).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdio.h>

#define TRITONSERVER_TYPE_BYTES 13
#define TRITONSERVER_ERROR_INVALID_ARG 3
#define MAX_RANGES 8

typedef struct TRITONSERVER_Error TRITONSERVER_Error;
typedef struct TRITONBACKEND_Input TRITONBACKEND_Input;
typedef uint32_t (*byte_size_fn)(int);
typedef TRITONSERVER_Error* (*error_new_fn)(int, const char*);
typedef TRITONSERVER_Error* (*properties_fn)(
    TRITONBACKEND_Input*, const char**, int*, const int64_t**, uint32_t*, uint64_t*, uint32_t*);
typedef TRITONSERVER_Error* (*host_properties_fn)(
    TRITONBACKEND_Input*, const char*, const char**, int*, const int64_t**, uint32_t*,
    uint64_t*, uint32_t*);

typedef int (*compare_fn)(const char*, const char*, size_t);

/* The functions found by name in the executable, each as run-time address ranges. */
enum caller { TOPK_CLASSIFICATIONS, PARSE_FINISHED, BODY_TO_JSON, DEFER, CALLERS };
static const char* const CALLER_NAMES[CALLERS] = {
    "_ZN6triton6server19TopkClassifications", /* a prefix: every overload, and .cold parts */
    "htp__request_parse_fini_",
    "_ZN6triton6server12_GLOBAL__N_114EVBufferToJson",
    "evthr_defer",
};
static const char JSON_PARSE[] = "_ZN6triton6common10TritonJson5Value5ParseEPKcm";
#define MAX_JSON_DEPTH 1024

typedef TRITONSERVER_Error* (*parse_fn)(void*, const char*, size_t);
static parse_fn json_parse; /* TritonJson::Value::Parse(const char*, size_t), found by name */
static const char FORM_TYPE[] = "application/x-www-form-urlencoded";
static uintptr_t range_start[CALLERS][MAX_RANGES], range_end[CALLERS][MAX_RANGES];
static int range_count[CALLERS];

static int
called_from(enum caller function, uintptr_t address)
{
  for (int r = 0; r < range_count[function]; r++) {
    if (address >= range_start[function][r] && address < range_end[function][r]) {
      return 1;
    }
  }
  return 0;
}

static int
first_object_bias(struct dl_phdr_info* info, size_t size, void* bias)
{
  (void)size;
  *(uintptr_t*)bias = (uintptr_t)info->dlpi_addr; /* the first object is the executable */
  return 1;
}

static int
inside(size_t file_size, uint64_t offset, uint64_t length)
{
  return offset <= file_size && length <= file_size - offset;
}

static error_new_fn error_new;

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
      if (error_new == NULL) {
        error_new = (error_new_fn)dlsym(RTLD_NEXT, "TRITONSERVER_ErrorNew");
      }
      if (error_new != NULL) {
        char message[160];
        snprintf(
            message, sizeof(message),
            "the request's JSON nests deeper than %d levels (at byte %zu): refused unparsed",
            MAX_JSON_DEPTH, i);
        return error_new(TRITONSERVER_ERROR_INVALID_ARG, message);
      }
    } else if (c == ']' || c == '}') {
      depth--;
    }
  }
  return json_parse(value, body, length);
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
static int
route_body_parse(void)
{
  if (json_parse == NULL || range_count[BODY_TO_JSON] == 0) {
    return 0;
  }
  long page = sysconf(_SC_PAGESIZE);
  int routed = 0;
  uintptr_t jump = 0;
  for (int r = 0; r < range_count[BODY_TO_JSON]; r++) {
    for (uintptr_t at = range_start[BODY_TO_JSON][r]; at + 5 <= range_end[BODY_TO_JSON][r];
         at++) {
      int32_t offset;
      memcpy(&offset, (const void*)(at + 1), sizeof(offset));
      if (*(const unsigned char*)at != 0xe8 || at + 5 + (intptr_t)offset != (uintptr_t)json_parse) {
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

/* Each function named in CALLER_NAMES (a prefix match), as run-time address ranges. */
__attribute__((constructor)) static void
find_callers(void)
{
  int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return;
  }
  struct stat status;
  if (fstat(fd, &status) != 0 || (size_t)status.st_size < sizeof(Elf64_Ehdr)) {
    close(fd);
    return;
  }
  size_t size = (size_t)status.st_size;
  const unsigned char* file = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (file == MAP_FAILED) {
    return;
  }
  const Elf64_Ehdr* header = (const Elf64_Ehdr*)file;
  uintptr_t bias = 0;
  if (memcmp(header->e_ident, ELFMAG, SELFMAG) != 0 ||
      header->e_ident[EI_CLASS] != ELFCLASS64 ||
      !inside(size, header->e_shoff, (uint64_t)header->e_shnum * sizeof(Elf64_Shdr))) {
    goto done;
  }
  dl_iterate_phdr(first_object_bias, &bias);
  const Elf64_Shdr* sections = (const Elf64_Shdr*)(file + header->e_shoff);
  for (int s = 0; s < header->e_shnum; s++) {
    if (sections[s].sh_type != SHT_SYMTAB || sections[s].sh_link >= header->e_shnum) {
      continue;
    }
    const Elf64_Shdr* names = &sections[sections[s].sh_link];
    if (!inside(size, sections[s].sh_offset, sections[s].sh_size) ||
        !inside(size, names->sh_offset, names->sh_size)) {
      continue;
    }
    const Elf64_Sym* symbols = (const Elf64_Sym*)(file + sections[s].sh_offset);
    size_t count = sections[s].sh_size / sizeof(Elf64_Sym);
    for (size_t i = 0; i < count; i++) {
      const Elf64_Sym* symbol = &symbols[i];
      if (ELF64_ST_TYPE(symbol->st_info) != STT_FUNC || symbol->st_size == 0 ||
          symbol->st_name >= names->sh_size) {
        continue;
      }
      const char* name = (const char*)(file + names->sh_offset + symbol->st_name);
      size_t room = names->sh_size - symbol->st_name;
      if (sizeof(JSON_PARSE) <= room && memcmp(name, JSON_PARSE, sizeof(JSON_PARSE)) == 0) {
        json_parse = (parse_fn)(bias + symbol->st_value);
      }
      for (int c = 0; c < CALLERS; c++) {
        size_t length = strlen(CALLER_NAMES[c]);
        if (range_count[c] < MAX_RANGES && length < room &&
            strncmp(name, CALLER_NAMES[c], length) == 0) {
          range_start[c][range_count[c]] = bias + symbol->st_value;
          range_end[c][range_count[c]] = bias + symbol->st_value + symbol->st_size;
          range_count[c]++;
        }
      }
    }
  }
done:
  munmap((void*)file, size);
  int routed = route_body_parse();
  char path[4096];
  ssize_t length = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if ((range_count[TOPK_CLASSIFICATIONS] == 0 || range_count[PARSE_FINISHED] == 0 ||
       range_count[DEFER] == 0 || !routed) &&
      length > 0) {
    path[length] = '\0';
    const char* base = strrchr(path, '/');
    if (strcmp(base == NULL ? path : base + 1, "tritonserver") == 0) {
      static const char warning[] =
          "tritonhf request guard: this tritonserver lacks a TopkClassifications, "
          "htp__request_parse_fini_ or EVBufferToJson symbol (stripped?), so a "
          "classification request on a BYTES output, a large form-encoded HTTP body or a "
          "deeply nested JSON body can still crash it\n";
      ssize_t ignored = write(STDERR_FILENO, warning, sizeof(warning) - 1);
      (void)ignored;
    }
  }
}

typedef ssize_t (*send_fn)(int, const void*, size_t, int);
static send_fn library_send;

/* Commands evthr_defer could not write at once, in the order they were sent, per socket. */
struct deferred {
  struct deferred* next;
  int socket;
  int flags;
  size_t length;
  unsigned char bytes[32];
};
#define MAX_SOCKET 65536
static pthread_mutex_t deferred_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t deferred_added = PTHREAD_COND_INITIALIZER;
static struct deferred *deferred_first, *deferred_last;
static unsigned short deferred_count[MAX_SOCKET];
static int writer_started;

/* The thread that writes the queued commands as their sockets drain, oldest first. */
static void*
write_deferred(void* unused)
{
  (void)unused;
  for (;;) {
    pthread_mutex_lock(&deferred_lock);
    while (deferred_first == NULL) {
      pthread_cond_wait(&deferred_added, &deferred_lock);
    }
    struct deferred* next = deferred_first;
    pthread_mutex_unlock(&deferred_lock);
    struct pollfd writable = {.fd = next->socket, .events = POLLOUT};
    poll(&writable, 1, 100);
    ssize_t sent =
        library_send(next->socket, next->bytes, next->length, next->flags | MSG_NOSIGNAL);
    if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      continue; /* not drained yet */
    }
    pthread_mutex_lock(&deferred_lock);
    if (sent > 0 && (size_t)sent < next->length) { /* the rest stays first */
      memmove(next->bytes, next->bytes + sent, next->length - (size_t)sent);
      next->length -= (size_t)sent;
      pthread_mutex_unlock(&deferred_lock);
      continue;
    }
    deferred_first = next->next; /* written, or a socket that is gone: its thread stopped */
    if (deferred_first == NULL) {
      deferred_last = NULL;
    }
    deferred_count[next->socket]--;
    pthread_mutex_unlock(&deferred_lock);
    free(next);
  }
  return NULL;
}

/* Start write_deferred; 1 if it runs. */
static int
start_writer(void)
{
  pthread_t thread;
  pthread_attr_t attributes;
  pthread_attr_init(&attributes);
  pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
  int started = pthread_create(&thread, &attributes, write_deferred, NULL) == 0;
  pthread_attr_destroy(&attributes);
  return started;
}

/* Queue ``length`` bytes for ``socket`` (under deferred_lock); whether they were queued. */
static int
queue_deferred(int socket, const void* bytes, size_t length, int flags)
{
  struct deferred* entry = malloc(sizeof(*entry));
  if (entry == NULL || length > sizeof(entry->bytes) || deferred_count[socket] == 0xffff ||
      (!writer_started && (writer_started = start_writer()) == 0)) {
    free(entry);
    return 0;
  }
  *entry = (struct deferred){.socket = socket, .flags = flags, .length = length};
  memcpy(entry->bytes, bytes, length);
  if (deferred_last == NULL) {
    deferred_first = entry;
  } else {
    deferred_last->next = entry;
  }
  deferred_last = entry;
  deferred_count[socket]++;
  pthread_cond_signal(&deferred_added);
  return 1;
}

ssize_t
send(int socket, const void* bytes, size_t length, int flags)
{
  if (library_send == NULL) {
    library_send = (send_fn)dlsym(RTLD_NEXT, "send");
  }
  if (socket < 0 || socket >= MAX_SOCKET ||
      !called_from(DEFER, (uintptr_t)__builtin_return_address(0))) {
    return library_send(socket, bytes, length, flags);
  }
  pthread_mutex_lock(&deferred_lock);
  ssize_t sent = -1;
  int error = EAGAIN;
  if (deferred_count[socket] == 0) { /* nothing queued before it: try the socket now */
    sent = library_send(socket, bytes, length, flags);
    error = errno;
  }
  if ((sent < 0 && (error == EAGAIN || error == EWOULDBLOCK)) ||
      (sent >= 0 && (size_t)sent < length)) {
    size_t done = sent > 0 ? (size_t)sent : 0;
    if (queue_deferred(socket, (const unsigned char*)bytes + done, length - done, flags)) {
      sent = (ssize_t)length;
    }
  }
  pthread_mutex_unlock(&deferred_lock);
  errno = error;
  return sent;
}

int
strncasecmp(const char* left, const char* right, size_t count)
{
  static compare_fn library_compare;
  if (count == sizeof(FORM_TYPE) - 1 &&
      memcmp(right, FORM_TYPE, sizeof(FORM_TYPE) - 1) == 0 &&
      called_from(PARSE_FINISHED, (uintptr_t)__builtin_return_address(0))) {
    return 1; /* not a form: evhtp leaves the body alone */
  }
  if (library_compare == NULL) {
    library_compare = (compare_fn)dlsym(RTLD_NEXT, "strncasecmp");
  }
  if (library_compare == NULL) { /* cannot happen with glibc; compare here all the same */
    for (size_t i = 0; i < count; i++) {
      int a = (unsigned char)left[i], b = (unsigned char)right[i];
      a = (a >= 'A' && a <= 'Z') ? a + 32 : a;
      b = (b >= 'A' && b <= 'Z') ? b + 32 : b;
      if (a != b || a == 0) {
        return a - b;
      }
    }
    return 0;
  }
  return library_compare(left, right, count);
}

uint32_t
TRITONSERVER_DataTypeByteSize(int datatype)
{
  static byte_size_fn library_byte_size;
  if (library_byte_size == NULL) {
    library_byte_size = (byte_size_fn)dlsym(RTLD_NEXT, "TRITONSERVER_DataTypeByteSize");
  }
  uint32_t size = library_byte_size == NULL ? 0 : library_byte_size(datatype);
  if (size == 0 && datatype == TRITONSERVER_TYPE_BYTES &&
      called_from(TOPK_CLASSIFICATIONS, (uintptr_t)__builtin_return_address(0))) {
    return 1;
  }
  return size;
}

/* An error for an input whose shape does not fit its byte size, or NULL when it fits. */
static TRITONSERVER_Error*
misfit(const char* name, int datatype, const int64_t* shape, uint32_t dims, uint64_t byte_size)
{
  uint64_t count = 1;
  int overflow = 0, negative = 0;
  for (uint32_t d = 0; d < dims; d++) {
    if (shape[d] < 0) {
      negative = 1;
    } else if (__builtin_mul_overflow(count, (uint64_t)shape[d], &count)) {
      overflow = 1;
    }
  }
  uint32_t element = TRITONSERVER_DataTypeByteSize(datatype);
  uint64_t needed = 0;
  if (!negative && !overflow) {
    if (element == 0) { /* BYTES: at least a 4-byte length per element */
      if (count <= byte_size / 4) {
        return NULL;
      }
    } else if (!__builtin_mul_overflow(count, (uint64_t)element, &needed) &&
               needed <= byte_size) {
      return NULL;
    }
  }
  if (error_new == NULL) {
    error_new = (error_new_fn)dlsym(RTLD_NEXT, "TRITONSERVER_ErrorNew");
  }
  if (error_new == NULL) {
    return NULL;
  }
  char message[256];
  snprintf(
      message, sizeof(message),
      "input '%.64s' has a shape that does not fit its %llu bytes of data (%s)",
      name == NULL ? "?" : name, (unsigned long long)byte_size,
      negative ? "a negative dimension"
               : (overflow ? "its element count overflows" : "more elements than bytes hold"));
  return error_new(TRITONSERVER_ERROR_INVALID_ARG, message);
}

/* What Triton said of an input, handed on to the caller's pointers (any may be NULL). */
struct properties {
  const char* name;
  int datatype;
  const int64_t* shape;
  uint32_t dims;
  uint64_t byte_size;
  uint32_t buffers;
};

static TRITONSERVER_Error*
hand_on(
    TRITONSERVER_Error* error, const struct properties* own, const char** name, int* datatype,
    const int64_t** shape, uint32_t* dims_count, uint64_t* byte_size, uint32_t* buffer_count)
{
  if (error == NULL) {
    error = misfit(own->name, own->datatype, own->shape, own->dims, own->byte_size);
  }
  if (name != NULL) *name = own->name;
  if (datatype != NULL) *datatype = own->datatype;
  if (shape != NULL) *shape = own->shape;
  if (dims_count != NULL) *dims_count = own->dims;
  if (byte_size != NULL) *byte_size = own->byte_size;
  if (buffer_count != NULL) *buffer_count = own->buffers;
  return error;
}

TRITONSERVER_Error*
TRITONBACKEND_InputProperties(
    TRITONBACKEND_Input* input, const char** name, int* datatype, const int64_t** shape,
    uint32_t* dims_count, uint64_t* byte_size, uint32_t* buffer_count)
{
  static properties_fn library_properties;
  if (library_properties == NULL) {
    library_properties = (properties_fn)dlsym(RTLD_NEXT, "TRITONBACKEND_InputProperties");
  }
  if (library_properties == NULL) { /* not inside Triton: nothing to read */
    return NULL;
  }
  struct properties own = {0};
  TRITONSERVER_Error* error = library_properties(
      input, &own.name, &own.datatype, &own.shape, &own.dims, &own.byte_size, &own.buffers);
  return hand_on(error, &own, name, datatype, shape, dims_count, byte_size, buffer_count);
}

TRITONSERVER_Error*
TRITONBACKEND_InputPropertiesForHostPolicy(
    TRITONBACKEND_Input* input, const char* host_policy_name, const char** name, int* datatype,
    const int64_t** shape, uint32_t* dims_count, uint64_t* byte_size, uint32_t* buffer_count)
{
  static host_properties_fn library_properties;
  if (library_properties == NULL) {
    library_properties = (host_properties_fn)dlsym(
        RTLD_NEXT, "TRITONBACKEND_InputPropertiesForHostPolicy");
  }
  if (library_properties == NULL) { /* not inside Triton: nothing to read */
    return NULL;
  }
  struct properties own = {0};
  TRITONSERVER_Error* error = library_properties(
      input, host_policy_name, &own.name, &own.datatype, &own.shape, &own.dims,
      &own.byte_size, &own.buffers);
  return hand_on(error, &own, name, datatype, shape, dims_count, byte_size, buffer_count);
}

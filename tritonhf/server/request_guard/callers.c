/*
 * Finds, once at load, where the Triton functions each fix watches lie in this process: by name
 * in the executable's symbol table (a prefix, so every overload and .cold part counts). Then
 * routes the JSON body parse (json_depth.c), and in a tritonserver where something was not
 * found, says what stays exposed.
 */
#include "guard.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char* const CALLER_NAMES[CALLERS] = {
    "_ZN6triton6server19TopkClassifications",
    "htp__request_parse_fini_",
    "_ZN6triton6server12_GLOBAL__N_114EVBufferToJson",
    "evthr_defer",
    "_ZN6triton6server13HTTPAPIServer11HandleInfer",
    "_ZN6triton6server13HTTPAPIServer24GetInferenceHeaderLength",
    "_ZN6triton6server13HTTPAPIServer6HandleEP13evhtp_request",
};
static const char* const CALLEE_NAMES[CALLEES] = {
    "_ZN6triton6common10TritonJson5Value5ParseEPKcm",
    "_ZN6triton6server13HTTPAPIServer24EVRequestToTritonRequestEP13evhtp_requestRKNSt7__cxx11"
    "12basic_stringIcSt11char_traitsIcESaIcEEEP29TRITONSERVER_InferenceRequestP8evbufferPNS1_"
    "17InferRequestClassEm",
    "_ZN6triton6server13HTTPAPIServer16DecompressBufferEP13evhtp_requestPP8evbuffer",
    "_ZN6triton6server13HTTPAPIServer11HandleInferEP13evhtp_requestRKNSt7__cxx1112basic_string"
    "IcSt11char_traitsIcESaIcEEESB_",
    "evbuffer_free",
};

static struct ranges found[CALLERS];
static uintptr_t callees[CALLEES];

const struct ranges*
ranges_of(enum caller function)
{
  return &found[function];
}

int
called_from(enum caller function, uintptr_t address)
{
  for (int r = 0; r < found[function].count; r++) {
    if (address >= found[function].start[r] && address < found[function].end[r]) {
      return 1;
    }
  }
  return 0;
}

uintptr_t
address_of(enum callee function)
{
  return callees[function];
}

typedef TRITONSERVER_Error* (*error_new_fn)(int, const char*);

TRITONSERVER_Error*
invalid_argument(const char* message)
{
  static error_new_fn error_new;
  if (error_new == NULL) {
    error_new = (error_new_fn)dlsym(RTLD_NEXT, "TRITONSERVER_ErrorNew");
  }
  return error_new == NULL ? NULL : error_new(TRITONSERVER_ERROR_INVALID_ARG, message);
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

/* Record ``symbol`` (named ``name``, ``room`` bytes of string table left) if it is wanted. */
static void
record(const Elf64_Sym* symbol, const char* name, size_t room, uintptr_t bias)
{
  for (int c = 0; c < CALLEES; c++) {
    size_t length = strlen(CALLEE_NAMES[c]) + 1;
    if (length <= room && memcmp(name, CALLEE_NAMES[c], length) == 0) {
      callees[c] = bias + symbol->st_value;
    }
  }
  for (int c = 0; c < CALLERS; c++) {
    size_t length = strlen(CALLER_NAMES[c]);
    if (found[c].count < MAX_RANGES && length < room &&
        strncmp(name, CALLER_NAMES[c], length) == 0) {
      found[c].start[found[c].count] = bias + symbol->st_value;
      found[c].end[found[c].count] = bias + symbol->st_value + symbol->st_size;
      found[c].count++;
    }
  }
}

/* Read the executable's symbol table (it is not loaded: mapped from /proc/self/exe). */
static void
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
  if (memcmp(header->e_ident, ELFMAG, SELFMAG) != 0 ||
      header->e_ident[EI_CLASS] != ELFCLASS64 ||
      !inside(size, header->e_shoff, (uint64_t)header->e_shnum * sizeof(Elf64_Shdr))) {
    munmap((void*)file, size);
    return;
  }
  uintptr_t bias = 0;
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
      if (ELF64_ST_TYPE(symbol->st_info) == STT_FUNC && symbol->st_size != 0 &&
          symbol->st_name < names->sh_size) {
        const char* name = (const char*)(file + names->sh_offset + symbol->st_name);
        record(symbol, name, names->sh_size - symbol->st_name, bias);
      }
    }
  }
  munmap((void*)file, size);
}

/* Whether this process runs the tritonserver executable (not a backend stub). */
static int
is_tritonserver(void)
{
  char path[4096];
  ssize_t length = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (length <= 0) {
    return 0;
  }
  path[length] = '\0';
  const char* base = strrchr(path, '/');
  return strcmp(base == NULL ? path : base + 1, "tritonserver") == 0;
}

__attribute__((constructor)) static void
start_guard(void)
{
  find_callers();
  int routed = route_body_parse() & route_request_parse() & route_inflated_bodies();
  int complete = routed;
  for (int c = 0; c < CALLERS; c++) {
    complete = complete && found[c].count > 0;
  }
  if (!complete && is_tritonserver()) {
    static const char warning[] =
        "tritonhf request guard: this tritonserver lacks a TopkClassifications, "
        "htp__request_parse_fini_, EVBufferToJson, evthr_defer, HandleInfer, "
        "GetInferenceHeaderLength or Handle symbol (stripped?) or their calls to the JSON "
        "parser, EVRequestToTritonRequest and DecompressBuffer, so a classification request on "
        "a BYTES output, a large form-encoded HTTP body or a deeply nested JSON body can still "
        "crash it, HTTP responses can be lost under load, malformed HTTP requests are answered "
        "500, a malformed Inference-Header-Content-Length is read as 0, and a refused "
        "compressed request leaks its inflated body\n";
    ssize_t ignored = write(STDERR_FILENO, warning, sizeof(warning) - 1);
    (void)ignored;
  }
}

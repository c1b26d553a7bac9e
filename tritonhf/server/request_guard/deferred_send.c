/*
 * Responses lost under load. Triton's HTTP frontend hands each finished response to the
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
#include "guard.h"

#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

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

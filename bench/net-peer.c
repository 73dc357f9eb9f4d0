/*
 * net-peer: the far end of `npm run bench:net` (bench/net.ts). One program, run in two places:
 * inside the Linux guest (bin/net-peer of the net initramfs, scripts/fetch-linux.mjs), and on
 * the host for the loopback rows. Built with `gcc -static` (glibc's libc.a) by fetch-linux.
 *
 *   net-peer tcp IPV4 PORT SECS      connect over TCP (TCP_NODELAY)
 *   net-peer vsock CID PORT SECS     connect over AF_VSOCK
 *   net-peer unix PATH SECS          connect to a Unix stream socket
 *
 * Once connected it obeys the host: the benchmark, which measures every time on the host side,
 * sends 12-byte commands (three little-endian u32: op, a, b):
 *   1 SEND a    write a bytes                            (peer -> host throughput)
 *   2 RECV a    read a bytes, then write the byte 'k'    (host -> peer throughput)
 *   3 ECHO a    read a bytes, write them back            (one request/response round)
 *   4 QUIT      exit 0
 * Every wait is bounded by SECS (poll on a non-blocking socket, CLOCK_MONOTONIC deadline,
 * renewed by each command); a size above 64 MiB or an unknown op end the program with status 2;
 * errors go to stderr as "step: strerror", with status 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#define CHUNK 65536
#define MAX_BYTES (64u << 20)

static char buf[CHUNK];
static long long deadline;
static int secs;

static int fail(const char *step) {
  fprintf(stderr, "net-peer: %s: %s\n", step, strerror(errno));
  return 1;
}

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

/* Until fd has one of events, or the deadline (then ETIMEDOUT). */
static int wait_fd(int fd, short events) {
  for (;;) {
    long long left = deadline - now_ms();
    if (left <= 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    struct pollfd p = { .fd = fd, .events = events };
    int r = poll(&p, 1, left > 3600000 ? 3600000 : (int)left);
    if (r > 0) return 0;
    if (r < 0 && errno != EINTR) return -1;
  }
}

/* Exactly n bytes into p (NULL: discard them); the peer's end first is ECONNRESET. */
static int read_exact(int fd, char *p, size_t n) {
  while (n) {
    if (wait_fd(fd, POLLIN) < 0) return -1;
    size_t want = n < CHUNK ? n : CHUNK;
    ssize_t r = read(fd, p ? p : buf, want);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return -1;
    }
    if (r == 0) {
      errno = ECONNRESET;
      return -1;
    }
    if (p) p += r;
    n -= (size_t)r;
  }
  return 0;
}

/* n bytes from p (NULL: from the zero-filled chunk buffer, repeated). */
static int write_all(int fd, const char *p, size_t n) {
  while (n) {
    if (wait_fd(fd, POLLOUT) < 0) return -1;
    size_t want = n < CHUNK ? n : CHUNK;
    ssize_t w = write(fd, p ? p : buf, want);
    if (w < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return -1;
    }
    if (p) p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* A non-blocking connect, retried (the host's listener may not be up yet) until the deadline. */
static int connect_to(int family, const struct sockaddr *addr, socklen_t len) {
  for (;;) {
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (family == AF_VSOCK) {
      struct timeval tv = { .tv_sec = secs };
      setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_CONNECT_TIMEOUT, &tv, sizeof tv);
    }
    int err = 0;
    if (connect(fd, addr, len) < 0) {
      err = errno;
      if (err == EINPROGRESS) {
        if (wait_fd(fd, POLLOUT) < 0) return -1;
        socklen_t l = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0) return -1;
      }
    }
    if (!err) return fd;
    close(fd);
    if (now_ms() >= deadline) {
      errno = err;
      return -1;
    }
    usleep(100000);
  }
}

static int serve(int fd) {
  static char echo[CHUNK];
  for (;;) {
    uint32_t cmd[3];
    deadline = now_ms() + secs * 1000LL;
    if (read_exact(fd, (char *)cmd, sizeof cmd) < 0) return fail("read a command");
    uint32_t op = cmd[0], a = cmd[1];
    if (a > MAX_BYTES) {
      fprintf(stderr, "net-peer: size %u over %u\n", a, MAX_BYTES);
      return 2;
    }
    switch (op) {
      case 1:
        if (write_all(fd, NULL, a) < 0) return fail("SEND");
        break;
      case 2:
        if (read_exact(fd, NULL, a) < 0 || write_all(fd, "k", 1) < 0) return fail("RECV");
        break;
      case 3:
        if (a > CHUNK) {
          fprintf(stderr, "net-peer: ECHO size %u over %u\n", a, CHUNK);
          return 2;
        }
        if (read_exact(fd, echo, a) < 0 || write_all(fd, echo, a) < 0) return fail("ECHO");
        break;
      case 4:
        close(fd);
        return 0;
      default:
        fprintf(stderr, "net-peer: unknown op %u\n", op);
        return 2;
    }
  }
}

static int usage(void) {
  fprintf(stderr, "usage: net-peer tcp IPV4 PORT SECS | vsock CID PORT SECS | unix PATH SECS\n");
  return 2;
}

int main(int argc, char **argv) {
  int fd;
  if (argc == 5 && !strcmp(argv[1], "tcp")) {
    secs = atoi(argv[4]);
    deadline = now_ms() + secs * 1000LL;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3])) };
    if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1) return usage();
    fd = connect_to(AF_INET, (struct sockaddr *)&a, sizeof a);
    if (fd < 0) return fail("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  } else if (argc == 5 && !strcmp(argv[1], "vsock")) {
    secs = atoi(argv[4]);
    deadline = now_ms() + secs * 1000LL;
    struct sockaddr_vm a = { .svm_family = AF_VSOCK, .svm_cid = (unsigned)strtoul(argv[2], NULL, 0), .svm_port = (unsigned)strtoul(argv[3], NULL, 0) };
    fd = connect_to(AF_VSOCK, (struct sockaddr *)&a, sizeof a);
    if (fd < 0) return fail("connect");
  } else if (argc == 4 && !strcmp(argv[1], "unix")) {
    secs = atoi(argv[3]);
    deadline = now_ms() + secs * 1000LL;
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    if (strlen(argv[2]) >= sizeof a.sun_path) return usage();
    strcpy(a.sun_path, argv[2]);
    fd = connect_to(AF_UNIX, (struct sockaddr *)&a, sizeof a);
    if (fd < 0) return fail("connect");
  } else {
    return usage();
  }
  if (secs <= 0) return usage();
  return serve(fd);
}

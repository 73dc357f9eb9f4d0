/*
 * The C baseline for `npm run bench`: the same guest loop as the TypeScript scenarios,
 * driven by a plain KVM_RUN loop with no runtime in between.
 *
 *   vmmapi_bench_baseline in|out ITERATIONS [direct|futex|spin|spin-server] [VCPUS]
 *
 * `direct` (default) answers each exit in the vCPU thread. The other modes hand each exit
 * to a server thread and wait for its answer — the runner's main-thread path in C: `futex`
 * sleeps at once on both sides, `spin` spins up to 50 µs before sleeping on both sides, and
 * `spin-server` spins on the server's side only (the vCPU threads sleep at once: the
 * runner's policy when its vCPUs outnumber the spare CPUs). They are the fixed hand-off
 * policies the runner's adaptive one is measured against. VCPUS (default 1)
 * vCPU threads each run the loop, all answered by the one server thread, which waits on a
 * doorbell that every vCPU rings — the runner's shape with several vCPUs.
 *
 * Prints one line: `exits=N seconds=S` (N: every vCPU's exits; S: from the first vCPU
 * thread's start to the last one's final exit).
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "baseline: %s: %s\n", what, strerror(errno));
  exit(1);
}

#define MAX_VCPUS 8

/* ---- the cross-thread hand-off (modes futex and spin) ---- */
/*
 * Free-running counters: a vCPU thread bumps its `req` and the doorbell per exit, the
 * server bumps that vCPU's `rep` per answer. Each vCPU's mailbox has a cache line of its own.
 */
struct mailbox {
  _Atomic uint32_t req, rep;
  uint8_t *volatile answer_at;
} __attribute__((aligned(64)));
static struct mailbox box[MAX_VCPUS];
static _Atomic uint32_t bell __attribute__((aligned(64)));
static _Atomic int quit;
static int spin_vcpu, spin_server;
static int handoff;
static int nvcpus = 1;

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void futex_wait(_Atomic uint32_t *w, uint32_t v) { syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0); }
static void futex_wake(_Atomic uint32_t *w) { syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0); }

/* Wait while *w == v: spin up to 50 us first if `spin`, then sleep. */
static void wait_while(_Atomic uint32_t *w, uint32_t v, int spin) {
  if (spin) {
    double end = now_us() + 50;
    for (int i = 0; atomic_load(w) == v; i++)
      if ((i & 63) == 0 && now_us() >= end) break;
  }
  while (atomic_load(w) == v) futex_wait(w, v);
}

/* The server thread: answer every vCPU's posted exits, then wait for the doorbell. */
static void *server(void *arg) {
  (void)arg;
  uint32_t served[MAX_VCPUS] = {0};
  for (;;) {
    uint32_t seen = atomic_load(&bell);
    if (atomic_load(&quit)) return NULL;
    for (int i = 0; i < nvcpus; i++) {
      struct mailbox *b = &box[i];
      if (atomic_load(&b->req) == served[i]) continue;
      served[i]++;
      if (b->answer_at) b->answer_at[0] = 0x42;
      atomic_fetch_add(&b->rep, 1);
      futex_wake(&b->rep);
    }
    wait_while(&bell, seen, spin_server);
  }
}

/* A vCPU thread's side: post the exit, ring the doorbell and wait for the answer. */
static void hand_off(struct mailbox *b, uint8_t *data) {
  uint32_t r = atomic_load(&b->rep);
  b->answer_at = data;
  atomic_fetch_add(&b->req, 1);
  atomic_fetch_add(&bell, 1);
  futex_wake(&bell);
  wait_while(&b->rep, r, spin_vcpu);
}

/* ---- the VM ---- */
static int kvm, vm;
static int runsz;
static int in;
static uint32_t n;
static struct { uint32_t nent, pad; struct kvm_cpuid_entry2 e[256]; } cpuid = {.nent = 256};

struct vcpu {
  int index, fd;
  struct kvm_run *run;
  uint64_t exits;
  pthread_t thread;
};

/* Create vCPU `i`, starting at its own copy of the loop (0x1000 + i * 0x100). */
static void create_vcpu(struct vcpu *v, int i) {
  v->index = i;
  v->fd = ioctl(vm, KVM_CREATE_VCPU, i);
  if (v->fd < 0) die("KVM_CREATE_VCPU");
  /* guests need KVM_SET_CPUID2 on this host (DESIGN.md §1) */
  if (ioctl(v->fd, _IOC(_IOC_WRITE, KVMIO, 0x90, 8), &cpuid) < 0) die("KVM_SET_CPUID2");
  v->run = mmap(NULL, runsz, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
  if (v->run == MAP_FAILED) die("mmap kvm_run");
  struct kvm_sregs s;
  if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0) die("KVM_GET_SREGS");
  s.cs.base = 0; s.cs.selector = 0;
  if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs = {.rip = 0x1000 + 0x100 * i, .rflags = 2};
  if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
}

/* One vCPU's KVM_RUN loop, until its final HLT. */
static void *vcpu_loop(void *arg) {
  struct vcpu *v = arg;
  struct kvm_run *run = v->run;
  for (;;) {
    if (ioctl(v->fd, KVM_RUN, 0) < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      die("KVM_RUN");
    }
    if (run->exit_reason == KVM_EXIT_IO) {
      v->exits++;
      uint8_t *data = (uint8_t *)run + run->io.data_offset;
      if (handoff) hand_off(&box[v->index], run->io.direction == KVM_EXIT_IO_IN ? data : NULL);
      else if (run->io.direction == KVM_EXIT_IO_IN) data[0] = 0x42;
      continue;
    }
    if (run->exit_reason == KVM_EXIT_HLT) return NULL;
    fprintf(stderr, "baseline: unexpected exit %u\n", run->exit_reason);
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc < 3 || argc > 5) {
    fprintf(stderr, "usage: %s in|out ITERATIONS [direct|futex|spin|spin-server] [VCPUS]\n", argv[0]);
    return 2;
  }
  const char *mode = argc >= 4 ? argv[3] : "direct";
  handoff = strcmp(mode, "direct") != 0;
  spin_vcpu = strcmp(mode, "spin") == 0;
  spin_server = spin_vcpu || strcmp(mode, "spin-server") == 0;
  if (handoff && !spin_server && strcmp(mode, "futex") != 0) {
    fprintf(stderr, "baseline: unknown mode %s\n", mode);
    return 2;
  }
  if (argc == 5) nvcpus = atoi(argv[4]);
  if (nvcpus < 1 || nvcpus > MAX_VCPUS) {
    fprintf(stderr, "baseline: VCPUS must be 1 to %d\n", MAX_VCPUS);
    return 2;
  }
  pthread_t srv;
  if (handoff && pthread_create(&srv, NULL, server, NULL) != 0) die("pthread_create");
  in = strcmp(argv[1], "in") == 0;
  n = (uint32_t)strtoul(argv[2], NULL, 0);
  kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("open /dev/kvm");
  vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfeffd000ul) < 0) die("KVM_SET_TSS_ADDR");
  size_t memsz = 0x10000;
  uint8_t *mem = mmap(NULL, memsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  /* mov $n,%ecx ; 1: in $0x90,%al | out %al,$0x91 ; dec %ecx ; jnz 1b ; out %al,$0x92 ; cli ; hlt
     (bench/guest-loop.ts has the same code; the runner rows stop their clock at the write to 0x92) */
  uint8_t code[] = {0x66, 0xb9, 0, 0, 0, 0, 0xe4, 0x90, 0x66, 0x49, 0x75, 0xfa, 0xe6, 0x92, 0xfa, 0xf4};
  memcpy(code + 2, &n, 4);
  if (!in) { code[6] = 0xe6; code[7] = 0x91; }
  for (int i = 0; i < nvcpus; i++) memcpy(mem + 0x1000 + 0x100 * i, code, sizeof code);
  struct kvm_userspace_memory_region r = {.slot = 0, .guest_phys_addr = 0, .memory_size = memsz, .userspace_addr = (uint64_t)mem};
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) die("KVM_SET_USER_MEMORY_REGION");
  if (ioctl(kvm, _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, 8), &cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
  runsz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  static struct vcpu vcpus[MAX_VCPUS];
  for (int i = 0; i < nvcpus; i++) create_vcpu(&vcpus[i], i);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (nvcpus == 1) vcpu_loop(&vcpus[0]); /* on this thread, as before threads were an option */
  else {
    for (int i = 0; i < nvcpus; i++)
      if (pthread_create(&vcpus[i].thread, NULL, vcpu_loop, &vcpus[i]) != 0) die("pthread_create");
    for (int i = 0; i < nvcpus; i++) pthread_join(vcpus[i].thread, NULL);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  uint64_t exits = 0;
  for (int i = 0; i < nvcpus; i++) exits += vcpus[i].exits;
  if (handoff) {
    atomic_store(&quit, 1);
    atomic_fetch_add(&bell, 1);
    futex_wake(&bell);
    pthread_join(srv, NULL);
  }
  printf("exits=%llu seconds=%.6f\n", (unsigned long long)exits, secs);
  return 0;
}

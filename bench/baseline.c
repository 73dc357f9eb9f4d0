/*
 * The C baseline for `npm run bench`: the same guest loop as the TypeScript scenarios,
 * driven by a plain KVM_RUN loop with no runtime in between.
 *
 *   vmmapi_bench_baseline in|out ITERATIONS
 *
 * Prints one line: `exits=N seconds=S`.
 */
#include <errno.h>
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

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s in|out ITERATIONS\n", argv[0]);
    return 2;
  }
  int in = strcmp(argv[1], "in") == 0;
  uint32_t n = (uint32_t)strtoul(argv[2], NULL, 0);
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("open /dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfeffd000ul) < 0) die("KVM_SET_TSS_ADDR");
  size_t memsz = 0x10000;
  uint8_t *mem = mmap(NULL, memsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  /* mov $n,%ecx ; 1: in $0x90,%al | out %al,$0x91 ; dec %ecx ; jnz 1b ; cli ; hlt */
  uint8_t code[] = {0x66, 0xb9, 0, 0, 0, 0, 0xe4, 0x90, 0x66, 0x49, 0x75, 0xfa, 0xfa, 0xf4};
  memcpy(code + 2, &n, 4);
  if (!in) { code[6] = 0xe6; code[7] = 0x91; }
  memcpy(mem + 0x1000, code, sizeof code);
  struct kvm_userspace_memory_region r = {.slot = 0, .guest_phys_addr = 0, .memory_size = memsz, .userspace_addr = (uint64_t)mem};
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) die("KVM_SET_USER_MEMORY_REGION");
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  /* guests need KVM_SET_CPUID2 on this host (DESIGN.md §1) */
  struct { uint32_t nent, pad; struct kvm_cpuid_entry2 e[256]; } cpuid = {.nent = 256};
  if (ioctl(kvm, _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, 8), &cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
  if (ioctl(vcpu, _IOC(_IOC_WRITE, KVMIO, 0x90, 8), &cpuid) < 0) die("KVM_SET_CPUID2");
  int runsz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run *run = mmap(NULL, runsz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap kvm_run");
  struct kvm_sregs s;
  if (ioctl(vcpu, KVM_GET_SREGS, &s) < 0) die("KVM_GET_SREGS");
  s.cs.base = 0; s.cs.selector = 0;
  if (ioctl(vcpu, KVM_SET_SREGS, &s) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs = {.rip = 0x1000, .rflags = 2};
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  uint64_t exits = 0;
  for (;;) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      die("KVM_RUN");
    }
    if (run->exit_reason == KVM_EXIT_IO) {
      exits++;
      uint8_t *data = (uint8_t *)run + run->io.data_offset;
      if (run->io.direction == KVM_EXIT_IO_IN) data[0] = 0x42;
      continue;
    }
    if (run->exit_reason == KVM_EXIT_HLT) break;
    fprintf(stderr, "baseline: unexpected exit %u\n", run->exit_reason);
    return 1;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("exits=%llu seconds=%.6f\n", (unsigned long long)exits, secs);
  return 0;
}

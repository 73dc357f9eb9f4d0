/*
 * snap-compute: a Multiboot (v1) kernel in C for the snapshot tests (test/guest/snapshot.test.ts):
 * a computation whose state lives in memory, in registers and on the stack, reported round by
 * round on COM1, so that a run snapshotted in the middle and restored must end exactly as an
 * uninterrupted one.
 *
 * The Multiboot command line may hold `rounds=N` (1-10000, default 60). A 64 KiB table is
 * filled from a seed; each round stirs 2048 of its words (xorshift, with the round number and
 * the word's neighbour), folds the whole table into a running digest every eighth round, and
 * prints "round K digest 0x........". The last lines are "snap-compute: result 0x........"
 * and "snap-compute: PASS" (debug-exit value 0, VMM status 1).
 */
#include "guest.h"

#define WORDS 16384 /* 64 KiB */
#define STIR 2048

static u32 table[WORDS];
static u32 rounds = 60;

static void parse_cmdline(const struct multiboot_info *info)
{
	if (!(info->flags & 4) || !info->cmdline)
		return;
	const char *p = (const char *)info->cmdline;
	for (; *p; p++) {
		if (p[0] == 'r' && p[1] == 'o' && p[2] == 'u' && p[3] == 'n' && p[4] == 'd' && p[5] == 's' && p[6] == '=') {
			u32 n = 0;
			for (p += 7; *p >= '0' && *p <= '9'; p++)
				n = n * 10 + (u32)(*p - '0');
			if (n >= 1 && n <= 10000)
				rounds = n;
			return;
		}
	}
}

static u32 xorshift(u32 x)
{
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return x;
}

int main(u32 magic, const struct multiboot_info *info)
{
	print("snap-compute: start\n");
	if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
		print("snap-compute: FAIL not entered by a Multiboot loader\n");
		return 1;
	}
	parse_cmdline(info);
	print("snap-compute: rounds ");
	print_dec(rounds);
	putch('\n');
	u32 x = 0x9e3779b9u;
	for (u32 i = 0; i < WORDS; i++) {
		x = xorshift(x);
		table[i] = x;
	}
	u32 digest = 0x811c9dc5u;
	for (u32 r = 1; r <= rounds; r++) {
		for (u32 k = 0; k < STIR; k++) {
			x = xorshift(x + r);
			u32 i = x % WORDS;
			table[i] = xorshift(table[i] ^ table[(i + 1) % WORDS] ^ r);
		}
		if (r % 8 == 0)
			for (u32 i = 0; i < WORDS; i++)
				digest = (digest ^ table[i]) * 16777619u;
		digest = (digest ^ x) * 16777619u;
		print("round ");
		print_dec(r);
		print(" digest ");
		print_hex(digest, 8);
		putch('\n');
	}
	print("snap-compute: result ");
	print_hex(digest, 8);
	print("\nsnap-compute: PASS\n");
	return 0;
}

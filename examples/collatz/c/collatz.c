// collatz: a Hydra WebAssembly example in C, without any libc. Item n is the starting number n+1;
// hydra_map returns, over its items, the largest (steps << 40 | n+1) where steps is the number of
// Collatz steps n+1 takes to reach 1, so the job's `max` holds the longest-running start below
// items+1 (the low 40 bits) and its step count (the high bits). Build: see ../../build.

typedef unsigned long long u64;

#define EXPORT(name) __attribute__((export_name(name)))

// steps counts the Collatz steps from n to 1 (n >= 1); it stops at 2^24 steps so that a value
// always fits in the 24 high bits.
static u64 steps(u64 n) {
	u64 s = 0;
	while (n != 1 && s < (1u << 24) - 1) {
		n = (n & 1) ? 3 * n + 1 : n >> 1;
		s++;
	}
	return s;
}

EXPORT("hydra_map") long long hydra_map(long long lo, long long hi) {
	u64 best = 0;
	for (u64 i = (u64)lo; i < (u64)hi; i++) {
		u64 n = i + 1;
		u64 v = steps(n) << 40 | (n & ((1ull << 40) - 1));
		if (v > best) best = v;
	}
	return (long long)best;
}

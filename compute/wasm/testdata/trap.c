// trap: hydra_map returns its item count, but traps (unreachable) on item 5000.
__attribute__((export_name("hydra_map"))) long long hydra_map(long long lo, long long hi) {
	if (lo <= 5000 && 5000 < hi) __builtin_trap();
	return hi - lo;
}

// grow: hydra_map grows the memory until memory.grow fails (the engine's page cap), then traps:
// a module allocating past the cap.
__attribute__((export_name("hydra_map"))) long long hydra_map(long long lo, long long hi) {
	long long pages = 0;
	while (__builtin_wasm_memory_grow(0, 16) != (unsigned long)-1) pages += 16;
	__builtin_trap();
	return pages;
}

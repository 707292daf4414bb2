// loop: hydra_map never returns for an item range that holds item 1000 (a module stuck in an
// endless loop); the call deadline fails it.
__attribute__((export_name("hydra_map"))) long long hydra_map(long long lo, long long hi) {
	volatile long long n = 0;
	if (lo <= 1000 && 1000 < hi)
		for (;;) n++;
	return hi - lo;
}

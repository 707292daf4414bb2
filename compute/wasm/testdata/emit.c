// emit: a concat module. hydra_init takes the params (a one-byte separator); hydra_map emits, per
// item i, the decimal digits of i*i followed by the separator, and returns the item count.
__attribute__((import_module("hydra"), import_name("emit"))) void emit(const char *p, int n);

static char sep = '\n';

__attribute__((export_name("hydra_init"))) void hydra_init(const char *p, int n) {
	if (n > 0) sep = p[0];
}

__attribute__((export_name("hydra_map"))) long long hydra_map(long long lo, long long hi) {
	char buf[24];
	for (long long i = lo; i < hi; i++) {
		unsigned long long v = (unsigned long long)i * (unsigned long long)i;
		int k = sizeof buf;
		buf[--k] = sep;
		do { buf[--k] = '0' + v % 10; v /= 10; } while (v);
		emit(buf + k, sizeof buf - k);
	}
	return hi - lo;
}

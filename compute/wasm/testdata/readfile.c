// readfile: a hostile module that tries to open /etc/passwd through WASI path_open. Refused at
// upload: path_open is outside the allow-list.
#define WASI(name) __attribute__((import_module("wasi_snapshot_preview1"), import_name(name)))
WASI("path_open") int path_open(int fd, int dirflags, const char *path, int pathlen, int oflags,
	long long rights, long long inherit, int fdflags, int *out);
__attribute__((export_name("hydra_map"))) long long hydra_map(long long lo, long long hi) {
	int fd = 0;
	return path_open(3, 0, "/etc/passwd", 11, 0, ~0ll, ~0ll, 0, &fd) == 0 ? fd : -1;
}

// socket: a hostile module that tries to accept a connection through WASI sock_accept. Refused
// at upload: sockets are outside the allow-list.
#define WASI(name) __attribute__((import_module("wasi_snapshot_preview1"), import_name(name)))
WASI("sock_accept") int sock_accept(int fd, int flags, int *out);
__attribute__((export_name("hydra_map"))) long long hydra_map(long long lo, long long hi) {
	int fd = 0;
	return sock_accept(3, 0, &fd) == 0 ? fd : -1;
}

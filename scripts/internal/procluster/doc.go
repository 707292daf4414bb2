// Package procluster is the process harness shared by the benchmark programs under scripts/
// (benchfailover, benchcluster, benchowner): it starts real `hydra node` processes on loopback,
// keeps track of every process a program starts so that none outlives it, reads their CPU and
// memory from /proc, and asks their HTTP API whether they form one stable cluster.
//
// The programs are main packages, which cannot import one another; before this package each
// carried its own copy of this code, and the copies drifted. What is specific to one benchmark
// (its flags, its measurements, its report) stays in that program.
//
// Every node it prepares is kept off the real network: --mdns=false, ports on 127.0.0.1 only,
// and every other node given by address with --join.
//
// Linux only: it relies on Pdeathsig (the kernel kills a child when this program dies) and on
// /proc. Nothing here imports the node's own packages; it speaks to a node through its command
// line, its log file and GET /api/v1/status, as a person would.
package procluster

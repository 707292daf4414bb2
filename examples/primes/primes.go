// Command primes is a Hydra WebAssembly example: it counts the primes p in an item range, or with
// params {"k": K} the primes p for which p+K is prime too (K=2: twin primes). Built for wasip1 it
// is a module (main_wasm.go); built natively it is the same code as a command, the reference its
// results are checked against (primes_test.go).
package main

import (
	"math/bits"
	"strconv"
	"strings"
)

// k is the gap of the prime pairs counted (0: count primes).
var k uint64

// setParams reads {"k": K}; anything else leaves k at 0. A tiny parser instead of encoding/json
// keeps the module small.
func setParams(p string) {
	i := strings.Index(p, `"k"`)
	if i < 0 {
		return
	}
	rest := strings.TrimLeft(p[i+3:], " \t\n:")
	j := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if j < 0 {
		j = len(rest)
	}
	k, _ = strconv.ParseUint(rest[:j], 10, 64)
}

// count is the value of items [lo, hi): how many n in it are prime (and n+k prime when k > 0).
func count(lo, hi uint64) uint64 {
	var c uint64
	for n := lo; n < hi; n++ {
		if isPrime(n) && (k == 0 || isPrime(n+k)) {
			c++
		}
	}
	return c
}

// isPrime is a deterministic Miller–Rabin test: bases 2, 7, 61 are exact below 2³², the first
// twelve primes below 2⁶⁴.
func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for _, p := range [...]uint64{2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37} {
		if n%p == 0 {
			return n == p
		}
	}
	if n < 41*41 {
		return true
	}
	d, s := n-1, 0
	for d%2 == 0 {
		d, s = d/2, s+1
	}
	bases := []uint64{2, 7, 61}
	if n >= 1<<32 {
		bases = []uint64{2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37}
	}
next:
	for _, a := range bases {
		x := powMod(a, d, n)
		if x == 1 || x == n-1 {
			continue
		}
		for range s - 1 {
			x = mulMod(x, x, n)
			if x == n-1 {
				continue next
			}
		}
		return false
	}
	return true
}

func mulMod(a, b, m uint64) uint64 {
	if m < 1<<32 {
		return a * b % m
	}
	hi, lo := bits.Mul64(a, b)
	return bits.Rem64(hi, lo, m)
}

func powMod(a, e, m uint64) uint64 {
	r := uint64(1)
	a %= m
	for ; e > 0; e >>= 1 {
		if e&1 == 1 {
			r = mulMod(r, a, m)
		}
		a = mulMod(a, a, m)
	}
	return r
}

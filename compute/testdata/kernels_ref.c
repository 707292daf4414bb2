/* Straightforward C of the Hydra kernels (docs/design.md §4), the yardstick for the Go kernels.
 * Build: gcc -O3 -march=native -ffp-contract=off kernels_ref.c -o kernels_ref
 * Prints rates on one core and a few results so the benchmark script can check agreement. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t pi_hits(uint64_t seed, uint64_t start, uint64_t end) {
    uint64_t hits = 0;
    for (uint64_t i = start; i < end; i++) {
        uint64_t r = mix(seed + (i + 1) * 0x9e3779b97f4a7c15ULL);
        uint64_t x = (uint64_t)(uint32_t)r >> 1;
        uint64_t y = (r >> 32) >> 1;
        if (x * x + y * y < (1ULL << 62)) hits++;
    }
    return hits;
}

/* Returns the sum of the counts (the iterations done). */
uint64_t mandel(int w, int h, double cx, double cy, double span, uint32_t maxIter, uint32_t *out) {
    double s = span / w;
    uint64_t total = 0;
    for (int py = 0; py < h; py++) {
        double ci = cy - (py - h / 2.0 + 0.5) * s;
        for (int px = 0; px < w; px++) {
            double cr = cx + (px - w / 2.0 + 0.5) * s;
            double zr = 0, zi = 0;
            uint32_t n = 0;
            for (; n < maxIter; n++) {
                double zr2 = zr * zr, zi2 = zi * zi;
                if (zr2 + zi2 > 4) break;
                double t = zr * zi;
                zi = (t + t) + ci;
                zr = (zr2 - zi2) + cr;
            }
            out[py * w + px] = n;
            total += n;
        }
    }
    return total;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint32_t fnv32(const uint32_t *v, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 4; b++) { h ^= (v[i] >> (8 * b)) & 0xff; h *= 16777619u; }
    return h;
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 1.0;
    /* correctness markers, compared with the Go tests' golden values */
    printf("check_pi7_1e6 %llu\n", (unsigned long long)pi_hits(7, 0, 1000000));
    {
        static uint32_t img[40 * 23];
        mandel(40, 23, -0.743643887, 0.131825904, 0.0002, 2000, img);
        printf("check_mandel_deep 0x%08x\n", fnv32(img, 40 * 23));
    }
    /* π: samples per second */
    {
        uint64_t n = 0, sink = 0, chunk = 1 << 22;
        double t0 = now(), t;
        do { sink += pi_hits(7, n, n + chunk); n += chunk; t = now() - t0; } while (t < secs);
        printf("pi_gsamples_per_s %.4f (sink %llu)\n", n / t / 1e9, (unsigned long long)sink);
    }
    /* Mandelbrot: the benchmark view of compute/kernel_test.go (benchView) */
    {
        static uint32_t img[320 * 240];
        uint64_t iters = 0;
        double t0 = now(), t;
        do { iters += mandel(320, 240, -0.743643887, 0.131825904, 0.002, 2000, img); t = now() - t0; } while (t < secs);
        printf("mandel_giters_per_s %.4f\n", iters / t / 1e9);
    }
    return 0;
}

/*
 * madvise: what returning freed pages costs, with MADV_DONTNEED and with MADV_FREE.
 *
 * For each advice: map 256 MiB, write every page, advise the whole range, read the resident set
 * (VmRSS), then write every page again. Prints the time of the advice, the RSS after it, and the
 * time and minor faults of the rewrite. MADV_DONTNEED drops the pages at once (RSS falls, the
 * rewrite faults every page in again); MADV_FREE only marks them, so the kernel takes them when it
 * is short of memory, RSS stays up until then, and a rewrite before that costs no fault.
 *
 *   madvise [MIB]      (default 256)
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = atol(line + 6);
    if (f)
        fclose(f);
    return kib;
}

static long faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

int main(int argc, char **argv)
{
    size_t size = (size_t)(argc > 1 ? atol(argv[1]) : 256) << 20;
    const struct { const char *name; int advice; } kinds[] = { { "MADV_DONTNEED", MADV_DONTNEED }, { "MADV_FREE", MADV_FREE } };
    for (int k = 0; k < 2; k++) {
        unsigned char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return 1;
        for (size_t i = 0; i < size; i += 4096)
            p[i] = 1;
        long before = rss_kib();
        double t0 = now();
        if (madvise(p, size, kinds[k].advice) != 0) {
            perror("madvise");
            return 1;
        }
        double t1 = now();
        long after = rss_kib(), f0 = faults();
        double t2 = now();
        for (size_t i = 0; i < size; i += 4096)
            p[i] = 2;
        double t3 = now();
        long f1 = faults();
        printf("%-13s advise %7.2f ms   RSS %6ld -> %6ld MiB   rewrite %7.2f ms, %6ld faults (%.2f us each)\n",
               kinds[k].name, (t1 - t0) * 1e3, before >> 10, after >> 10, (t3 - t2) * 1e3, f1 - f0,
               f1 > f0 ? (t3 - t2) * 1e6 / (double)(f1 - f0) : 0.0);
        munmap(p, size);
    }
    return 0;
}

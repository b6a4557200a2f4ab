/* threads_churn.c: create and join many short-lived threads that allocate.
 *
 *   usage: threads_churn [threads=100000] [max_peak_rss_mib=200]
 *
 * Threads are started eight at a time (256 KiB stacks) and joined. Each allocates 4..20 blocks (16 B .. 1 KiB,
 * 9% up to 8 KiB, 1% 64 KiB, 0.02% 1.5 MiB), writes and re-reads them, frees most and hands two small
 * ones back to the main thread, which keeps them in a ring and frees them much later, long after
 * their thread exited (a free into an abandoned heap). So every thread needs a heap: the heaps
 * of exited threads must be reused, not leaked. At the end the peak RSS (VmHWM) must stay under
 * the limit, and the RSS must not keep growing (final <= 2 x RSS after 20% of the threads +
 * 64 MiB). stdout: a checksum that depends only on the thread count; RSS figures go to stderr.
 * Exit status 1 on any failure.
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH 8
#define RING  4096
#define KEEP  2

typedef struct {
    unsigned idx;
    uint64_t sum;
    unsigned char *keep[KEEP];
    size_t keep_size[KEEP];
    int error;
} job_t;

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27; x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void fill(unsigned char *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i += 8) {
        uint64_t w = mix64(seed + i);
        memcpy(p + i, &w, n - i < 8 ? n - i : 8);
    }
}

/* returns a digest of the contents, or 0 with *bad set if they are not what fill wrote */
static uint64_t digest(const unsigned char *p, size_t n, uint64_t seed, int *bad) {
    uint64_t d = n;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t w = mix64(seed + i), v = 0;
        size_t k = n - i < 8 ? n - i : 8;
        memcpy(&v, p + i, k);
        if (k < 8) w &= (((uint64_t)1 << (k * 8)) - 1);
        if (v != w) { *bad = 1; return 0; }
        d = mix64(d ^ v);
    }
    return d;
}

static void *thread_main(void *arg) {
    job_t *j = arg;
    uint64_t r = mix64(j->idx + 1);
    unsigned n = 4 + (unsigned)(r % 17);
    unsigned char *b[20];
    size_t sz[20];
    for (unsigned k = 0; k < n; k++) {
        r = mix64(r);
        unsigned sel = (unsigned)(r % 10000);
        sz[k] = sel < 2 ? (size_t)1536 << 10 : sel < 100 ? (size_t)65536 : sel < 1000 ? 16 + (size_t)(r >> 20) % 8177
              : 16 + (size_t)(r >> 20) % 1009;
        b[k] = malloc(sz[k]);
        if (!b[k] || ((uintptr_t)b[k] & 15)) { j->error = 1; return NULL; }
        fill(b[k], sz[k], r);
        j->sum = mix64(j->sum ^ digest(b[k], sz[k], r, &j->error));
    }
    for (unsigned k = 0; k < n; k++) {
        if (k < KEEP && sz[k] <= 8192) {          /* handed to main, freed later by it */
            j->keep[k] = b[k];
            j->keep_size[k] = sz[k];
        } else {
            free(b[k]);
        }
    }
    char *s = NULL;                               /* a realloc chain too */
    for (unsigned k = 1; k <= 6; k++) {
        char *t = realloc(s, (size_t)k * 100);
        if (!t) { j->error = 1; free(s); return NULL; }
        memset(t + (k - 1) * 100, 'a' + (int)k, 100);
        s = t;
    }
    for (unsigned k = 0; k < 600; k++) if (s[k] != 'a' + (int)(k / 100 + 1)) j->error = 1;
    free(s);
    return NULL;
}

static long status_kib(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') { v = strtol(line + kl + 1, NULL, 10); break; }
    fclose(f);
    return v;
}

typedef struct { unsigned char *p; size_t size; uint64_t seed; } kept_t;

int main(int argc, char **argv) {
    unsigned total = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 100000;
    long limit_mib = argc > 2 ? strtol(argv[2], NULL, 10) : 200;
    static kept_t ring[RING];
    static job_t jobs[BATCH];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 << 10);
    uint64_t checksum = 0, kept_freed = 0;
    unsigned ring_pos = 0;
    long rss_warm = -1;
    int failed = 0;

    for (unsigned base = 0; base < total; base += BATCH) {
        pthread_t t[BATCH];
        unsigned n = total - base < BATCH ? total - base : BATCH;
        for (unsigned k = 0; k < n; k++) {
            memset(&jobs[k], 0, sizeof jobs[k]);
            jobs[k].idx = base + k;
            int rc = pthread_create(&t[k], &attr, thread_main, &jobs[k]);
            if (rc) { fprintf(stderr, "threads_churn: pthread_create failed at thread %u: %s\n", base + k, strerror(rc)); return 1; }
        }
        for (unsigned k = 0; k < n; k++) {
            pthread_join(t[k], NULL);
            job_t *j = &jobs[k];
            if (j->error) { fprintf(stderr, "threads_churn: thread %u saw a bad block (NULL, misaligned or corrupt)\n", j->idx); return 1; }
            checksum = mix64(checksum ^ j->sum ^ j->idx);
            for (int q = 0; q < KEEP; q++) {
                if (!j->keep[q]) continue;
                kept_t *slot = &ring[ring_pos++ % RING];
                if (slot->p) {                    /* free a block whose thread exited long ago */
                    int bad = 0;
                    uint64_t d = digest(slot->p, slot->size, slot->seed, &bad);
                    if (bad) { fprintf(stderr, "threads_churn: a block kept for main (size %zu) was corrupted after its thread exited\n", slot->size); return 1; }
                    checksum = mix64(checksum + d);
                    free(slot->p);
                    kept_freed++;
                }
                /* re-stamp it with a seed main knows (its thread's contents were checked) */
                slot->p = j->keep[q];
                slot->size = j->keep_size[q];
                slot->seed = mix64(j->idx * 2 + (unsigned)q);
                fill(slot->p, slot->size, slot->seed);
            }
        }
        if (rss_warm < 0 && base + n >= total / 5) rss_warm = status_kib("VmRSS");
        if ((base / BATCH) % 5000 == 0 || base + n >= total)
            fprintf(stderr, "threads_churn: %u threads done, VmRSS %ld KiB, VmHWM %ld KiB\n", base + n,
                    status_kib("VmRSS"), status_kib("VmHWM"));
    }
    for (unsigned i = 0; i < RING; i++) {
        if (!ring[i].p) continue;
        int bad = 0;
        uint64_t d = digest(ring[i].p, ring[i].size, ring[i].seed, &bad);
        if (bad) { fprintf(stderr, "threads_churn: a kept block was corrupted\n"); return 1; }
        checksum = mix64(checksum + d);
        free(ring[i].p);
        kept_freed++;
    }
    long hwm = status_kib("VmHWM"), rss = status_kib("VmRSS");
    fprintf(stderr, "threads_churn: peak RSS %ld MiB (limit %ld MiB), final RSS %ld MiB, RSS after 20%% %ld MiB\n",
            hwm / 1024, limit_mib, rss / 1024, rss_warm / 1024);
    if (hwm < 0) {
        fprintf(stderr, "threads_churn: cannot read VmHWM from /proc/self/status\n");
        failed = 1;
    } else if (hwm > limit_mib * 1024) {
        fprintf(stderr, "threads_churn: FAIL: peak RSS %ld MiB exceeds the limit of %ld MiB\n", hwm / 1024, limit_mib);
        failed = 1;
    }
    if (rss_warm > 0 && rss > 2 * rss_warm + 64 * 1024) {
        fprintf(stderr, "threads_churn: FAIL: RSS grew from %ld MiB (after 20%% of the threads) to %ld MiB at the end: heaps of exited threads leak?\n",
                rss_warm / 1024, rss / 1024);
        failed = 1;
    }
    printf("threads_churn: threads=%u kept_freed_by_main=%llu checksum=%016llx %s\n", total,
           (unsigned long long)kept_freed, (unsigned long long)checksum, failed ? "FAILED" : "OK");
    return failed;
}

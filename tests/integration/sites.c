/* sites.c: a program with known allocation sites, for t_reports.sh.
 *
 *   phase 1: site_small keeps 512 MiB live in 100-byte blocks, site_large 1 GiB in 40 KiB blocks
 *            (at the default rate of 1 sample per 512 KiB, about 1000 and 2000 samples: the
 *            estimates' standard error is about 3% and 2%)
 *   "ready 1" on stdout, then a churn thread allocates and frees while the test sends signals
 *   phase 2 (when the file named by argv[1] + ".grow" exists): site_growth adds 256 MiB
 *   "ready 2"; exits when argv[1] + ".stop" exists, leaving site_leak's 16 MiB unfreed.
 * Every block is written, so the numbers are real memory. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))
static _Atomic int stop_churn;

NOINLINE static void *site_small(void) { void *p = malloc(100); memset(p, 1, 100); return p; }
NOINLINE static void *site_large(void) { void *p = malloc(40 << 10); memset(p, 2, 40 << 10); return p; }
NOINLINE static void *site_growth(void) { void *p = malloc(3000); memset(p, 3, 3000); return p; }
NOINLINE static void *site_leak(void) { void *p = malloc(256); memset(p, 4, 256); return p; }

static void *churn(void *arg) {
    (void)arg;
    void *keep[256] = { 0 };
    unsigned i = 0;
    while (!atomic_load(&stop_churn)) {
        free(keep[i % 256]);
        keep[i % 256] = malloc(16 + (i * 7919) % 5000);
        i++;
    }
    for (int k = 0; k < 256; k++) free(keep[k]);
    return NULL;
}

static void wait_for(const char *base, const char *suffix) {
    char path[512];
    snprintf(path, sizeof path, "%s%s", base, suffix);
    for (int i = 0; i < 6000 && access(path, F_OK) != 0; i++) {
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: sites CONTROL-PATH\n"); return 2; }
    enum { NSMALL = (512 << 20) / 100, NLARGE = (1024 << 20) / (40 << 10), NGROW = (256 << 20) / 3000,
           NLEAK = (16 << 20) / 256 };
    void **small = malloc(NSMALL * sizeof *small), **large = malloc(NLARGE * sizeof *large);
    void **grow = malloc(NGROW * sizeof *grow);
    for (int i = 0; i < NSMALL; i++) small[i] = site_small();
    for (int i = 0; i < NLARGE; i++) large[i] = site_large();
    pthread_t t;
    pthread_create(&t, NULL, churn, NULL);
    printf("ready 1\n");
    fflush(stdout);
    wait_for(argv[1], ".grow");
    for (int i = 0; i < NGROW; i++) grow[i] = site_growth();
    printf("ready 2\n");
    fflush(stdout);
    wait_for(argv[1], ".stop");
    atomic_store(&stop_churn, 1);
    pthread_join(t, NULL);
    for (int i = 0; i < NLEAK; i++) (void)site_leak();        /* leaked on purpose */
    for (int i = 0; i < NSMALL; i++) free(small[i]);
    for (int i = 0; i < NLARGE; i++) free(large[i]);
    for (int i = 0; i < NGROW; i++) free(grow[i]);
    free(small); free(large); free(grow);
    printf("done\n");
    return 0;
}

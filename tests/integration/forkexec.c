/* forkexec.c: fork (and exec) from a multi-threaded program while its threads allocate.
 *
 *   usage: forkexec [forks=200]
 *
 * Four threads allocate, verify and free blocks continuously and swap blocks through a shared
 * array (so frees are often remote). Meanwhile the main thread forks `forks` times; a child
 * inherits the allocator in whatever state the fork caught it (other threads may have held its
 * locks), so it must be able to allocate at once. Child i, by i % 5:
 *   0  mallocs/frees a little, then execs /bin/true (every 10th child: /bin/echo, which prints)
 *   1  stays: allocates from many sizes (16 B .. 3 MiB), starts a thread that allocates and
 *      frees, verifies everything, exit(0)
 *   2  stays: verifies and frees the blocks of the shared array (allocated by threads that do
 *      not exist in the child), _exit(0)
 *   3  stays: forks a grandchild that allocates, waits for it, exit(0)
 *   4  mallocs/frees a little, then execs /bin/echo through posix_spawn-free execvp
 * Every child sets alarm(30) first: a child deadlocked in the allocator dies of SIGALRM and the
 * parent reports it. The parent checks every child's exit status, uses popen a few times, and
 * prints a summary that depends only on the number of forks. Exit status 0 iff all went well.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NTHREADS 4
#define NSHARED  64
#define NLOCAL   32

static atomic_int stop;
static atomic_long thread_ops[NTHREADS];
static _Atomic(unsigned char *) shared[NSHARED];

static void die(const char *msg) {
    ssize_t w = write(2, msg, strlen(msg));
    (void)w;
    _exit(3);
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27; x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* A block: [size:8][cookie:8][pattern...]: word k (from byte 16) is cookie ^ (k * K), the
 * bytes of a partial last word are the low byte of cookie + offset. */
static inline uint64_t pat_word(uint64_t cookie, size_t off) { return cookie ^ (off * 0x9e3779b97f4a7c15ULL); }

static unsigned char *make_block(size_t size, uint64_t seed) {
    if (size < 17) size = 17;
    unsigned char *p = malloc(size);
    if (!p) die("forkexec: malloc returned NULL\n");
    if ((uintptr_t)p & 15) die("forkexec: malloc result not 16-byte aligned\n");
    uint64_t cookie = mix64(seed ^ (uintptr_t)p);
    memcpy(p, &size, 8);
    memcpy(p + 8, &cookie, 8);
    size_t i = 16;
    for (; i + 8 <= size; i += 8) { uint64_t w = pat_word(cookie, i); memcpy(p + i, &w, 8); }
    for (; i < size; i++) p[i] = (unsigned char)(cookie + i);
    return p;
}

static void corrupt(const unsigned char *p, const char *who, size_t size, size_t off) {
    char buf[200];
    snprintf(buf, sizeof buf, "forkexec: %s: block %p (size %zu) corrupt at offset %zu\n", who,
             (const void *)p, size, off);
    die(buf);
}

static void check_block(const unsigned char *p, const char *who) {
    size_t size;
    uint64_t cookie;
    memcpy(&size, p, 8);
    memcpy(&cookie, p + 8, 8);
    if (size < 17 || size > ((size_t)8 << 20)) corrupt(p, who, size, 0);
    size_t i = 16;
    for (; i + 8 <= size; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w != pat_word(cookie, i)) corrupt(p, who, size, i);
    }
    for (; i < size; i++) if (p[i] != (unsigned char)(cookie + i)) corrupt(p, who, size, i);
}

static void free_block(unsigned char *p, const char *who) {
    check_block(p, who);
    free(p);
}

static size_t pick_size(uint64_t r) {
    if (r % 500 == 0) return 200000 + (size_t)(r / 500 % 100000);
    if (r % 10 == 0) return 17 + (size_t)(r / 10 % 8192);
    return 17 + (size_t)(r / 10 % 300);
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    unsigned char *local[NLOCAL] = { 0 };
    uint64_t r = (uint64_t)id * 0x9e3779b97f4a7c15ULL;
    long ops = 0;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        r = mix64(r + 1);
        int s = (int)(r % NLOCAL);
        if (local[s]) free_block(local[s], "worker");
        local[s] = make_block(pick_size(r >> 8), r);
        if (r % 7 == 0) {   /* swap with the shared array: the other side frees it */
            unsigned char *got = atomic_exchange(&shared[(r >> 20) % NSHARED], local[s]);
            if (got) check_block(got, "worker (from shared)");
            local[s] = got;
        }
        if (++ops % 64 == 0) {
            atomic_store_explicit(&thread_ops[id], ops, memory_order_relaxed);
            /* leave the two cores mostly to the forking main thread and its children */
            nanosleep(&(struct timespec){ .tv_sec = 0, .tv_nsec = 20000 }, NULL);
        }
    }
    for (int s = 0; s < NLOCAL; s++) if (local[s]) free_block(local[s], "worker exit");
    return NULL;
}

static void churn(uint64_t seed, int n, size_t max) {
    unsigned char *b[16] = { 0 };
    for (int i = 0; i < n; i++) {
        uint64_t r = mix64(seed + (uint64_t)i);
        int s = (int)(r % 16);
        if (b[s]) free_block(b[s], "child");
        size_t size = 17 + (size_t)((r >> 8) % max);
        b[s] = make_block(size, r);
        if (r % 3 == 0) {
            unsigned char *q = realloc(b[s], size * 2);
            if (!q) die("forkexec: realloc returned NULL in child\n");
            /* the header (size) and the pattern of the first `size` bytes must survive */
            b[s] = q;
            check_block(q, "child after realloc");
        }
    }
    for (int s = 0; s < 16; s++) if (b[s]) free_block(b[s], "child");
}

static void *child_thread(void *arg) {
    churn((uint64_t)(intptr_t)arg, 300, 4096);
    return NULL;
}

static void child_main(int i) {
    alarm(30);
    churn((uint64_t)i * 1000003, 50, 1000);
    switch (i % 5) {
    case 0:
    case 4: {
        char num[32];
        snprintf(num, sizeof num, "%d", i);
        alarm(0);
        if (i % 10 == 0 || i % 5 == 4) {
            if (i % 5 == 4) execlp("echo", "echo", "exec-echo", num, (char *)NULL);
            else execl("/bin/echo", "echo", "exec-echo", num, (char *)NULL);
        } else {
            execl("/bin/true", "true", (char *)NULL);
        }
        _exit(127);
    }
    case 1: {
        static const size_t sizes[] = { 16, 24, 48, 100, 512, 513, 1000, 4096, 10000, 65536,
                                        100000, 262144, 1 << 20, (1 << 20) + 1, 3 << 20 };
        unsigned char *b[sizeof sizes / sizeof sizes[0]];
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) b[k] = make_block(sizes[k], k + (uint64_t)i);
        pthread_t t;
        if (pthread_create(&t, NULL, child_thread, (void *)(intptr_t)i) != 0) die("forkexec: pthread_create in child failed\n");
        churn((uint64_t)i * 77, 300, 20000);
        pthread_join(t, NULL);
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) free_block(b[k], "child (sizes)");
        exit(0);
    }
    case 2:
        for (int s = 0; s < NSHARED; s++) {
            unsigned char *p = atomic_exchange(&shared[s], NULL);
            if (p) free_block(p, "child (shared)");
        }
        churn((uint64_t)i, 200, 20000);
        _exit(0);
    case 3: {
        pid_t g = fork();
        if (g < 0) die("forkexec: fork in child failed\n");
        if (g == 0) { alarm(30); churn((uint64_t)i + 5, 300, 3000); _exit(0); }
        int st;
        if (waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st) != 0) die("forkexec: grandchild failed\n");
        churn((uint64_t)i + 9, 100, 3000);
        exit(0);
    }
    }
    _exit(0);
}

int main(int argc, char **argv) {
    int forks = argc > 1 ? atoi(argv[1]) : 200;
    pthread_t t[NTHREADS];
    for (int k = 0; k < NTHREADS; k++)
        if (pthread_create(&t[k], NULL, worker, (void *)(intptr_t)k) != 0) die("forkexec: pthread_create failed\n");
    /* fork only once every thread is busy */
    for (int k = 0; k < NTHREADS; k++)
        while (atomic_load(&thread_ops[k]) < 256) sched_yield();

    int failed = 0, by_kind[5] = { 0 }, popens = 0;
    for (int i = 0; i < forks; i++) {
        fflush(stdout);                       /* nothing buffered may be duplicated in the child */
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); failed++; break; }
        if (pid == 0) child_main(i);
        int st;
        while (waitpid(pid, &st, 0) < 0) {
            if (errno != EINTR) { perror("waitpid"); return 2; }
        }
        by_kind[i % 5]++;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            failed++;
            if (WIFSIGNALED(st))
                fprintf(stderr, "forkexec: child %d (kind %d) killed by signal %d (%s)%s\n", i,
                        i % 5, WTERMSIG(st), strsignal(WTERMSIG(st)),
                        WTERMSIG(st) == SIGALRM ? ": hung for 30 s, deadlocked after fork?" : "");
            else
                fprintf(stderr, "forkexec: child %d (kind %d) exited with status %d\n", i, i % 5,
                        WEXITSTATUS(st));
        }
        if (i % 75 == 74) {                   /* popen: fork/exec (or spawn) from the parent */
            char cmd[64], line[128] = "";
            snprintf(cmd, sizeof cmd, "echo popen-%d", i);
            FILE *f = popen(cmd, "r");
            if (!f) { perror("popen"); failed++; continue; }
            if (!fgets(line, sizeof line, f)) line[0] = 0;
            int pst = pclose(f);
            if (pst != 0) { fprintf(stderr, "forkexec: pclose status %d\n", pst); failed++; }
            printf("read: %s", line);
            popens++;
        }
    }
    atomic_store(&stop, 1);
    for (int k = 0; k < NTHREADS; k++) pthread_join(t[k], NULL);
    for (int s = 0; s < NSHARED; s++) {
        unsigned char *p = atomic_exchange(&shared[s], NULL);
        if (p) free_block(p, "main at exit");
    }
    printf("forkexec: forks=%d exec=%d stay_exit=%d stay_shared=%d nested_fork=%d exec_path=%d "
           "popen=%d failed=%d\n", forks, by_kind[0], by_kind[1], by_kind[2], by_kind[3],
           by_kind[4], popens, failed);
    long total = 0;
    for (int k = 0; k < NTHREADS; k++) total += atomic_load(&thread_ops[k]);
    fprintf(stderr, "forkexec: info: worker operations while forking: about %ld\n", total);
    return failed ? 1 : 0;
}

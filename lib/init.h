/* init.h: the top of the library (override.c, init.c): one-time start-up. */
#ifndef PM_INIT_H
#define PM_INIT_H
#include "objects/objects.h"

#pragma GCC visibility push(hidden)

/* ---- init.c ------------------------------------------------------------------------------- */
extern _Atomic int _pm_initialized;
void _pm_init_slow(void);
PM_INLINE void _pm_init(void) {
    if (PM_UNLIKELY(!atomic_load_explicit(&_pm_initialized, memory_order_acquire))) _pm_init_slow();
}


/* libstdc++'s unsized operator delete and delete[], if the program has libstdc++ (override.c). */
extern void _ZdlPv(void *p) __attribute__((weak, visibility("default")));
extern void _ZdaPv(void *p) __attribute__((weak, visibility("default")));

#pragma GCC visibility pop
#endif

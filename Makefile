# poolmalloc: plain GNU make. `make` builds build/libpoolmalloc.so and build/libpoolmalloc.a.
#   make demo     run python3 under the allocator and show its heap and statistics reports
#   make check    every test: docs and layering checks, Criterion unit tests (also on the debug
#                 build), a short run of each fuzzer, sanitizer builds, integration tests
#   make fuzz     each libFuzzer target for FUZZ_TIME seconds (default 600) (tests/fuzz)
#   make bench    the benchmark suite against glibc, jemalloc, mimalloc and tcmalloc
#   make install PREFIX=/usr/local
#   make debug    an -O0 build with PM_DEBUG=1 in build/debug
# Each of these first installs the Debian packages it needs (scripts/install-deps.sh), before
# it compiles anything; `make deps` installs what the library needs.
CC      ?= cc
PREFIX  ?= /usr/local
BUILD   ?= build
OPT     ?= -O2
WARN    := -Wall -Wextra -Wshadow -Wundef -Wmissing-prototypes -Wstrict-prototypes -Wpointer-arith -Werror
CFLAGS_LIB := -std=gnu11 $(OPT) -g -fPIC -fvisibility=hidden -ftls-model=initial-exec \
              -fno-builtin-malloc -fno-builtin-calloc -fno-builtin-realloc -fno-builtin-free \
              $(WARN) -Iinclude -Ilib $(EXTRA_CFLAGS)
LDLIBS_LIB := -lunwind -lz -lm -lpthread

# lib/ is in folders by layer (docs/design.md, "Layout"); objects keep the folder: obj/heap/pool.o.
LAYERS  := os util heap lens objects
SRCS    := $(wildcard $(LAYERS:%=lib/%/*.c) lib/*.c)
OBJS    := $(SRCS:lib/%.c=$(BUILD)/obj/%.o)
# memcpy & co. are interposed by the preloaded library only (lib/checked_copy.c says why).
SO_ONLY := $(BUILD)/obj/checked_copy.o
AR_OBJS := $(filter-out $(SO_ONLY),$(OBJS))
HDRS    := $(wildcard $(LAYERS:%=lib/%/*.h) lib/*.h include/*.h include/poolmalloc/*.h)
UNIT_SRCS := $(wildcard tests/unit/*/test_*.c)
# Tests free stack pointers and freed blocks on purpose, and must not let the compiler drop or
# merge allocations: no builtins, and gcc's misuse warnings off.
TEST_CFLAGS := $(WARN) -fno-builtin -Wno-missing-prototypes -Wno-free-nonheap-object -Wno-use-after-free \
               -Wno-alloc-size-larger-than -Wno-unused-result -Wno-deprecated-declarations
VERSION := 0.1.0

.PHONY: python python-check all deps docs-check layers-check check unit unit-debug sanitize ubsan asan tsan integration demo bench install clean debug \
        fuzz fuzz-check fuzz-build
all: $(BUILD)/libpoolmalloc.so $(BUILD)/libpoolmalloc.a

# ---- Debian packages, before the first compile --------------------------------------------
# Every object has `deps` as an order-only prerequisite, so scripts/install-deps.sh runs once,
# before anything compiles. The goals on the command line choose what it installs (demo, check
# and bench need more than the library does). A bare `make` installs nothing: on a machine that
# lacks a package it stops with one line naming the package and the command that installs it.
# Recursive makes (sanitizer and debug builds) pass PM_DEPS_DONE=1 to skip the second look.
DEPS_LEVELS := $(strip $(if $(filter demo,$(MAKECMDGOALS)),demo) \
    $(if $(filter check unit sanitize ubsan asan tsan integration fuzz fuzz-check fuzz-build,$(MAKECMDGOALS)),check) \
    $(if $(filter bench,$(MAKECMDGOALS)),bench) $(if $(filter deps install debug,$(MAKECMDGOALS)),build) \
    $(if $(filter python python-check install,$(MAKECMDGOALS)),python))
deps:
	@$(if $(PM_DEPS_DONE),:,bash scripts/install-deps.sh $(or $(DEPS_LEVELS),--verify build))

$(BUILD)/obj/%.o: lib/%.c $(HDRS) | $(LAYERS:%=$(BUILD)/obj/%) deps
	$(CC) $(CFLAGS_LIB) -c $< -o $@

$(SO_ONLY): CFLAGS_LIB += -fno-builtin
# The HTML report's page is assembled into the library (lib/lens/html.c, .incbin).
$(BUILD)/obj/lens/html.o: lib/lens/report.html

$(LAYERS:%=$(BUILD)/obj/%):
	@mkdir -p $@

$(BUILD)/libpoolmalloc.so: $(OBJS)
	$(CC) -shared -Wl,-soname,libpoolmalloc.so -Wl,-z,now -o $@ $(OBJS) $(LDLIBS_LIB)

# The archive holds one relocatable object of the whole library, so that linking any of it brings
# all of it: the constructor (init.c) that starts the lens and registers the fork handlers is
# referenced by nothing below it, and must not be left out of a program that uses the objects alone.
$(BUILD)/libpoolmalloc.a: $(AR_OBJS)
	@rm -f $@
	$(LD) -r -o $(BUILD)/obj/poolmalloc.o $(AR_OBJS)
	ar rcs $@ $(BUILD)/obj/poolmalloc.o

# ---- tests ---------------------------------------------------------------------------------
# Unit tests link the static library, so the test binary (and Criterion inside it) runs on it.
$(BUILD)/tests/unit: $(UNIT_SRCS) $(wildcard tests/unit/*.h) examples/gc_listdict.c $(BUILD)/libpoolmalloc.a
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O1 -g $(TEST_CFLAGS) $(EXTRA_CFLAGS) -Iinclude -Ilib -Itests/unit \
	    $(UNIT_SRCS) -o $@ $(BUILD)/libpoolmalloc.a -lcriterion $(LDLIBS_LIB)

# The harden suite needs hardened:true from start-up (tests/unit/heap/test_harden.c): a second run,
# with the objects' misuse suite, whose freed objects hardened mode zeroes instead of poisoning.
unit: $(BUILD)/tests/unit
	$(BUILD)/tests/unit --jobs 2
	POOLMALLOC_CONF=hardened:true $(BUILD)/tests/unit --jobs 2 --filter '@(harden|misuse)/*'

# Sanitizer builds. UBSan does not replace malloc, so the whole unit suite runs on a UBSan build
# of the library. ASan and TSan bring their own malloc: there the library is built without the
# libc names (PM_NO_OVERRIDE) and threaded stress tests drive it through the pm_ API (api_stress)
# and the collector through poolmalloc/gc.h (gc_stress: a collector per thread).
SAN_TESTS := api_stress gc_stress
ubsan: deps
	$(MAKE) --no-print-directory PM_DEPS_DONE=1 BUILD=$(BUILD)/ubsan OPT=-O1 \
	    EXTRA_CFLAGS="-fsanitize=undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" $(BUILD)/ubsan/tests/unit
	UBSAN_OPTIONS=print_stacktrace=1 $(BUILD)/ubsan/tests/unit --jobs 2
$(BUILD)/tests/%_stress: tests/sanitize/%_stress.c $(BUILD)/libpoolmalloc.a
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O1 -g $(WARN) $(EXTRA_CFLAGS) -Iinclude $< -o $@ $(BUILD)/libpoolmalloc.a $(LDLIBS_LIB)
asan: deps
	$(MAKE) --no-print-directory PM_DEPS_DONE=1 BUILD=$(BUILD)/asan OPT=-O1 \
	    EXTRA_CFLAGS="-DPM_NO_OVERRIDE -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
	    $(SAN_TESTS:%=$(BUILD)/asan/tests/%)
	ASAN_OPTIONS=detect_leaks=0 $(BUILD)/asan/tests/api_stress 3 40000
	ASAN_OPTIONS=detect_leaks=0 $(BUILD)/asan/tests/gc_stress 300000
tsan: deps
	$(MAKE) --no-print-directory PM_DEPS_DONE=1 BUILD=$(BUILD)/tsan OPT=-O1 EXTRA_CFLAGS="-DPM_NO_OVERRIDE -fsanitize=thread" \
	    $(SAN_TESTS:%=$(BUILD)/tsan/tests/%)
	TSAN_OPTIONS=halt_on_error=1 $(BUILD)/tsan/tests/api_stress 2 30000
	TSAN_OPTIONS=halt_on_error=1 $(BUILD)/tsan/tests/gc_stress 100000
sanitize: ubsan asan tsan

integration: all
	POOLMALLOC_SO=$(abspath $(BUILD)/libpoolmalloc.so) bash tests/integration/run.sh

# The option docs cannot drift from the options table (tests/docs/options.sh).
docs-check:
	@bash tests/docs/options.sh

# Every include and every call goes down the layers (tests/layers/check.sh; docs/design.md).
layers-check: all
	@bash tests/layers/check.sh $(BUILD)/obj

# ---- fuzzing (tests/fuzz) -------------------------------------------------------------------
# Three libFuzzer targets: fuzz_api (the C allocation API against a shadow model), fuzz_conf (the
# POOLMALLOC_CONF parser), fuzz_gc (poolmalloc/gc.h against a reference model). They are built
# with clang in $(BUILD)/fuzz, the library too, with coverage (-fsanitize=fuzzer-no-link) so that
# it guides into the allocator, and UBSan; PM_DEBUG=1 runs the invariant checkers at every
# transition. The library overrides malloc, so libFuzzer itself runs on poolmalloc. The library
# is built without comparison tracing (trace-cmp): libFuzzer would learn a block's free mark (a
# secret key xor its address) from the compare in free() and write it into its own copy of an
# input, which free() then rightly calls a double free. tests/fuzz/run.sh runs one target on a
# copy of its seeds (tests/fuzz/corpus/NAME -> $(BUILD)/fuzz/corpus/NAME) and fails on a crash.
FUZZ_CC         ?= clang-14
FUZZ_TARGETS    := api conf gc
FUZZ_RUNS       := api api-hardened conf gc   # api-hardened: fuzz_api under hardened:true (tests/fuzz/run.sh)
FUZZ_TIME       ?= 600
FUZZ_CHECK_TIME ?= 20
FUZZ_LIB_CFLAGS := -fsanitize=fuzzer-no-link,undefined -fno-sanitize-coverage=trace-cmp -fno-sanitize-recover=undefined
FUZZ_CFLAGS     := -fsanitize=fuzzer,undefined -fno-sanitize-recover=undefined
$(BUILD)/tests/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_check.h $(HDRS) $(BUILD)/libpoolmalloc.a
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(OPT) -g $(WARN) -fno-builtin $(FUZZ_CFLAGS) -Iinclude -Ilib $< -o $@ \
	    $(BUILD)/libpoolmalloc.a $(LDLIBS_LIB)
# In the fuzz build only: comparison tracing back on in lib/util (the options parser), which
# inlines no free-mark compare (every layer from heap up does, through free_fast.h).
ifdef PM_FUZZ_BUILD
$(BUILD)/obj/util/%.o: CFLAGS_LIB += -fsanitize-coverage=trace-cmp
endif
fuzz-build: deps
	$(MAKE) --no-print-directory PM_DEPS_DONE=1 PM_FUZZ_BUILD=1 CC=$(FUZZ_CC) BUILD=$(BUILD)/fuzz OPT="-O2 -DPM_DEBUG=1" \
	    EXTRA_CFLAGS="$(FUZZ_LIB_CFLAGS)" $(FUZZ_TARGETS:%=$(BUILD)/fuzz/tests/fuzz/fuzz_%)
fuzz-check: fuzz-build
	@fail=0; for t in $(FUZZ_RUNS); do bash tests/fuzz/run.sh $$t $(FUZZ_CHECK_TIME) $(BUILD)/fuzz || fail=1; done; exit $$fail
fuzz: fuzz-build
	@fail=0; for t in $(FUZZ_RUNS); do bash tests/fuzz/run.sh $$t $(FUZZ_TIME) $(BUILD)/fuzz || fail=1; done; exit $$fail

# ---- the CPython module (python/; docs/python.md) ---------------------------------------------
# python/_poolmalloc.c built against $(PYTHON)'s headers (Debian's python3-dev) and the static
# library, whose names stay inside the module (--exclude-libs): loading it brings a poolmalloc
# without LD_PRELOAD, and replaces no libc name for the rest of the process. The package goes to
# $(BUILD)/python/poolmalloc: PYTHONPATH=$(BUILD)/python python3 -m poolmalloc run script.py
PYTHON      ?= /usr/bin/python3
PY_INCLUDE   = $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
PY_EXT       = $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
PY_PKG      := $(BUILD)/python/poolmalloc
PY_SRCS     := $(wildcard python/poolmalloc/*.py)
python: $(PY_PKG)/.built
$(PY_PKG)/.built: python/_poolmalloc.c $(PY_SRCS) $(HDRS) $(BUILD)/libpoolmalloc.a | deps
	@mkdir -p $(PY_PKG)
	$(CC) -std=gnu11 $(OPT) -g -fPIC -shared -fvisibility=hidden $(filter-out -Wmissing-prototypes -Wstrict-prototypes,$(WARN)) \
	    -Wno-missing-field-initializers -ftls-model=initial-exec -Iinclude -Ilib -I$(PY_INCLUDE) python/_poolmalloc.c -o $(PY_PKG)/_poolmalloc$(PY_EXT) \
	    -Wl,--whole-archive $(BUILD)/libpoolmalloc.a -Wl,--no-whole-archive -Wl,--exclude-libs,ALL -Wl,-z,now $(LDLIBS_LIB)
	cp $(PY_SRCS) $(PY_PKG)/
	@touch $@

# The module's tests (tests/python), with the Python that it was built for.
python-check: python
	PYTHONPATH=$(abspath $(BUILD)/python) PM_PYTHON=$(PYTHON) $(PYTHON) -m unittest discover -s tests/python -t tests/python

check: all docs-check layers-check unit unit-debug fuzz-check sanitize integration python-check

demo: all
	@bash tools/pm-demo $(abspath $(BUILD)/libpoolmalloc.so)

bench: all python
	POOLMALLOC_SO=$(abspath $(BUILD)/libpoolmalloc.so) bash bench/run.sh
	POOLMALLOC_SO=$(abspath $(BUILD)/libpoolmalloc.so) bash bench/overhead.sh | tee -a $(BUILD)/bench/results.md
	BUILD=$(BUILD) bash bench/gc/run.sh | tee -a $(BUILD)/bench/results.md
	BUILD=$(BUILD) PYTHON=$(PYTHON) POOLMALLOC_SO=$(abspath $(BUILD)/libpoolmalloc.so) bash bench/python_module.sh | tee -a $(BUILD)/bench/results.md

debug: deps
	$(MAKE) PM_DEPS_DONE=1 BUILD=$(BUILD)/debug OPT="-O0 -DPM_DEBUG=1" all

# The unit suite on the debug build: every invariant checker runs at every transition (PM_DEBUG=1,
# lib/util/util.h), so a test that breaks an invariant stops where it broke, not later.
unit-debug: deps
	$(MAKE) --no-print-directory PM_DEPS_DONE=1 BUILD=$(BUILD)/debug OPT="-O0 -DPM_DEBUG=1" $(BUILD)/debug/tests/unit
	$(BUILD)/debug/tests/unit --jobs 2
	POOLMALLOC_CONF=hardened:true $(BUILD)/debug/tests/unit --jobs 2 --filter '@(harden|misuse)/*'

# The Python package goes where $(PYTHON) looks for local packages under PREFIX (Debian:
# /usr/local/lib/python3.11/dist-packages): PY_SITE overrides.
PY_VER   = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PY_SITE ?= $(PREFIX)/lib/python$(PY_VER)/dist-packages
install: all python
	install -d $(DESTDIR)$(PY_SITE)/poolmalloc
	install -m 644 $(PY_PKG)/*.py $(DESTDIR)$(PY_SITE)/poolmalloc/
	install -m 755 $(PY_PKG)/_poolmalloc$(PY_EXT) $(DESTDIR)$(PY_SITE)/poolmalloc/
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/poolmalloc $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BUILD)/libpoolmalloc.so $(DESTDIR)$(PREFIX)/lib/
	install -m 644 $(BUILD)/libpoolmalloc.a $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/poolmalloc.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 include/poolmalloc/*.h $(DESTDIR)$(PREFIX)/include/poolmalloc/
	install -m 755 tools/pm-demo tools/pm-run tools/pm-report $(DESTDIR)$(PREFIX)/bin/
	install -d $(DESTDIR)$(PREFIX)/share/poolmalloc
	install -m 644 lib/lens/report.html $(DESTDIR)$(PREFIX)/share/poolmalloc/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' poolmalloc.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/poolmalloc.pc

clean:
	rm -rf $(BUILD)

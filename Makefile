# hearth — build, test, bench, run.
#   make                      bin/hearthd, bin/hearth, bin/probe
#   make test                 install what is missing, build, run every test runner
#   make run                  install, build, start hearthd with configs/hearthd.json
#   make bench [QUICK=1]      benchmarks against the references (never part of make test)
#   make SANITIZE=address,undefined test
#   make soak [SOAK_SECONDS=N]  a bounded soak of a real hearthd under load and faults (default 10 min)
#   CI=true make test         also the sanitizer, valgrind, fuzz and soak stages (scripts/run-tests ci)
#   make O=/tmp/out           build out of tree (objects and binaries under /tmp/out)
O        ?= .
BIN      := $(O)/bin
BUILD    := $(O)/build

CC       ?= gcc
PKGS     := libevent jansson libseccomp libcap sqlite3 libcrypto
# snprintf truncation is how we bound strings on purpose: not a warning.
WARN     := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes -Wno-format-truncation
ifeq ($(CI),true)
WARN     += -Werror
endif
ifneq ($(SANITIZE),)
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 $(WARN) $(SANFLAGS) -D_GNU_SOURCE -I.
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDLIBS   := $(PKG_LIBS) -levent_pthreads -lpthread -lm
# Link only the libraries a binary uses: each one costs start-up time.
LDFLAGS  += $(SANFLAGS) -Wl,--as-needed

COMMON_SRC  := $(wildcard common/*.c)
SANDBOX_SRC := $(filter-out sandbox/init_main.c,$(wildcard sandbox/*.c))
SCHED_SRC   := $(wildcard scheduler/*.c)
ORCH_SRC    := $(filter-out orchestrator/main.c orchestrator/cli.c,$(wildcard orchestrator/*.c))
LIB_SRC     := $(COMMON_SRC) $(SANDBOX_SRC) $(SCHED_SRC) $(ORCH_SRC)
LIB_OBJ     := $(LIB_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC    := $(wildcard tests/unit/test_*.c)
UNIT_BIN    := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
ITEST_SRC   := $(wildcard tests/integration/test_*.c)
ITEST_BIN   := $(ITEST_SRC:tests/integration/%.c=$(BUILD)/tests/%)
FUZZ_SRC    := $(wildcard tests/fuzz/fuzz_*.c)

HEADERS := $(wildcard common/*.h sandbox/*.h scheduler/*.h orchestrator/*.h tests/*.h)

.PHONY: all deps test unit integration vm-test run bench fuzz soak clean
# hearthd appears with orchestrator/main.c.
DAEMON  := $(if $(wildcard orchestrator/main.c),$(BIN)/hearthd)
all: $(DAEMON) $(BIN)/hearth $(BIN)/probe $(BIN)/attack $(UNIT_BIN) $(ITEST_BIN)

# Rebuild everything when the flags change (e.g. SANITIZE on or off).
$(BUILD)/.flags: FORCE
	@mkdir -p $(@D)
	@echo '$(CC) $(CFLAGS) $(LDFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS) $(LDFLAGS)' > $@
FORCE:

$(BUILD)/%.o: %.c $(HEADERS) $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(BUILD)/libhearth.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/hearthd: $(BUILD)/orchestrator/main.o $(BUILD)/libhearth.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The CLI is linked statically (not under sanitizers): `hearth run` is a
# one-shot process and dynamic loading was a fifth of its start-up.
HEARTH_STATIC := $(if $(SANITIZE),,-static)
CLI_LIBS := $(if $(SANITIZE),$(LDLIBS),$(shell pkg-config --static --libs libevent jansson libseccomp libcap 2>/dev/null) -lpthread -lm)
$(BIN)/hearth: $(BUILD)/orchestrator/cli.o $(BUILD)/libhearth.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $(HEARTH_STATIC) -o $@ $^ $(CLI_LIBS)

# The probe runs inside sandboxes whatever their rootfs: static, no sanitizers.
$(BIN)/probe: tests/probe.c $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 $(WARN) -static -o $@ $<

# The escape attempts of tests/integration/test_adversarial.sh: like the probe.
$(BIN)/attack: tests/attack.c $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) -std=gnu11 -O2 $(WARN) -static -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libhearth.a $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libhearth.a $(LDLIBS)

$(BUILD)/tests/%: tests/integration/%.c $(BUILD)/libhearth.a $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libhearth.a $(LDLIBS)

deps:
	@scripts/install-deps

unit: all
	@scripts/run-tests unit

integration: all
	@scripts/run-tests integration

vm-test: all
	@scripts/vm-test

# With CI=true, scripts/run-tests ci: the same runners, then the suite again
# under ASan/UBSan (in build/san), the unit tests under valgrind, every fuzz
# target for 60 s and a 2-minute soak.
test: deps
	@$(MAKE) --no-print-directory all
	@scripts/run-tests $(if $(filter true,$(CI)),ci,all)

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/run-hearthd

bench: deps
	@$(MAKE) --no-print-directory all
	@scripts/bench/run $(if $(QUICK),--quick)

# SOAK_SECONDS (or SOAK_MINUTES) of mixed load and faults; default 10 minutes.
soak: deps
	@$(MAKE) --no-print-directory all
	@scripts/soak

# libFuzzer targets for every parser of outside input; FUZZ_SECONDS each (default 30).
fuzz: deps
	@FUZZ_OUT=$${FUZZ_OUT:-$(BUILD)/fuzz} scripts/fuzz

clean:
	rm -rf $(BUILD) $(BIN)

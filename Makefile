SHELL := /bin/bash

# Builds ngx_http_integrations_module.so against Debian's nginx-dev tree
# and the integrationsctl CLI.

NGX_SRC   ?= /usr/share/nginx/src
BUILD     ?= build
NGX_BUILD  = $(BUILD)/nginx
MODULE     = $(BUILD)/ngx_http_integrations_module.so
CLI        = $(BUILD)/integrationsctl
CC        ?= cc
CFLAGS    ?= -O2 -g -Wall -Wextra -Wno-unused-parameter
SRCS       = $(wildcard src/*.c src/*.h) config
CLI_SRCS   = $(wildcard src/cli/*.c src/cli/*.h) src/ngx_integrations_key.c \
	         src/ngx_integrations_key.h src/ngx_integrations_fold.h

.PHONY: all deps module cli run stop test test-asan unit bench script-cost fuzz lint clean

all: deps module cli

deps:
	@scripts/deps.sh

module: $(MODULE)

cli: $(CLI)

$(NGX_BUILD)/objs/Makefile: config
	@rm -rf $(NGX_BUILD) && mkdir -p $(BUILD)
	cp -r $(NGX_SRC) $(NGX_BUILD)
	. $(NGX_BUILD)/conf_flags && cd $(NGX_BUILD) && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" \
	    --with-cc-opt="$(NGX_CC_OPT)" --with-ld-opt="$(NGX_LD_OPT)" \
	    --add-dynamic-module=$(CURDIR) >configure.log 2>&1 \
	    || { tail -30 configure.log; exit 1; }

$(MODULE): $(NGX_BUILD)/objs/Makefile $(SRCS)
	$(MAKE) -s -C $(NGX_BUILD) -f objs/Makefile modules
	@# a new inode: running nginx processes keep the old mapping
	cp $(NGX_BUILD)/objs/ngx_http_integrations_module.so $@.tmp
	mv -f $@.tmp $@

$(CLI): $(CLI_SRCS)
	$(CC) $(CFLAGS) $(CLI_CFLAGS) -Isrc -o $@.tmp $(filter %.c,$^) \
	    -lhiredis -ljansson -lcrypto -lz $(CLI_LDFLAGS)
	mv -f $@.tmp $@

run: all
	@scripts/run.sh

stop:
	@scripts/run.sh stop

# Every test: C unit tests (TAP) and integration tests with real nginx and
# Redis, all driven by prove.
test: all
	prove t/

# The same suite with the module and CLI built under AddressSanitizer;
# any sanitizer report in an nginx error log fails the run.
test-asan: deps
	$(MAKE) BUILD=build-asan NGX_CC_OPT="-fsanitize=address,undefined -fno-omit-frame-pointer -g -O1" \
	    NGX_LD_OPT="-fsanitize=address,undefined" \
	    CLI_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer" \
	    CLI_LDFLAGS="-fsanitize=address,undefined" module cli
	INTEGRATIONS_BUILD=build-asan INTEGRATIONS_ASAN=1 prove -j1 t/

bench: all
	@scripts/deps.sh bench
	@bench/run.sh

# libFuzzer (clang, ASan, UBSan) on the pure logic for FUZZ_SECS, from
# t/fuzz/corpus into a scratch copy; a broken property aborts and leaves
# its input in $(BUILD)/fuzz (keep it in t/fuzz/corpus: t/02 replays it)
FUZZ_SECS ?= 120
fuzz:
	@scripts/deps.sh fuzz
	@mkdir -p $(BUILD)/fuzz/work
	clang -g -O1 -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined -Isrc -o $(BUILD)/fuzz/fuzz_key \
	    t/fuzz/fuzz_key.c src/ngx_integrations_key.c -lcrypto -lz
	cp t/fuzz/corpus/* $(BUILD)/fuzz/work/
	cd $(BUILD)/fuzz && ./fuzz_key -max_total_time=$(FUZZ_SECS) \
	    -max_len=512 work

# Redis instructions per key check (callgrind): weighs a script change
script-cost: all
	@scripts/deps.sh script-cost
	@bench/script_cost.sh

lint:
	@scripts/deps.sh lint
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability \
	    --inline-suppr --suppress=missingIncludeSystem \
	    -I src src
	@scripts/style-check.sh

clean:
	rm -rf build build-asan t/tmp

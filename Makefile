# chronicle_raft: PGXS build of the extension plus the server-free test targets.
#
#   make && make install          build and install the extension
#   make installcheck             pg_regress suite on a temporary instance
#                                 (run as a non-root user: initdb refuses root)
#   make unitcheck                C unit tests and the Raft simulator's fixed seeds
#   make simcheck SEEDS=N STEPS=M a longer random search in the Raft simulator
#   make tapcheck                 TAP tests (multi-server, crash/restart)

EXTRA_CLEAN = proto/build
EXTENSION  = chronicle_raft
MODULE_big = chronicle_raft
DATA       = sql/chronicle_raft--0.1.sql
PGFILEDESC = "chronicle_raft - fault-tolerant event streams"

OBJS = \
	src/chronicle_raft.o \
	src/tabplus/rowcodec.o \
	src/tabplus/tabplus_page.o \
	src/tabplus/tabplus.o \
	src/tabplus/tabplus_xlog.o \
	src/tabplus/tabplus_intent.o \
	src/am/stream_am.o \
	src/am/staging.o \
	src/am/guard.o \
	src/am/timescan.o \
	src/sql/aggregate.o \
	src/sql/insert_json.o \
	src/sql/status.o \
	src/worker/guc.o \
	src/worker/snapshot.o \
	src/worker/worker.o \
	src/queue/queue.o \
	src/raftlog/raftlog.o \
	src/raftlog/crc32c.o \
	src/net/codec.o \
	src/net/hmac.o \
	src/net/transport.o \
	proto/build/chronicle.pb-c.o \
	src/raft/raft.o \
	src/raft/raft_conf.o \
	src/raft/raft_log.o \
	src/raft/raft_mem.o

PG_CPPFLAGS = -I$(srcdir)/src
SHLIB_LINK = -lprotobuf-c
PG_CPPFLAGS += -I$(srcdir)/proto/build

REGRESS = setup streams types errors transactions aggregates insert_json ddl timescan
REGRESS_OPTS = --temp-instance=./tmp_check --temp-config=$(srcdir)/test/regress.conf

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# protobuf-c code is generated at build time (not committed)
proto/build/chronicle.pb-c.c proto/build/chronicle.pb-c.h: proto/chronicle.proto
	@mkdir -p proto/build
	protoc-c --proto_path=proto --c_out=proto/build proto/chronicle.proto

src/net/codec.o: proto/build/chronicle.pb-c.h

# PGXS tracks no header dependencies: rebuild everything when a header changes
$(OBJS): $(wildcard $(srcdir)/src/*.h $(srcdir)/src/*/*.h) proto/build/chronicle.pb-c.h
# ... and the JIT bitcode files the same way (with_llvm builds them too)
$(OBJS:.o=.bc): $(wildcard $(srcdir)/src/*.h $(srcdir)/src/*/*.h) proto/build/chronicle.pb-c.h

.PHONY: unitcheck simcheck tapcheck

# Server-free tests: each component with unit tests owns a Makefile in its
# test folder with a "check" target.
unitcheck:
	$(MAKE) -C test/unit check
	@if [ -f test/sim/Makefile ]; then $(MAKE) -C test/sim check; \
	else echo "test/sim: no simulator in this tree yet"; fi

simcheck:
	$(MAKE) -C test/sim simcheck SEEDS=$(SEEDS) STEPS=$(STEPS)

tapcheck:
	@ls test/t/*.pl >/dev/null 2>&1 || { echo "test/t: no TAP tests in this tree yet"; exit 0; }; \
	PATH="$$($(PG_CONFIG) --bindir):$$PATH" PERL5LIB="$$($(PG_CONFIG) --pkglibdir)/pgxs/src/test/perl:$$PERL5LIB" \
		prove -v test/t/*.pl

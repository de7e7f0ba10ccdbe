# libwsserver — build, test, install.
#
#   make            the release library, the header, every C example (build/examples/)
#                   and wspipe, the gwsocket-compatible pipe server (build/wspipe)
#   make wspipe     build/wspipe alone (and the library it links)
#   make demo       all of the above, then the chat demo (examples/chat.lua) on 127.0.0.1:8000
#   make test       every test suite (installs what it needs first)
#   make bench      the benchmark beside peers (scripts/bench.sh; BENCH_ARGS=--quick)
#   make install PREFIX=/usr/local   (the library, header, pkg-config file, Lua modules)
#   make header     regenerate include/wsserver.h and lua/wsserver_cdefs.lua after changing src/ffi/

PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
LUADIR     ?= $(PREFIX)/share/lua/5.1
DEMO_PORT  ?= 8000
CC         ?= cc
CFLAGS     ?= -O2 -g
WARN       := -std=c11 -Wall -Wextra -Werror -Wpedantic

export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO      := cargo
RELEASE    := target/release
LIB        := $(RELEASE)/libwsserver.so
EXAMPLES_C := $(wildcard examples/*.c)
EXAMPLES   := $(patsubst examples/%.c,build/examples/%,$(EXAMPLES_C))
WSPIPE_SRC := $(wildcard wspipe/*.c)
WSPIPE_HDR := $(wildcard wspipe/*.h)
VERSION    := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

.PHONY: all lib deps wspipe demo test bench header install uninstall clean

all: lib $(EXAMPLES) build/wspipe

deps:
	@scripts/deps.sh

lib: deps
	$(CARGO) build --release --locked
	@mkdir -p build
	@cp -f $(LIB) build/libwsserver.so.tmp && mv -f build/libwsserver.so.tmp build/libwsserver.so

build/examples/%: examples/%.c include/wsserver.h lib
	@mkdir -p build/examples
	$(CC) $(CFLAGS) $(WARN) -Iinclude -o $@ $< -Lbuild -lwsserver -Wl,-rpath,'$$ORIGIN/..'

# wspipe is an application, not an example: its own folder, its own binary. Like any
# program outside this repository it sees nothing but include/wsserver.h; it sits next to
# the library (build/libwsserver.so), hence the rpath $ORIGIN.
wspipe: build/wspipe

build/wspipe: $(WSPIPE_SRC) $(WSPIPE_HDR) include/wsserver.h lib
	$(CC) $(CFLAGS) $(WARN) -Iinclude -o $@ $(WSPIPE_SRC) -Lbuild -lwsserver -Wl,-rpath,'$$ORIGIN'

demo: all
	@echo "chat demo: open http://127.0.0.1:$(DEMO_PORT)/ in a browser"
	luajit examples/chat.lua $(DEMO_PORT)

test:
	@scripts/deps.sh --test
	scripts/test.sh

bench: all
	scripts/bench.sh $(BENCH_ARGS)

header:
	WSS_REGEN=1 $(CARGO) build --locked

install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(LUADIR)
	install -m 755 $(LIB) $(DESTDIR)$(LIBDIR)/libwsserver.so.$(VERSION)
	ln -sf libwsserver.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libwsserver.so
	install -m 644 $(RELEASE)/libwsserver.a $(DESTDIR)$(LIBDIR)/libwsserver.a
	install -m 644 include/wsserver.h $(DESTDIR)$(INCLUDEDIR)/wsserver.h
	install -m 644 lua/*.lua $(DESTDIR)$(LUADIR)/
	install -d $(DESTDIR)$(LUADIR)/LibMongoose
	install -m 644 lua/LibMongoose/*.lua $(DESTDIR)$(LUADIR)/LibMongoose/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' wsserver.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/wsserver.pc

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libwsserver.so* $(DESTDIR)$(LIBDIR)/libwsserver.a \
	      $(DESTDIR)$(INCLUDEDIR)/wsserver.h $(DESTDIR)$(LIBDIR)/pkgconfig/wsserver.pc
	rm -f $(addprefix $(DESTDIR)$(LUADIR)/,$(notdir $(wildcard lua/*.lua)))
	rm -rf $(DESTDIR)$(LUADIR)/LibMongoose

clean:
	$(CARGO) clean
	rm -rf build

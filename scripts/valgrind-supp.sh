#!/bin/sh
# Prints the valgrind suppressions the C and Lua suites run with (scripts/test.sh,
# scripts/test-lua.sh): valgrind-supp.sh > FILE.
#
# ring's AES-GCM is hand-written assembly (from BoringSSL). Memcheck does not follow the
# definedness of its output through those instructions, so decrypting a TLS record looks
# like a branch on uninitialised data, and a sealed record (its authentication tag) looks
# uninitialised when it is written to the socket. The same false positive is known for
# OpenSSL's AES-GCM (openssl/openssl#19719). Only frames inside ring's AEAD and the TLS
# record writer are suppressed; nothing from LuaJIT, the C tests or the rest of
# libwsserver is. Records go out with sendmsg (MSG_NOSIGNAL), and memcheck matches a
# syscall parameter's name exactly, msg_iov index included: one entry per index.
set -eu
printf '{\n   ring-aead-open-cond\n   Memcheck:Cond\n   ...\n   fun:*ring*aead*\n   ...\n   fun:*rustls*decrypt*\n}\n'
i=0
while [ "$i" -lt 64 ]; do
  printf '{\n   ring-aead-sealed-record-sendmsg-%s\n   Memcheck:Param\n   sendmsg(msg.msg_iov[%s])\n   ...\n   fun:*wsserver*net*tls*TlsStream*\n}\n' "$i" "$i"
  i=$((i + 1))
done

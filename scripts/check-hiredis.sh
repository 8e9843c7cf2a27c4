#!/usr/bin/env bash
# Build semcache against a hiredis other than the system's (Debian 12 has
# 0.14; backends/redis_conn.c also claims 1.x) and run the Redis tier's
# suites with it.  By hand, not in CI: it downloads nothing, so it needs a
# hiredis source tree already on the machine (a release's top directory,
# with hiredis.c, net.c, read.c, sds.c, ...; the npm package
# redis-fast-driver 2.2.6 carries hiredis 1.2.0 under deps/hiredis).
#
#   scripts/check-hiredis.sh HIREDIS_SRC [OUT_DIR]     (OUT_DIR: build-hiredis-alt)
#
# The library is compiled static into OUT_DIR/hiredis-prefix with a
# pkg-config file of its own, and semcache is configured in
# OUT_DIR/semcache with -Dpkg_config_path pointing there, -Dwerror=true.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 HIREDIS_SRC [OUT_DIR]" >&2; exit 2; }
src=$(realpath "$1")
cd "$(dirname "$0")/.."
out=$(realpath -m "${2:-build-hiredis-alt}")
[ -f "$src/hiredis.h" ] && [ -f "$src/hiredis.c" ] || { echo "$src: no hiredis sources" >&2; exit 2; }

def() { awk -v k="$1" '$1 == "#define" && $2 == k { print $3 }' "$src/hiredis.h"; }
version="$(def HIREDIS_MAJOR).$(def HIREDIS_MINOR).$(def HIREDIS_PATCH)"
prefix="$out/hiredis-prefix"
mkdir -p "$prefix/include/hiredis" "$prefix/lib/pkgconfig" "$out/hiredis-obj"
rm -f "$out"/hiredis-obj/*.o "$prefix/lib/libhiredis.a"

# What libhiredis is made of (alloc.c and sockcompat.c exist from 1.0 on;
# async.c is needed by hiredis.c, and #includes dict.c itself).
for f in alloc.c net.c hiredis.c sds.c async.c read.c sockcompat.c; do
	[ -f "$src/$f" ] || continue
	gcc -std=c99 -O2 -fPIC -Wall -c "$src/$f" -o "$out/hiredis-obj/${f%.c}.o"
done
ar rcs "$prefix/lib/libhiredis.a" "$out"/hiredis-obj/*.o
for h in hiredis.h async.h read.h sds.h alloc.h; do
	[ -f "$src/$h" ] && cp "$src/$h" "$prefix/include/hiredis/"
done
cat > "$prefix/lib/pkgconfig/hiredis.pc" <<EOF
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include
Name: hiredis
Description: hiredis $version from $src, for scripts/check-hiredis.sh
Version: $version
Libs: -L\${libdir} -lhiredis
Cflags: -I\${includedir}/hiredis -I\${includedir} -D_FILE_OFFSET_BITS=64
EOF

setup=(-Dpkg_config_path="$prefix/lib/pkgconfig" -Dwerror=true)
if [ -d "$out/semcache/meson-info" ]; then
	meson setup --reconfigure "$out/semcache" "${setup[@]}" | tee "$out/setup.log"
else
	meson setup "$out/semcache" "${setup[@]}" | tee "$out/setup.log"
fi
grep -q "hiredis found: YES $version" "$out/setup.log" ||
	{ echo "meson did not pick hiredis $version" >&2; exit 1; }
ninja -C "$out/semcache"
meson test -C "$out/semcache" redis tier fuzz-redis fuzz-tier --print-errorlogs
echo "hiredis $version: the Redis tier's suites passed"

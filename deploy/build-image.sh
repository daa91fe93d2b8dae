#!/usr/bin/env bash
# Builds the ration container image (deploy/Dockerfile, FROM scratch) from
# static binaries built here, so no base image is pulled.
#   deploy/build-image.sh [TAG]     (default: $RATION_IMAGE, else ration:dev)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-${RATION_IMAGE:-ration:dev}}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

for cmd in rationd rationctl; do
  CGO_ENABLED=0 GOOS=linux go build -buildvcs=auto -trimpath -ldflags='-s -w' -o "$ctx/$cmd" "./cmd/$cmd"
done
# The rest of the file system as a tar: only ADD of an archive keeps the
# modes and owners of directories (COPY makes them 0755 root).
root=$ctx/root
mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/var/lib/ration"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nration:x:65532:65532:ration:/var/lib/ration:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nration:x:65532:\n' >"$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$root/tmp"
chmod 0700 "$root/var/lib/ration"
tar=(tar -C "$root" --numeric-owner --mtime=@0 --sort=name)
"${tar[@]}" --owner=0 --group=0 -cf "$ctx/rootfs.tar" etc tmp
"${tar[@]}" --owner=65532 --group=65532 -rf "$ctx/rootfs.tar" var/lib/ration

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
docker build -q -f deploy/Dockerfile -t "$tag" \
  --label org.opencontainers.image.title=ration \
  --label org.opencontainers.image.revision="$revision" "$ctx"
echo "built $tag"

#!/usr/bin/env bash
# Checks that the public API, every .proto file in api/ration/v1, compiles
# with plain protoc (Debian's protobuf-compiler, 3.21) and with
# python3-grpc-tools, and that the Python both generate imports. Installs
# the two Debian packages when they are missing (CI runs as root).
set -euo pipefail
cd "$(dirname "$0")"

# Debian's python3, which python3-grpc-tools installs into (the python3
# first on PATH may be another).
py=/usr/bin/python3
missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
"$py" -c 'import grpc_tools' 2>/dev/null || missing+=(python3-grpc-tools)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

protos=(ration/v1/*.proto)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/protoc" "$tmp/grpc"

# The well-known imports (google/protobuf/*.proto) come from protoc's own
# include directory and grpc_tools' bundled copy: no -I for them.
echo "$(protoc --version): ${protos[*]}"
protoc -I . --python_out="$tmp/protoc" --cpp_out="$tmp/protoc" \
  --include_imports --descriptor_set_out="$tmp/api.binpb" "${protos[@]}"
# The public API stands alone: it imports only its own files and the
# well-known types, never the internal packages.
"$py" - "$tmp/api.binpb" <<'PY'
import sys
from google.protobuf import descriptor_pb2
files = descriptor_pb2.FileDescriptorSet.FromString(open(sys.argv[1], "rb").read()).file
bad = [f.name for f in files if not f.name.startswith(("ration/v1/", "google/protobuf/"))]
if bad:
    sys.exit("the public API imports internal files: " + ", ".join(bad))
PY
echo "grpc_tools ($("$py" -m grpc_tools.protoc --version))"
"$py" -m grpc_tools.protoc -I . --python_out="$tmp/grpc" --grpc_python_out="$tmp/grpc" "${protos[@]}"

# Import every generated module once, from each compiler's output.
for out in protoc grpc; do
  modules=$(cd "$tmp/$out" && find ration -name '*.py' | sed 's/\.py$//; s#/#.#g' | sort | paste -sd, -)
  PYTHONPATH="$tmp/$out" "$py" -c "import $modules; print('$out: imported', len('$modules'.split(',')), 'modules')"
done

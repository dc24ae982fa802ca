#!/bin/sh
# Regenerate torpor/images/pb/ (Python protobuf modules) from torpor/images/proto/*.proto.
#
# The .proto sources import each other by bare file name ("core_x86.proto"). They are staged
# under torpor/images/pb/ in a scratch include root with those imports rewritten to
# "torpor/images/pb/NAME.proto", so that protoc
#   - emits package imports (`from torpor.images.pb import core_x86_pb2`) that work when
#     torpor is installed, and
#   - registers the files under names no other protobuf user (e.g. pycriu) will collide with
#     in the process-wide descriptor pool.
#
# protoc stamps the generated code with its own protobuf version and the code refuses to
# load on an older runtime. The code generated here uses nothing newer than protobuf 5.28,
# the oldest runtime torpor supports (pyproject.toml), so the stamp is lowered to 5.28.0.
#
# Usage: scripts/gen-protos.sh [python]   (python defaults to .venv/bin/python, which must
# have grpcio-tools installed)
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
python=${1:-"$root/.venv/bin/python"}
src="$root/torpor/images/proto"
out="$root/torpor/images/pb"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT INT TERM
mkdir -p "$stage/torpor/images/pb"
for f in "$src"/*.proto; do
    sed -E 's|^import "([A-Za-z0-9_]+\.proto)";|import "torpor/images/pb/\1";|' "$f" \
        >"$stage/torpor/images/pb/$(basename "$f")"
done

mkdir -p "$stage/out"
(cd "$stage" && "$python" -m grpc_tools.protoc -I . \
    --python_out=out --pyi_out=out torpor/images/pb/*.proto)

"$python" - "$stage"/out/torpor/images/pb/*_pb2.py <<'PY'
import re
import sys

# ValidateProtobufRuntimeVersion(Domain.PUBLIC, MAJOR, MINOR, PATCH, SUFFIX, FILE)
call = re.compile(r"(ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,)"
                  r"\s*\d+,\s*\d+,\s*\d+,")
for path in sys.argv[1:]:
    text = open(path).read()
    text, n = call.subn(r"\1 5, 28, 0,", text)
    if n != 1:
        sys.exit(f"gen-protos: {path}: runtime version check not found; protoc output changed")
    open(path, "w").write(text)
PY

rm -f "$out"/*_pb2.py "$out"/*_pb2.pyi
cp "$stage"/out/torpor/images/pb/*_pb2.py "$stage"/out/torpor/images/pb/*_pb2.pyi "$out/"

# The package module imports every generated module and re-exports its messages, enums and
# top-level enum values, so callers can write pb.CoreEntry (pb.core_pb2.CoreEntry) and
# pb.COMPAT (pb.core_x86_pb2.COMPAT). All files share one proto package, in which protoc
# already guarantees that these names are unique.
modules=$(cd "$out" && ls *_pb2.py | sed 's/\.py$//' | sort)
{
    echo '"""Generated protobuf modules for torpor'"'"'s image format (CRIU-compatible).'
    echo
    echo 'Regenerate with scripts/gen-protos.sh; do not edit. Every message class, enum class and'
    echo 'top-level enum value is also available directly on this package: pb.CoreEntry is'
    echo 'pb.core_pb2.CoreEntry, pb.COMPAT is pb.core_x86_pb2.COMPAT.'
    echo '"""'
    echo
    for m in $modules; do echo "from torpor.images.pb import $m"; done
    echo
    echo "_MODULES = ("
    for m in $modules; do echo "    $m,"; done
    echo ")"
    echo
    echo "for _module in _MODULES:"
    echo "    for _name in _module.DESCRIPTOR.message_types_by_name:"
    echo "        globals()[_name] = getattr(_module, _name)"
    echo "    for _name, _enum in _module.DESCRIPTOR.enum_types_by_name.items():"
    echo "        globals()[_name] = getattr(_module, _name)"
    echo "        for _value in _enum.values:"
    echo "            globals()[_value.name] = _value.number"
    echo "del _module, _name, _enum, _value"
} >"$out/__init__.py"

echo "gen-protos: wrote $(echo "$modules" | wc -w) modules to torpor/images/pb/"

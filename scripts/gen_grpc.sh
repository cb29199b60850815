#!/usr/bin/env bash
# Regenerate the Open Inference Protocol gRPC modules from grpc_predict_v2.proto.
#
#   scripts/gen_grpc.sh
#
# protoc stamps the protobuf version it was built with into the module, and protobuf refuses to
# load a module made by a newer protoc than the runtime ("VersionError: gencode X runtime Y").
# The clients users install next to modelport pin different runtimes (tritonclient and kserve pin
# protobuf 6, modelport's own environment has 7), so the modules are generated with an OLD protoc
# on purpose: grpcio-tools 1.72.1 (protoc 30, gencode 6.30.0), which every protobuf runtime from
# 6.30 on (7.x included) loads. It is installed into its own virtual environment (GEN_GRPC_VENV,
# default /tmp/modelport-gen-grpc), never into the project's.
#
# Two edits follow protoc, both on purpose:
#  * the messages go into a private descriptor pool instead of protobuf's process-wide default
#    pool: tritonclient (and KServe / MLServer) register the same `inference.*` names there, and a
#    second registration of one name fails with "duplicate symbol" at import time;
#  * the service module is marked for mypy to skip (protoc writes it without type hints).
set -euo pipefail
cd "$(dirname "$0")/.."
GRPC_TOOLS_VERSION=1.72.1
venv=${GEN_GRPC_VENV:-/tmp/modelport-gen-grpc}
if ! "$venv/bin/python" -c "import grpc_tools" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "grpcio-tools==$GRPC_TOOLS_VERSION"
fi
pkg=src/modelport/serving/grpc
"$venv/bin/python" -m grpc_tools.protoc -I src --python_out=src --pyi_out=src \
  --grpc_python_out=src "$pkg/grpc_predict_v2.proto"
sed -i 's/_descriptor_pool\.Default()\.AddSerializedFile(/_descriptor_pool.DescriptorPool().AddSerializedFile(/' \
  "$pkg/grpc_predict_v2_pb2.py"
grep -q 'DescriptorPool().AddSerializedFile' "$pkg/grpc_predict_v2_pb2.py"
sed -i '1i # mypy: ignore-errors' "$pkg/grpc_predict_v2_pb2_grpc.py"
grep -q '# Protobuf Python Version: 6\.30\.' "$pkg/grpc_predict_v2_pb2.py"
echo "regenerated $pkg/grpc_predict_v2_pb2{.py,.pyi,_grpc.py}"

#!/usr/bin/env bash
# Regenerate the Open Inference Protocol gRPC modules from grpc_predict_v2.proto.
#
#   . .venv/bin/activate && scripts/gen_grpc.sh
#
# Needs grpcio-tools (the [dev] extra). Two edits follow protoc, both on purpose:
#  * the messages go into a private descriptor pool instead of protobuf's process-wide default
#    pool: tritonclient (and KServe / MLServer) register the same `inference.*` names there, and a
#    second registration of one name fails with "duplicate symbol" at import time;
#  * the service module is marked for mypy to skip (protoc writes it without type hints).
set -euo pipefail
cd "$(dirname "$0")/.."
pkg=src/modelport/serving/grpc
python -m grpc_tools.protoc -I src --python_out=src --pyi_out=src --grpc_python_out=src \
  "$pkg/grpc_predict_v2.proto"
sed -i 's/_descriptor_pool\.Default()\.AddSerializedFile(/_descriptor_pool.DescriptorPool().AddSerializedFile(/' \
  "$pkg/grpc_predict_v2_pb2.py"
grep -q 'DescriptorPool().AddSerializedFile' "$pkg/grpc_predict_v2_pb2.py"
sed -i '1i # mypy: ignore-errors' "$pkg/grpc_predict_v2_pb2_grpc.py"
echo "regenerated $pkg/grpc_predict_v2_pb2{.py,.pyi,_grpc.py}"

"""A fuzz run of the V2 decoders, JSON and binary (issue 14): whatever bytes arrive, decoding
either gives a batch or raises a ``ModelportError`` (a 400 / INVALID_ARGUMENT naming what is
wrong), never another exception (a 500 with a traceback in the log)."""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelport
from modelport.bundle.model import Model
from modelport.errors import ModelportError
from modelport.serving import v2
from modelport.serving.grpc import grpc_predict_v2_pb2 as pb
from modelport.serving.grpc.layout import batch_from_tensors
from modelport.serving.grpc.tensors import decode_inputs

DATATYPES = [*v2.DATATYPES, "fp64", "", "INT128"]
NAMES = ["f0", "f1", "s", "b", "x", ""]
FUZZ = settings(max_examples=600, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = pd.DataFrame({"f0": rng.normal(size=30), "f1": rng.integers(0, 5, 30),
                      "b": rng.integers(0, 2, 30).astype(bool)})
    clf = LogisticRegression().fit(x.astype(float), x.f0 > 0)
    path = Path(tmp_path_factory.mktemp("v2fuzz")) / "clf"
    return modelport.load(modelport.save(clf, path, name="clf", example=x[:3],
                                         accelerate=False))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=12)
numbers = st.lists(st.integers(-2**65, 2**65) | st.floats(allow_nan=False) | st.booleans()
                   | st.text(max_size=3) | st.none(), max_size=6)
tensors = st.fixed_dictionaries(
    {"name": st.sampled_from(NAMES) | json_values},
    optional={"datatype": st.sampled_from(DATATYPES) | json_values,
              "shape": st.lists(st.integers(-2, 2**40), max_size=3) | json_values,
              "data": numbers | json_values,
              "parameters": st.fixed_dictionaries(
                  {}, optional={"binary_data_size": st.integers(-5, 64) | json_values})
              | json_values})
requests = st.fixed_dictionaries(
    {"inputs": st.lists(tensors, max_size=4) | json_values},
    optional={"outputs": st.lists(st.fixed_dictionaries(
        {"name": st.sampled_from(["label", "probabilities", "x"]) | json_values},
        optional={"parameters": json_values}), max_size=2) | json_values,
              "parameters": json_values, "id": json_values})


@FUZZ
@given(request=requests, binary=st.binary(max_size=48), use_binary=st.booleans())
def test_v2_json_and_binary_decoding_never_fails_unexpectedly(
        model: Model, request: dict[str, Any], binary: bytes, use_binary: bool) -> None:
    head = json.dumps(request).encode()  # stdlib: integers beyond 64 bits too
    body, length = (head + binary, len(head)) if use_binary else (head, None)
    with contextlib.suppress(ModelportError):
        v2.decode(body, length, model)


@FUZZ
@given(raw=st.binary(max_size=64), length=st.binary(max_size=6))
def test_arbitrary_bytes_and_header_lengths(model: Model, raw: bytes, length: bytes) -> None:
    with contextlib.suppress(ModelportError):
        v2.decode(raw, v2.header_length(length), model)


@FUZZ
@given(items=st.lists(st.tuples(
    st.sampled_from(NAMES), st.sampled_from([*DATATYPES[:13]]),
    st.lists(st.integers(0, 5), max_size=3), st.binary(max_size=40),
    st.lists(st.integers(-2**31, 2**31 - 1), max_size=5),
    st.lists(st.floats(allow_nan=True), max_size=5), st.booleans()), max_size=4))
def test_grpc_tensor_decoding_never_fails_unexpectedly(model: Model,
                                                       items: list[Any]) -> None:
    request = pb.ModelInferRequest(model_name="clf")
    for name, datatype, shape, raw, ints, floats, use_raw in items:
        tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
        if use_raw:
            request.raw_input_contents.append(raw if datatype != "BYTES"
                                              else struct.pack("<I", len(raw)) + raw)
        else:
            tensor.contents.int_contents.extend(ints)
            tensor.contents.fp64_contents.extend(floats)
    with contextlib.suppress(ModelportError):
        batch_from_tensors(model.signature, decode_inputs(request))


@pytest.mark.parametrize(("datatype", "value"), [("FP16", 65520), ("FP16", -1e6),
                                                 ("FP32", 1e300), ("INT8", 300)])
def test_a_json_value_outside_its_datatype_is_refused_not_made_infinite(
        datatype: str, value: float) -> None:
    tensor = {"name": "f0", "datatype": datatype, "shape": [1], "data": [value]}
    with pytest.raises(ModelportError, match=f"outside the range of {datatype}"):
        v2._decode_tensor(tensor, memoryview(b""), 0)
    fits = {"name": "f0", "datatype": datatype, "shape": [2], "data": [1, 1e-60]}
    assert v2._decode_tensor(fits, memoryview(b""), 0)[0].tolist()[0] == 1  # underflow is 0

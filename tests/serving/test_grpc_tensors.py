"""V2 gRPC tensors and signature binding, without a server: decoding, encoding, the error table."""

from __future__ import annotations

import struct

import grpc
import numpy as np
import pytest

from modelport import errors
from modelport.bundle.signature import ColumnSpec, Signature
from modelport.serving.grpc import grpc_predict_v2_pb2 as pb
from modelport.serving.grpc.layout import OutputTensor, batch_from_tensors, select_outputs
from modelport.serving.grpc.status import grpc_error
from modelport.serving.grpc.tensors import WireTensor, decode_inputs, encode_output

TABLE = Signature(inputs=(ColumnSpec("rooms", "int64"), ColumnSpec("city", "string"),
                          ColumnSpec("area", "float64")), task="regression")
NUMERIC = Signature(inputs=(ColumnSpec("a", "float64"), ColumnSpec("b", "float64")))
IMAGE = Signature(inputs=(ColumnSpec("pixels", "float32", (2, 2)),), kind="tensor")


def _tensor(name: str, datatype: str, shape: list[int]) -> pb.ModelInferRequest.InferInputTensor:
    return pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)


def _bytes(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


def test_raw_and_typed_contents_decode_to_the_same_arrays() -> None:
    values = np.array([[1.5, -2.0], [3.25, 4.0]], dtype=np.float32)
    raw = pb.ModelInferRequest(inputs=[_tensor("x", "FP32", [2, 2]), _tensor("s", "BYTES", [2])],
                               raw_input_contents=[values.tobytes(), _bytes(b"ab", "é".encode())])
    typed_x = _tensor("x", "FP32", [2, 2])
    typed_x.contents.fp32_contents.extend(values.ravel().tolist())
    typed_s = _tensor("s", "BYTES", [2])
    typed_s.contents.bytes_contents.extend([b"ab", "é".encode()])
    typed = pb.ModelInferRequest(inputs=[typed_x, typed_s])
    for request in (raw, typed):
        x, s = decode_inputs(request)
        np.testing.assert_array_equal(x.array, values)
        assert x.array.dtype == np.float32
        assert s.array.tolist() == ["ab", "é"]


@pytest.mark.parametrize("datatype, field, values, expected_dtype", [
    ("BOOL", "bool_contents", [True, False], np.bool_),
    ("INT8", "int_contents", [-128, 127], np.int8),
    ("INT16", "int_contents", [-3, 3], np.int16),
    ("INT32", "int_contents", [-3, 3], np.int32),
    ("INT64", "int64_contents", [-(2**40), 2**40], np.int64),
    ("UINT8", "uint_contents", [0, 255], np.uint8),
    ("UINT16", "uint_contents", [0, 65535], np.uint16),
    ("UINT32", "uint_contents", [0, 2**32 - 1], np.uint32),
    ("UINT64", "uint64_contents", [0, 2**64 - 1], np.uint64),
    ("FP64", "fp64_contents", [0.1, -1e300], np.float64),
])
def test_every_datatype_decodes_typed_and_raw(datatype: str, field: str, values: list[object],
                                              expected_dtype: type) -> None:
    typed = _tensor("v", datatype, [2])
    getattr(typed.contents, field).extend(values)
    (decoded,) = decode_inputs(pb.ModelInferRequest(inputs=[typed]))
    assert decoded.array.dtype == expected_dtype
    assert decoded.array.tolist() == values
    raw_bytes = np.array(values, dtype=expected_dtype).astype(
        np.dtype(expected_dtype).newbyteorder("<")).tobytes()
    (raw,) = decode_inputs(pb.ModelInferRequest(inputs=[_tensor("v", datatype, [2])],
                                                raw_input_contents=[raw_bytes]))
    assert raw.array.tolist() == values


@pytest.mark.parametrize("build, message", [
    (lambda: pb.ModelInferRequest(inputs=[_tensor("x", "FP64", [2, 2])],
                                  raw_input_contents=[b"\0" * 24]),
     "input 'x': shape [2, 2] of FP64 needs 32 bytes of raw content, got 24"),
    (lambda: pb.ModelInferRequest(inputs=[_tensor("x", "INT8", [1])],
                                  raw_input_contents=[b"\1", b"\2"]),
     "1 inputs but 2 raw_input_contents"),
    (lambda: pb.ModelInferRequest(inputs=[_tensor("x", "BYTES", [2])],
                                  raw_input_contents=[_bytes(b"a")]),
     "input 'x': the shape needs 2 BYTES elements, the raw content holds 1"),
    (lambda: pb.ModelInferRequest(inputs=[_tensor("x", "BYTES", [1])],
                                  raw_input_contents=[struct.pack("<I", 9) + b"abc"]),
     "input 'x': raw BYTES element 0 claims 9 bytes"),
    (lambda: pb.ModelInferRequest(inputs=[_tensor("x", "BYTES", [1])],
                                  raw_input_contents=[_bytes(b"\xff")]),
     "input 'x': BYTES element 0 is not valid UTF-8"),
    (lambda: pb.ModelInferRequest(inputs=[_tensor("x", "FP128", [1])]),
     "input 'x': unsupported datatype 'FP128'"),
    (lambda: pb.ModelInferRequest(inputs=[_tensor("x", "FP32", [-1, 2])]),
     "input 'x': shape [-1, 2] has a negative dimension"),
    (lambda: pb.ModelInferRequest(inputs=[_tensor("x", "FP32", [3])]),
     "input 'x': shape [3] needs 3 values in fp32_contents, got 0"),
    (lambda: pb.ModelInferRequest(inputs=[_tensor("x", "UINT8", [0]), _tensor("x", "UINT8", [0])]),
     "input 'x' is given twice"),
])
def test_malformed_tensors_are_refused_naming_the_input(build: object, message: str) -> None:
    with pytest.raises(errors.InvalidInputError) as caught:
        decode_inputs(build())  # type: ignore[operator]
    assert message in str(caught.value)


def test_values_in_the_wrong_contents_field_or_out_of_range_are_refused() -> None:
    wrong = _tensor("x", "FP32", [1])
    wrong.contents.fp64_contents.append(1.0)
    with pytest.raises(errors.InvalidInputError, match="declared FP32 but carries fp64_contents"):
        decode_inputs(pb.ModelInferRequest(inputs=[wrong]))
    big = _tensor("x", "UINT8", [1])
    big.contents.uint_contents.append(256)
    with pytest.raises(errors.InvalidInputError, match="value 256 is out of range for UINT8"):
        decode_inputs(pb.ModelInferRequest(inputs=[big]))


# ------------------------------------------------------------------ binding to a signature
def test_columns_bind_from_one_matrix_or_one_tensor_per_column() -> None:
    matrix = WireTensor("input__0", "FP32", np.array([[1, 2], [3, 4]], dtype=np.float32))
    by_matrix = batch_from_tensors(NUMERIC, [matrix])
    per_column = batch_from_tensors(NUMERIC, [
        WireTensor("b", "INT64", np.array([[2], [4]])),
        WireTensor("a", "FP64", np.array([1.0, 3.0])),
    ])
    for batch in (by_matrix, per_column):
        assert batch.column("a").tolist() == [1.0, 3.0]
        assert batch.column("b").tolist() == [2.0, 4.0]
        assert batch.column("a").dtype == np.float64


def test_mixed_columns_bind_text_from_bytes_tensors() -> None:
    batch = batch_from_tensors(TABLE, [
        WireTensor("rooms", "INT32", np.array([3, 4], dtype=np.int32)),
        WireTensor("city", "BYTES", np.array(["Oslo", "Rome"], dtype=object)),
        WireTensor("area", "FP32", np.array([50.5, 80.0], dtype=np.float32)),
    ])
    assert batch.column("city").tolist() == ["Oslo", "Rome"]
    assert batch.column("rooms").dtype == np.int64


@pytest.mark.parametrize("signature, tensors, field, message", [
    (NUMERIC, [WireTensor("x", "FP64", np.zeros((2, 3)))], "x",
     "input 'x': expected shape [n, 2] (columns ['a', 'b'] in this order)"),
    (NUMERIC, [WireTensor("a", "FP64", np.zeros(2))], "b", "missing column 'b'"),
    (NUMERIC, [WireTensor("a", "FP64", np.zeros(2)), WireTensor("c", "FP64", np.zeros(2))], "c",
     "unexpected input 'c'"),
    (NUMERIC, [WireTensor("a", "FP64", np.zeros((2, 2, 1))), WireTensor("b", "FP64",
                                                                         np.zeros(2))],
     "a", "input 'a': a column takes shape [n] or [n, 1], got [2, 2, 1]"),
    (TABLE, [WireTensor("rooms", "FP64", np.array([1.5])),
             WireTensor("city", "BYTES", np.array(["x"], dtype=object)),
             WireTensor("area", "FP64", np.array([1.0]))], "rooms",
     "column 'rooms': expected int64, got a fractional number"),
    (TABLE, [WireTensor("rooms", "INT64", np.array([1])),
             WireTensor("city", "BYTES", np.array(["x"], dtype=object)),
             WireTensor("area", "BYTES", np.array(["big"], dtype=object))], "area",
     "column 'area': expected float64, got a string"),
    (TABLE, [WireTensor("rooms", "INT64", np.array([1])),
             WireTensor("city", "INT64", np.array([7])),
             WireTensor("area", "FP64", np.array([1.0]))], "city", "column 'city'"),
    (IMAGE, [WireTensor("img", "FP32", np.zeros((1, 2, 3), dtype=np.float32))], "img",
     "input 'img': tensor 'pixels': expected shape [n, 2, 2], got [1, 2, 3]"),
    (IMAGE, [WireTensor("pixels", "FP32", np.zeros((2, 2), dtype=np.float32))], "pixels",
     "input 'pixels': expected shape [n, 2, 2], got [2, 2]"),
    (IMAGE, [WireTensor("pixels", "BOOL", np.zeros((1, 2, 2), dtype=bool)),
             WireTensor("extra", "BOOL", np.zeros((1, 2, 2), dtype=bool))], "extra",
     "unexpected input 'extra'"),
])
def test_inputs_that_do_not_fit_the_signature_name_the_field(
    signature: Signature, tensors: list[WireTensor], field: str, message: str
) -> None:
    with pytest.raises(errors.InvalidInputError) as caught:
        batch_from_tensors(signature, tensors)
    assert message in str(caught.value)
    assert caught.value.field == field


def test_tensor_model_takes_its_only_tensor_under_any_name() -> None:
    pixels = np.arange(8, dtype=np.float64).reshape(2, 2, 2)
    batch = batch_from_tensors(IMAGE, [WireTensor("input__0", "FP64", pixels)])
    assert batch.column("pixels").dtype == np.float32
    np.testing.assert_array_equal(batch.column("pixels"), pixels)


def test_requested_outputs_are_returned_in_the_requested_order_or_refused() -> None:
    outputs = [OutputTensor("label", np.array([1])), OutputTensor("probabilities",
                                                                  np.array([[0.5, 0.5]]))]
    assert [o.name for o in select_outputs(outputs, ["probabilities", "label"])] == [
        "probabilities", "label"]
    assert select_outputs(outputs, []) == outputs
    with pytest.raises(errors.InvalidInputError, match="unknown output 'score'") as caught:
        select_outputs(outputs, ["score"])
    assert caught.value.field == "score"


# ------------------------------------------------------------------ encoding
@pytest.mark.parametrize("array, datatype, field", [
    (np.array([True, False]), "BOOL", "bool_contents"),
    (np.array([1, -2], dtype=np.int8), "INT8", "int_contents"),
    (np.array([1, 2], dtype=np.uint16), "UINT16", "uint_contents"),
    (np.array([1, 2], dtype=np.int64), "INT64", "int64_contents"),
    (np.array([1, 2], dtype=np.uint64), "UINT64", "uint64_contents"),
    (np.array([0.5, 1.5], dtype=np.float32), "FP32", "fp32_contents"),
    (np.array([[0.25, 0.75]]), "FP64", "fp64_contents"),
    (np.array(["yes", "no"], dtype=object), "BYTES", "bytes_contents"),
    (np.array([1, 2], dtype=object), "INT64", "int64_contents"),
])
def test_outputs_encode_typed_and_raw(array: np.ndarray, datatype: str, field: str) -> None:
    tensor, data = encode_output("out", array, raw=False)
    assert (tensor.datatype, list(tensor.shape), data) == (datatype, list(array.shape), None)
    expected = [v.encode() if isinstance(v, str) else v for v in array.ravel().tolist()]
    assert list(getattr(tensor.contents, field)) == expected
    tensor, data = encode_output("out", array, raw=True)
    assert tensor.datatype == datatype and not tensor.HasField("contents")
    assert data is not None
    back = decode_inputs(pb.ModelInferRequest(
        inputs=[_tensor("out", datatype, list(array.shape))], raw_input_contents=[data]))
    assert back[0].array.tolist() == array.tolist()


# ------------------------------------------------------------------ the error table
@pytest.mark.parametrize("exc, code", [
    (errors.InvalidInputError("bad", field="x"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidReferenceError("bad ref"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFoundError("no such model"), grpc.StatusCode.NOT_FOUND),
    (errors.OverloadedError("busy", retry_after=2.0), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.RequestTimeoutError("slow"), grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.IntegrityError("hash mismatch"), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ModelLoadError("cannot load"), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.UntrustedArtifactError("pickle"), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.StorageError("db down"), grpc.StatusCode.UNAVAILABLE),
    (errors.ConflictError("archived"), grpc.StatusCode.FAILED_PRECONDITION),
])
def test_modelport_errors_keep_their_message_under_their_status(
    exc: errors.ModelportError, code: grpc.StatusCode
) -> None:
    error = grpc_error(exc, "req-1")
    assert (error.code, error.message, error.unexpected) == (code, exc.message, False)
    assert ("request-id", "req-1") in error.metadata


def test_error_metadata_names_the_field_and_the_retry_delay() -> None:
    assert ("field", "x") in grpc_error(errors.InvalidInputError("bad", field="x"), "r").metadata
    assert ("retry-after", "2") in grpc_error(errors.OverloadedError("busy", retry_after=2.0),
                                              "r").metadata


@pytest.mark.parametrize("exc", [
    errors.PredictionError("model m:1 failed to predict: /srv/secret/path.py line 3"),
    KeyError("/srv/secret/path.py"),
])
def test_model_failures_and_bugs_answer_internal_without_internals(exc: Exception) -> None:
    error = grpc_error(exc, "req-9")
    assert error.code == grpc.StatusCode.INTERNAL
    assert error.unexpected
    assert "secret" not in error.message and "req-9" in error.message

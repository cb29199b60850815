"""The extra-column policy: one option (refuse / ignore / passthrough), one default everywhere."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from modelport.bundle.signature import DEFAULT_EXTRA, EXTRA_COLUMNS, ColumnSpec, Signature
from modelport.errors import ConfigurationError, InvalidInputError

SIG = Signature(inputs=(ColumnSpec("a", "float64"), ColumnSpec("b", "float64")))
WITH_ID = [{"id": "c-1", "a": 1.0, "b": 2.0}, {"id": "c-2", "a": 3.0, "b": 4.0}]


def test_the_default_ignores_columns_the_signature_does_not_name() -> None:
    assert DEFAULT_EXTRA == "ignore"
    batch = SIG.coerce(WITH_ID)
    assert list(batch.names) == ["a", "b"]
    assert batch.to_matrix().tolist() == [[1.0, 2.0], [3.0, 4.0]]


@pytest.mark.parametrize("data", [
    WITH_ID,
    {"id": ["c-1", "c-2"], "a": [1.0, 3.0], "b": [2.0, 4.0]},
    pd.DataFrame(WITH_ID),
    pa.Table.from_pylist(WITH_ID),
])
def test_refuse_names_the_column_and_the_option(data: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        SIG.coerce(data, extra="refuse")
    assert info.value.field == "id"
    assert "unexpected column 'id'" in str(info.value)
    assert "--extra-columns" in str(info.value)


@pytest.mark.parametrize("extra", ["ignore", "passthrough"])
def test_ignore_and_passthrough_give_the_model_only_its_inputs(extra: str) -> None:
    batch = SIG.coerce(pd.DataFrame(WITH_ID), extra=extra)  # type: ignore[arg-type]
    assert list(batch.names) == ["a", "b"]
    assert np.array_equal(batch.to_matrix(), [[1.0, 2.0], [3.0, 4.0]])


def test_extra_names_are_the_passthrough_columns_in_their_order() -> None:
    assert SIG.extra_names(["z", "a", "id", "b"]) == ["z", "id"]


def test_an_unknown_policy_is_a_configuration_error() -> None:
    assert EXTRA_COLUMNS == ("refuse", "ignore", "passthrough")
    with pytest.raises(ConfigurationError, match="--extra-columns 'drop'"):
        SIG.coerce(WITH_ID, extra="drop")  # type: ignore[arg-type]


def test_a_missing_input_still_fails_under_every_policy() -> None:
    for extra in EXTRA_COLUMNS:
        with pytest.raises(InvalidInputError, match="missing column 'b'"):
            SIG.coerce([{"a": 1.0, "bb": 2.0}], extra=extra)

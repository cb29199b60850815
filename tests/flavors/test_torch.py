"""PyTorch: TorchScript by scripting, by tracing when scripting fails, or as given."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import modelport
from modelport.bundle.model import load_bundle

torch = pytest.importorskip("torch")

X = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)


class HalfNet(torch.nn.Module):  # type: ignore[misc]
    """Keeps a Python Fraction that TorchScript cannot type, so only tracing works."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)
        self.scale = Fraction(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * float(self.scale)


class PairNet(torch.nn.Module):  # type: ignore[misc]
    """Returns two tensors: a score per row and the hidden layer."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.hidden(x))
        return h.sum(dim=1), h


def _eager(module: torch.nn.Module) -> np.ndarray:
    with torch.inference_mode():
        return module(torch.tensor(X)).numpy()  # type: ignore[no-any-return]


def test_module_that_cannot_be_scripted_is_traced(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = HalfNet()
    model = load_bundle(modelport.save(net, tmp_path / "half", example=X))
    assert model.manifest.flavor_info["format"] == "torchscript"
    assert np.array_equal(model.predict(X), _eager(net))
    assert torch.get_num_threads() == 1  # set at load unless the bundle says otherwise


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_tuple_outputs_are_named_in_order(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = PairNet()
    model = load_bundle(modelport.save(torch.jit.script(net), tmp_path / "pair", example=X))
    result = model.predict_batch(model.coerce(X))
    with torch.inference_mode():
        score, hidden = net(torch.tensor(X))
    assert result.labels is None
    assert np.array_equal(result.outputs["output_0"], score.numpy())
    assert np.array_equal(result.outputs["output_1"], hidden.numpy())


def test_float64_input_is_cast_to_the_module_dtype(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Flatten(0))
    model = load_bundle(modelport.save(net, tmp_path / "lin", example=X.astype(np.float64)))
    assert model.signature.inputs[0].dtype == "float64"
    assert model.manifest.flavor_info["float_dtype"] == "float32"
    assert np.array_equal(model.predict(X.astype(np.float64)), _eager(net))

"""Artifact signatures (issue 14): sign at registration, verify before load, strict mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import modelport
from modelport.errors import IntegrityError
from modelport.registry import Registry
from modelport.registry.signing import SIGNATURE_TAG, SignatureVerifier


def _keypair(directory: Path, name: str) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private = directory / f"{name}.pem"
    public = directory / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    from sklearn.linear_model import LinearRegression

    x = pd.DataFrame({"a": np.arange(10.0), "b": np.arange(10.0) ** 2})
    model = LinearRegression().fit(x, x.a + x.b)
    return Path(modelport.save(model, tmp_path / "bundle", name="reg", example=x[:3],
                               accelerate=False))


def test_signed_versions_load_and_others_are_refused(bundle: Path, tmp_path: Path) -> None:
    private, public = _keypair(tmp_path, "ours")
    _, stranger_public = _keypair(tmp_path, "theirs")
    registry = Registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "artifacts")
    signed = registry.register(bundle, sign_with=private)
    unsigned = registry.register(bundle)
    assert signed.tags[SIGNATURE_TAG].startswith("ed25519:")
    strict = SignatureVerifier([public], required=True)
    prediction = registry.load(signed, verifier=strict).predict(
        pd.DataFrame({"a": [1.0], "b": [1.0]}))
    assert np.allclose(np.asarray(prediction).ravel(), [2.0])
    with pytest.raises(IntegrityError, match="not signed"):
        registry.load(unsigned, verifier=strict)
    registry.load(unsigned, verifier=SignatureVerifier([public]))  # lenient: a warning only
    with pytest.raises(IntegrityError, match="does not trust"):
        registry.load(signed, verifier=SignatureVerifier([stranger_public]))
    # a signature copied onto a version of another model does not verify
    registry.register(bundle, name="other")
    registry.set_tag("other:1", SIGNATURE_TAG, signed.tags[SIGNATURE_TAG])
    with pytest.raises(IntegrityError, match="does not match"):
        registry.load("other:1", verifier=strict)
    registry.close()


def test_serve_requires_signatures_in_strict_mode(bundle: Path, tmp_path: Path) -> None:
    _, public = _keypair(tmp_path, "ours")
    env = {"MODELPORT_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-m", "modelport.cli.main", "models", "register",
                    str(bundle)], env=env, check=True, capture_output=True, timeout=120)
    out = subprocess.run(
        [sys.executable, "-m", "modelport.cli.main", "serve", "reg", "--port", "0",
         "--verify-key", str(public), "--require-signatures"],
        env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "not signed" in out.stderr and "--sign-key" in out.stderr
    assert "Traceback" not in out.stderr

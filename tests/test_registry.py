"""The model registry: registration, look-up, refusals, and lazy loading of the built-ins."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mfvsdnn.core.errors import ModelError
from mfvsdnn.models import registry
from mfvsdnn.models.base import Capabilities
from mfvsdnn.models.baselines import MostPopular


class Toy(MostPopular):
    kind = "toy"


@pytest.fixture
def toy():
    registry.register(Toy)
    yield Toy
    if "toy" in registry.kinds():
        registry.unregister("toy")


def test_register_get_kinds_unregister(toy):
    assert registry.get("toy") is Toy
    assert registry.kinds()[-1] == "toy" and registry.kinds()[:2] == ("wals", "softmax")
    assert registry.family_of("toy") == "baseline"
    registry.unregister("toy")
    assert "toy" not in registry.kinds()
    with pytest.raises(ModelError, match="unknown model kind 'toy'"):
        registry.get("toy")


def test_duplicate_refused_unless_replace(toy):
    class Toy2(Toy):
        pass

    with pytest.raises(ModelError, match="'toy' is already registered.*replace=True"):
        registry.register(Toy2)
    assert registry.get("toy") is Toy
    order = registry.kinds()
    assert registry.register(Toy2, replace=True) is Toy2
    assert registry.get("toy") is Toy2 and registry.kinds() == order
    with pytest.raises(ModelError, match="'wals' is already registered"):
        registry.register(type("W", (MostPopular,), {"kind": "wals"}))


def test_unknown_kind_lists_the_registered_ones():
    with pytest.raises(ModelError) as e:
        registry.get("als")
    msg = str(e.value)
    assert "unknown model kind 'als'" in msg
    assert all(k in msg for k in ("wals", "softmax", "popularity", "group-popularity", "random"))
    with pytest.raises(ModelError, match="not registered"):
        registry.unregister("als")


@pytest.mark.parametrize("attrs, words", [
    ({"kind": ""}, "declares no kind"),
    ({"family": "tree"}, "family must be one of mf, dnn, baseline"),
    ({"capabilities": {"item_vectors": True}}, "declares no capabilities"),
    ({"capabilities": Capabilities(item_vectors=False)}, "lacks scores"),
])
def test_incomplete_classes_are_refused(attrs, words):
    bad = type("Bad", (MostPopular,), {"kind": "bad", **attrs})
    with pytest.raises(ModelError, match=words):
        registry.register(bad)
    assert "bad" not in registry.kinds()


def test_registry_import_does_not_load_the_numba_models():
    code = ("import sys; from mfvsdnn.models import registry; ks = registry.kinds(); "
            "registry.get('popularity'); registry.get('random'); "
            "print(ks, 'numba' in sys.modules, 'mfvsdnn.models.wals' in sys.modules, "
            "'mfvsdnn.models.softmax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split(")")[-1].split() == ["False", "False", "False"], out

import pytest

from pyserini_ext.encode.base import ENCODER_FAMILIES
from pyserini_ext.encode.dense import DENSE_FAMILY
from pyserini_ext.encode.tct_colbert import TCT_COLBERT_FAMILY
from pyserini_ext.registry import Registry, UnknownNameError


def test_families_arrive_through_the_entry_point_group():
    # Nothing registers these in code: only pyproject's [project.entry-points."pyserini_ext.encoders"].
    assert ENCODER_FAMILIES.get("dense") is DENSE_FAMILY
    assert ENCODER_FAMILIES.get("tct_colbert") is TCT_COLBERT_FAMILY


def test_exact_names_only():
    registry = Registry("thing")
    registry.register("tct_colbert", 1)
    with pytest.raises(UnknownNameError, match=r"unknown thing 'tct'; registered: tct_colbert"):
        registry.get("tct")
    with pytest.raises(UnknownNameError):
        registry.get("castorini/tct_colbert-v2-msmarco")


def test_duplicate_registration_is_refused():
    registry = Registry("thing")
    registry.register("a", 1)
    registry.register("a", 1)  # the same object again is harmless
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a", 2)

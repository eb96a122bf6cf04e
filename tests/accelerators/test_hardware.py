"""Tests of the accelerator record, the built-in accelerators and the hardware space."""

import numpy as np
import pytest

from accelerators import (Accelerator, ConfigError, HardwareSpace, UnknownNameError, get_accelerator,
                          get_hardware_space, list_accelerators, list_hardware_spaces, load_accelerator,
                          save_accelerator)
from coexplore.common import Registry


def base(**kw):
    d = dict(pe_x=16, pe_y=16, rf_bytes=16, glb_bytes=108 * 1024, dataflow="ws")
    d.update(kw)
    return d


@pytest.mark.parametrize("name", list_accelerators())
def test_builtin_accelerators_roundtrip_yaml(name, tmp_path):
    a = get_accelerator(name)
    save_accelerator(tmp_path / "a.yaml", a)
    b = load_accelerator(tmp_path / "a.yaml")
    assert a == b and b.name == a.name
    assert get_accelerator(str(tmp_path / "a.yaml")) == a


def test_eyeriss_matches_the_paper():
    e = get_accelerator("eyeriss")
    assert (e.pe_y, e.pe_x) == (12, 14) and e.dataflow == "rs"
    assert e.glb_bytes == 108 * 1024 and 480 <= e.rf_bytes <= 560 and e.word_bits == 16


@pytest.mark.parametrize("field,value,match", [
    ("pe_x", 0, "pe_x must be a positive integer"),
    ("pe_y", -3, "pe_y must be a positive integer"),
    ("pe_x", 2.5, "pe_x must be a positive integer"),
    ("dataflow", "xs", r"allowed values: \['ws', 'os', 'rs'\]"),
    ("rf_bytes", 4, "rf_bytes=4 is too small for the ws dataflow"),
    ("word_bits", 12, "allowed values"),
    ("clock_hz", 0, "clock_hz must be a positive number"),
    ("glb_bytes", 100, "glb_bytes"),
])
def test_bad_accelerators_are_rejected(field, value, match):
    with pytest.raises(ConfigError, match=match):
        Accelerator(**base(**{field: value}))


def test_malformed_and_unknown_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("pe_x: [1, 2\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_accelerator(p)
    p.write_text("pe_x: 4\npe_y: 4\nrf_bytes: 16\nglb_bytes: 65536\ndataflow: ws\nbogus: 1\n")
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['bogus'\]"):
        load_accelerator(p)
    p.write_text("pe_x: 4\n")
    with pytest.raises(ConfigError, match="missing required field"):
        load_accelerator(p)
    with pytest.raises(ConfigError, match="no such file"):
        load_accelerator(tmp_path / "absent.yaml")


def test_unknown_names_list_known_ones():
    with pytest.raises(UnknownNameError, match="known accelerators: .*eyeriss"):
        get_accelerator("eyeris")
    with pytest.raises(UnknownNameError, match="Did you mean 'eyeriss'"):
        get_accelerator("eyeris")
    with pytest.raises(UnknownNameError, match="known hardware spaces"):
        get_hardware_space("huge")


def test_registry_warns_on_overwrite():
    r = Registry("thing")
    r.register("a", 1)
    with pytest.warns(UserWarning, match="registered again"):
        r.register("a", 2)
    assert r.get("A") == 2 and r.names() == ["a"]


def test_default_space_follows_dance():
    s = get_hardware_space("default")
    assert 900 <= s.size <= 1100
    assert s.labels == ["pe_x", "pe_y", "rf_bytes", "dataflow"]
    # both of DANCE's published picks are inside
    for name in ("dance-ws", "dance-rs"):
        a = get_accelerator(name)
        assert s.decode(s.encode(a)) == a
    assert len(set(s.enumerate())) == s.size


@pytest.mark.parametrize("name", list_hardware_spaces())
def test_space_encoding_roundtrips(name):
    s = get_hardware_space(name)
    rng = np.random.default_rng(0)
    for a in s.sample(20, rng):
        idx = s.encode(a)
        assert s.decode(idx) == a
        oh = s.one_hot(a)
        assert oh.sum() == len(s.labels) and oh.shape == (sum(s.cardinalities),)
        assert s.decode_one_hot(oh) == a
        assert s.enumerate()[s.flat_index(a)] == a
    assert s.index_grid().shape == (s.size, len(s.labels))


def test_sampling_is_seeded():
    s = get_hardware_space("default")
    assert s.sample(10, 7) == s.sample(10, 7)
    assert s.sample(10, 7) != s.sample(10, 8)


def test_custom_space_yaml_roundtrip_and_search_glb(tmp_path):
    s = HardwareSpace({"pe_x": [8, 16], "pe_y": [8], "rf_bytes": [32], "dataflow": ["rs"],
                       "glb_bytes": [32768, 65536], "word_bits": [8, 16]},
                      fixed={"clock_hz": 500e6, "dram_bw": 8.0, "glb_bw": 32.0}, name="mine")
    assert s.size == 8
    s.save(tmp_path / "s.yaml")
    t = HardwareSpace.load(tmp_path / "s.yaml")
    assert t.enumerate() == s.enumerate() and t.fingerprint() == s.fingerprint()
    assert {a.glb_bytes for a in t} == {32768, 65536}


@pytest.mark.parametrize("choices,fixed,match", [
    ({"pe_z": [1]}, None, "unknown parameter 'pe_z'"),
    ({"pe_x": []}, None, "non-empty list"),
    ({"pe_x": [8, 8]}, None, "repeat"),
    ({"dataflow": ["ws", "zz"]}, {"pe_x": 8, "pe_y": 8, "rf_bytes": 16, "glb_bytes": 65536}, "allowed values"),
    ({"pe_x": [8]}, {"pe_x": 8, "pe_y": 8, "rf_bytes": 16, "glb_bytes": 65536, "dataflow": "ws"}, "both fixed"),
    ({"pe_x": [8]}, {"pe_y": 8}, "neither fixed nor searched"),
    ({"rf_bytes": [2, 16]}, {"pe_x": 8, "pe_y": 8, "glb_bytes": 65536, "dataflow": "ws"}, "too small"),
])
def test_bad_spaces(choices, fixed, match):
    with pytest.raises(ConfigError, match=match):
        HardwareSpace(choices, fixed)


def test_encode_rejects_outside_accelerator():
    s = get_hardware_space("default")
    with pytest.raises(ConfigError, match="not in this space"):
        s.encode(Accelerator(**base(pe_x=7)))
    with pytest.raises(ConfigError, match="fixed field glb_bytes"):
        s.encode(Accelerator(**base(glb_bytes=64 * 1024)))
    with pytest.raises(ConfigError, match="out of range"):
        s.decode([99, 0, 0, 0])
